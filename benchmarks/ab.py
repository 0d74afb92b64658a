"""Does ``bench ab`` keep its promise on real paired processes, in their order?

``record``: one long paired job per condition, recorded without stopping (the two sides'
servers of ``bench.run.ab``, blocks of A B B A per case, every pair kept in order with the
time its block took), on suites/verdicts.toml:

- ``aa``: this commit against a commit that changes nothing measured (an empty commit);
- ``slow5`` / ``slow10``: this commit against one whose built-in model sleeps 5% / 10% of
  its forward time (benchmarks/slowed.py): real slowdowns of every case.

``replay``: ``bench ab``'s own decision schedule (``ab.Schedule``: the plan from the budget
and the first block's time, at most 5 looks, O'Brien-Fleming spending, stop when every
verdict is decided) run over each recording from its first block: one job, then the next
job starting on the block after the previous one stopped, and so on, as back-to-back jobs
of ``--budget`` minutes would (the budget counts the measuring, as ``bench ab``'s does).
Both directions: the recording as measured and with the sides swapped (candidate as base).
A/A: any REGRESSION or IMPROVED is false. Slowed: the share of jobs that said REGRESSION and
how long they took.

Run: ``python benchmarks/ab.py record --minutes 30 --condition aa`` (and slow5, slow10), then
``python benchmarks/ab.py replay``; writes ab.json under --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run.suite_driver import make_console

SUITE = Path(__file__).resolve().parent.parent / "suites" / "verdicts.toml"
FRACTIONS = {"aa": 0.0, "slow5": 0.05, "slow10": 0.10}
TOLERANCE = 0.05  # the default gate of the time metrics


def record(out: Path, condition: str, minutes: float) -> Path:
    from slowed import remove_worktree, slowed_worktree

    from bench.run.ab import SideServer, SideSpec, abba_block

    here = out / condition
    here.mkdir(parents=True, exist_ok=True)
    console = make_console()
    with tempfile.TemporaryDirectory() as tmp:
        base_tree, cand_tree = Path(tmp) / "base", Path(tmp) / "cand"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), "HEAD"],
                       check=True, capture_output=True)  # fmt: skip
        fraction = FRACTIONS[condition]
        if fraction:
            commit = slowed_worktree(fraction, cand_tree)
        else:
            subprocess.run(["git", "worktree", "add", "--detach", str(cand_tree), "HEAD"],
                           check=True, capture_output=True)  # fmt: skip
            subprocess.run(["git", "-c", "user.email=b@l", "-c", "user.name=b", "commit", "-q",
                            "--allow-empty", "-m", "benchmark only: nothing measured changes"],
                           cwd=cand_tree, check=True)  # fmt: skip
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cand_tree, text=True,
                                    capture_output=True).stdout.strip()  # fmt: skip
        sides = (
            SideSpec("base", SUITE, None, base_tree),
            SideSpec("candidate", SUITE, None, cand_tree),
        )
        try:
            t0 = time.monotonic()
            servers = [SideServer(s, here / s.name, here / f"{s.name}.log") for s in sides]
            startup = time.monotonic() - t0
            cases = servers[0].cases
            repeats = [dict.fromkeys(cases, 0), dict.fromkeys(cases, 0)]
            blocks = []
            while time.monotonic() - t0 < 60 * minutes:
                b0 = time.monotonic()
                done = {c: [] for c in cases}
                for case, s in abba_block(cases):
                    servers[s].run(case, repeats[s][case])
                    done[case].append(repeats[s][case])
                    repeats[s][case] += 1
                pairs = [[c, a1, b1] for c, (a1, b1, _, _) in done.items()]
                pairs += [[c, a2, b2] for c, (_, _, b2, a2) in done.items()]
                blocks.append({"s": time.monotonic() - b0, "pairs": pairs})
                console.print(f"{condition}: block {len(blocks)} ({blocks[-1]['s']:.1f} s)",
                              highlight=False)  # fmt: skip
            for server in servers:
                server.close()
            meta = {"condition": condition, "fraction": fraction, "candidate_commit": commit,
                    "startup_s": startup, "minutes": minutes,
                    "runs": [str(s.run_dir.relative_to(here)) for s in servers],
                    "blocks": blocks}  # fmt: skip
            (here / "recording.json").write_text(json.dumps(meta))
        finally:
            for tree in (base_tree, cand_tree):
                remove_worktree(tree)
    return here


TIME_METRICS = ("latency_median", "ttft_median", "decode_step_median")


def replay(here: Path, minutes: float, swap: bool, factor: float = 1.0) -> list[dict]:
    """Back-to-back jobs of ``minutes`` over one recording; their outcomes. ``factor``
    multiplies the candidate's times: a known change on the recording's real noise."""
    from bench.analysis.compare import compare_pairs
    from bench.analysis.sides import load_side
    from bench.run.ab import Budget, Schedule

    meta = json.loads((here / "recording.json").read_text())
    base, cand = (load_side([here / r]) for r in meta["runs"])
    if swap:
        base, cand = cand, base
    for (_, metric), values in cand.by_repeat.items():
        if metric in TIME_METRICS:
            values.update({r: v * factor for r, v in values.items()})
    blocks = meta["blocks"]
    jobs, start = [], 0
    while start < len(blocks):
        schedule = Schedule(Budget(minutes=minutes))
        elapsed, pairs, outcome = 0.0, [], None
        for k, block in enumerate(blocks[start:], 1):
            elapsed += block["s"]
            pairs += [(c, b, a, k) if swap else (c, a, b, k) for c, a, b in block["pairs"]]
            look = schedule.look(k, elapsed, block["s"])
            if look is None:
                continue
            alpha, final = look
            comparison = compare_pairs(base, cand, pairs, alpha)
            counts = comparison.verdicts()
            if not counts["INCONCLUSIVE"] or final:
                outcome = {"blocks": k, "minutes": elapsed / 60, "verdicts": counts,
                           "complete": final or not counts["INCONCLUSIVE"],
                           "rows": {f"{c} {ch.metric}": str(ch.verdict)
                                    for c, ch in comparison.rows}}  # fmt: skip
                break
        if outcome is None:  # the recording ended before this job could
            break
        jobs.append(outcome)
        start += outcome["blocks"]
    return jobs


def realised(here: Path) -> dict[str, dict[str, float]]:
    """Per case and metric (times and peak memory): the change the recording really had (the
    geometric mean of its pairs' ratios), and how its pairs' log ratios depend on their
    neighbours: the lag-1 autocorrelation, and the spread of means of 16 consecutive pairs
    against what independent pairs would give."""
    import math

    import numpy as np

    from bench.analysis.sides import load_side

    meta = json.loads((here / "recording.json").read_text())
    base, cand = (load_side([here / r]) for r in meta["runs"])
    pairs = [p for blk in meta["blocks"] for p in blk["pairs"]]
    out = {}
    for (case, metric), values in base.by_repeat.items():
        if metric not in (*TIME_METRICS, "memory_prefill_peak_rss"):
            continue
        other = cand.by_repeat.get((case, metric), {})
        d = np.array([math.log(other[c] / values[b]) for cc, b, c in pairs
                      if cc == case and b in values and c in other])  # fmt: skip
        k = 16
        means = d[: len(d) // k * k].reshape(-1, k).mean(axis=1)
        out[f"{case} {metric}"] = {
            "change": math.expm1(d.mean()),
            "pairs": len(d),
            "lag1_autocorrelation": float(np.corrcoef(d[:-1], d[1:])[0, 1]),
            "spread_of_16_pair_means_vs_independent": float(
                means.std(ddof=1) / (d.std(ddof=1) / math.sqrt(k))
            ),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["record", "replay"])
    ap.add_argument("--condition", choices=sorted(FRACTIONS), default="aa")
    ap.add_argument("--minutes", type=float, default=30, help="recording length")
    ap.add_argument("--budget", type=float, action="append", default=[],
                    help="replayed jobs' budget in minutes (repeatable; default 10)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path("results/ab-benchmark"))
    args = ap.parse_args()
    if args.step == "record":
        print(record(args.out, args.condition, args.minutes))
        return 0
    result = {}
    for here in sorted(p.parent for p in args.out.glob("*/recording.json")):
        meta = json.loads((here / "recording.json").read_text())
        mine = result[meta["condition"]] = {
            "recorded_minutes": meta["minutes"],
            "blocks": len(meta["blocks"]),
            "startup_s": meta["startup_s"],
            "realised": realised(here),
            "jobs": {},
        }
        for name, r in mine["realised"].items():
            print(f"{meta['condition']}: {name} realised {100 * r['change']:+.2f}% over "
                  f"{r['pairs']} pairs; lag-1 autocorrelation {r['lag1_autocorrelation']:.2f}, "
                  f"16-pair means spread {r['spread_of_16_pair_means_vs_independent']:.2f}x "
                  "independent")  # fmt: skip
        factors = [1.0, 1 + TOLERANCE / 2, 1 + TOLERANCE] if meta["condition"] == "aa" else [1.0]
        for budget, factor, (direction, swap) in itertools.product(
            args.budget or [10.0], factors, (("as measured", False), ("sides swapped", True))
        ):
            jobs = replay(here, budget, swap, factor)
            direction = f"{direction}, times x{factor:g}" if factor != 1 else direction
            mine["jobs"][f"{budget:g} min, {direction}"] = jobs
            reg = sum(j["verdicts"]["REGRESSION"] > 0 for j in jobs)
            imp = sum(j["verdicts"]["IMPROVED"] > 0 for j in jobs)
            decided = sum(not j["verdicts"]["INCONCLUSIVE"] for j in jobs)
            took = sorted(j["minutes"] for j in jobs)
            print(f"{meta['condition']:<7} {budget:g} min {direction:<26} {len(jobs):>3} jobs:"
                  f" {reg} with a REGRESSION, {imp} with an IMPROVED, {decided} fully decided;"
                  f" minutes per job {took[0]:.1f}-{took[-1]:.1f}, median "
                  f"{took[len(took) // 2]:.1f}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ab.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
