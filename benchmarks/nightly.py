"""Does nightly change-point detection cry wolf, and how soon does it catch real steps?
Measured on real nights *in their order*, never on nights resampled across invocations
(resampling removes the machine's slow drift, the very thing that raises false alarms).

1. Data: ``--runs DIR`` holds real back-to-back runs of suites/nightly.toml (e.g. ``for i in
   $(seq 40); do bench run suites/nightly.toml --results DIR --no-report; done``). Each run is
   one night: for every noisy gated series (case x metric: the latencies and peak memory),
   its process runs' values. ``--save FILE`` keeps that extract
   (benchmarks/data/nightly_runs.json.gz is the one the figures in docs/nightly.md come from);
   ``--data FILE`` reads it back.
2. A/A: the real nights in their order, and in the reverse order, each analysed after every
   night from the ``FIRST``-th on as a nightly job would. Every alarm is false (the code did
   not change); counted once, when first raised, per 100 nights analysed (whole suite).
3. Steps: windows of the real nights in order (and reversed), ``--before`` nights then
   ``--after`` nights whose time metrics (latency, time to first token, decode step) are
   multiplied by 1.25, 1.5 or 2; analysed after every night from the step on. Nights to
   alarm: the first analysis whose alarms include the step (its night, give or take one),
   counting the step night as 1. Short histories (4 nights before) and long ones (20).
4. Rules: bench's (``changepoints``), the rule before the two-level model (commit
   ``old_rules.OLD_REF``: Mann-Whitney U, Holm, any later IMPROVED closes an alarm), and a
   fixed 5% threshold night over night.

Run: ``python benchmarks/nightly.py --data benchmarks/data/nightly_runs.json.gz``;
prints the tables in docs/nightly.md, writes nightly.json under --out.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import changepoints as cp
from bench.analysis.history_points import run_points
from bench.results.metric_info import DEFAULT_GATES, DETERMINISTIC, Tolerance, is_modelled
from bench.results.store import MANIFEST, read_json

TIME_METRICS = {"latency_median", "ttft_median", "decode_step_median"}
TOLERANCE = Tolerance("relative", 0.05)
FIRST = 10  # the first night analysed in the A/A histories
STEPS = (1.25, 1.5, 2.0)


def extract(runs_dir: Path) -> list[dict]:
    """One night per complete run: {series key: [center, process-run values]}."""
    nights = []
    for m in sorted(runs_dir.glob(f"*/{MANIFEST}")):
        if read_json(m).get("status") != "complete":
            continue
        run, points = run_points(m.parent)
        night = {}
        for p in points:
            noisy = p.metric in DEFAULT_GATES and p.metric not in DETERMINISTIC
            if noisy and not is_modelled(p.method):
                night[f"{p.case_id}|{p.metric}"] = [p.value, list(p.values)]
        nights.append({"run_id": run.run_id, "started": run.started, "series": night})
    return nights


def keys_of(nights: list[dict]) -> list[str]:
    return sorted(set.intersection(*(set(n["series"]) for n in nights)))


def window(nights: list[dict], step: float = 1.0, at: int | None = None) -> dict[str, list]:
    """Series key -> the nights' process-run values, time metrics times ``step`` from ``at``."""
    out = {}
    for key in keys_of(nights):
        metric = key.split("|")[1]
        out[key] = [
            [v * (step if at is not None and i >= at and metric in TIME_METRICS else 1.0)
             for v in n["series"][key][1]]
            for i, n in enumerate(nights)
        ]  # fmt: skip
    return out


# --- the rules: series values -> alarms (series key, night index) after ``t`` nights ----


def new_series(data: dict[str, list], t: int) -> list[cp.Series]:
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    out = []
    for key, nights in data.items():
        case_id, metric = key.split("|")
        ns = tuple(
            cp.Night(f"n{i}", t0 + pd.Timedelta(days=i), None,
                     float(np.exp(np.log(v).mean())), None, None, tuple(v), TOLERANCE)
            for i, v in enumerate(nights[:t])
        )  # fmt: skip
        out.append(cp.Series(case_id, metric, "s", "env", {}, ns))
    return out


def rule_bench(data, t):
    series = new_series(data, t)
    return _alarms(series, cp.alarms(cp.analyse(series)))


def _alarms(series, alarms) -> set[tuple[str, int]]:
    return {(f"{a.series.case_id}|{a.series.metric}", a.index) for a in alarms}


def rule_old(old, data, t):
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    series = []
    for key, nights in data.items():
        case_id, metric = key.split("|")
        ns = tuple(
            old.changepoints.Night(f"n{i}", t0 + pd.Timedelta(days=i), None,
                                   float(np.median(v)), None, None, tuple(v))
            for i, v in enumerate(nights[:t])
        )  # fmt: skip
        series.append(old.changepoints.Series(case_id, metric, "s", "env", {}, TOLERANCE, ns))
    return _alarms(series, old.changepoints.alarms(old.changepoints.analyse(series)))


def rule_threshold(data, t):
    """A fixed 5% threshold: the newest night's median against the night before."""
    out = set()
    for key, nights in data.items():
        if t >= 2 and np.median(nights[t - 1]) > 1.05 * np.median(nights[t - 2]):
            out.add((key, t - 1))
    return out


# --- A/A and steps ----------------------------------------------------------------------


def aa(rule, nights: list[dict]) -> dict:
    """False alarms per 100 nights over the nights in order and reversed."""
    false, analysed = 0, 0
    for order in (nights, nights[::-1]):
        data = window(order)
        seen: set[tuple[str, int]] = set()
        for t in range(FIRST, len(order) + 1):
            for key, index in sorted(rule(data, t)):
                near = any((key, j) in seen for j in (index - 1, index, index + 1))
                seen.add((key, index))
                false += not near  # an alarm moving by a night is the same alarm
            analysed += 1
    return {"false": false, "nights": analysed, "per_100_nights": 100 * false / analysed}


def steps(rule, nights: list[dict], before: int, after: int) -> dict:
    """Nights to alarm per step size, over every window of the nights in order (and
    reversed) with the step after ``before`` nights."""
    out = {}
    for step in STEPS:
        delays, missed, false = [], 0, 0
        for order in (nights, nights[::-1]):
            for start in range(0, len(order) - before - after + 1):
                data = window(order[start : start + before + after], step, before)
                stepped = {k for k in data if k.split("|")[1] in TIME_METRICS}
                found: dict[str, int] = {}
                for t in range(before + 1, before + after + 1):
                    for key, index in rule(data, t):
                        if key in stepped and abs(index - before) <= 1:
                            found.setdefault(key, t - before)
                        elif key not in stepped:
                            false += 1
                delays += list(found.values())
                missed += len(stepped) - len(found)
        total = len(delays) + missed
        if not total:
            continue  # too few nights for a window this long
        out[f"x{step:g}"] = {
            "series": total,
            "detected": len(delays) / total,
            "median": float(np.median(delays)) if delays else math.nan,
            "p90": float(np.percentile(delays, 90)) if delays else math.nan,
            "max": max(delays) if delays else None,
            "earliest": min(delays) if delays else None,
            "false_alarms_unstepped": false,
        }
    return out


def example_history(nights: list[dict], results: Path, step: float = 1.25, extra: int = 4) -> str:
    """The worked example of docs/nightly.md: the real nights in order, then ``extra`` nights copied
    from the last ones with the prefill cases' latency times ``step`` (a regression merged on
    night 37), written as the history "nightly" under ``results``; its database URL. The
    real nights carry one commit (1111111...) and the stepped ones another (2222222...)."""
    from bench.analysis import stats
    from bench.results.history import History, PointRow, RunRow, default_url

    gates = {m: t.to_json() for m, t in DEFAULT_GATES.items()}
    t0 = pd.Timestamp("2026-11-01T02:30:00", tz="UTC")
    days = [*nights, *nights[-extra:]]
    url = default_url(results)
    results.mkdir(parents=True, exist_ok=True)
    with History(url) as db:
        runs = []
        for i, night in enumerate(days):
            stepped = i >= len(nights)
            commit = ("2" if stepped else "1") * 40
            run = RunRow(f"night-{i + 1:02d}", "nightly", (t0 + pd.Timedelta(days=i)).isoformat(),
                         commit, False, "example", {"host": "this VM"}, "", gates)  # fmt: skip
            points = []
            for key, (_, values) in night["series"].items():
                case_id, metric = key.split("|")
                f = step if stepped and "forward" in case_id and metric in TIME_METRICS else 1.0
                values = [v * f for v in values]
                low, high = stats.center_interval(values) or (None, None)
                unit = "s" if metric in TIME_METRICS else "bytes"
                points.append(PointRow(case_id, metric, unit, "example", stats.center(values),
                                       low, high, len(values), values))  # fmt: skip
            runs.append((run, points))
        db.replace("nightly", runs)
    return url


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--runs", type=Path, help="folder of real runs of suites/nightly.toml")
    src.add_argument("--data", type=Path, help="an extract written by --save")
    ap.add_argument("--save", type=Path, help="write the extract of --runs here (.json.gz)")
    ap.add_argument("--after", type=int, default=12, help="nights after a step")
    ap.add_argument("--no-old", action="store_true", help="skip the rule before this change")
    ap.add_argument(
        "--example",
        type=Path,
        metavar="DIR",
        help="only write docs/nightly.md's example history (the nights, then 4 with prefill x1.25) "
        "to DIR/history.sqlite; then `bench history nightly --results DIR --plot`",
    )
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = ap.parse_args()

    if args.runs:
        nights = extract(args.runs)
        if args.save:
            with gzip.open(args.save, "wt") as f:
                json.dump(nights, f)
    else:
        with gzip.open(args.data, "rt") as f:
            nights = json.load(f)
    if args.example:
        print(example_history(nights, args.example))
        return 0
    keys = keys_of(nights)
    spread = {
        k: float(np.std([np.log(n["series"][k][1]).mean() for n in nights], ddof=1)) for k in keys
    }
    mid = float(np.median([v for k, v in spread.items() if k.split("|")[1] in TIME_METRICS]))
    print(f"{len(nights)} real nights in order, {len(keys)} noisy gated series; night-to-night "
          f"spread of the time series (sd of log run centers): median {mid:.1%}")  # fmt: skip

    rules = {"bench (PELT, pooled t on nights, Bonferroni)": rule_bench}
    if not args.no_old:
        from old_rules import OLD_REF, load

        old = load()
        rules[f"before ({OLD_REF}: ranks, Holm)"] = lambda d, t: rule_old(old, d, t)
    rules["fixed 5% night over night"] = rule_threshold
    result = {"nights": len(nights), "series": len(keys), "time_spread_median": mid, "rules": {}}
    for name, rule in rules.items():
        got = {
            "aa": aa(rule, nights),
            "short (4 nights before)": steps(rule, nights, 4, args.after),
            "long (20 nights before)": steps(rule, nights, 20, args.after),
        }
        result["rules"][name] = got
        print(f"\n{name}: A/A {got['aa']['false']} false alarms in {got['aa']['nights']} nights "
              f"analysed = {got['aa']['per_100_nights']:.2f} per 100 nights")  # fmt: skip
        for history in ("short (4 nights before)", "long (20 nights before)"):
            for step, s in got[history].items():
                print(f"  {history:<24} {step:>5}: detected {s['detected']:.0%} of {s['series']}"
                      f" within {args.after} nights; nights to alarm median {s['median']:g}, "
                      f"90th pct {s['p90']:g}, earliest {s['earliest']}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nightly.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
