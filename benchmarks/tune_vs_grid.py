"""How many trials does ``bench tune`` need to find a configuration within noise of the
best one, on a space small enough to measure whole?

The space: L1 pruning (none, 0.3, 0.5, 0.7) x int8 quantization (none, dynamic,
weight-only) on the trained tinygpt-s, prefill b8 x 128; objective: max throughput;
constraint: KL to the unpruned model <= 0.05. 12 configurations.

1. The grid: every configuration in ONE run (``--grid-repeats`` process runs each; the
   baseline brackets them), so they share the run's drift and compare with valid
   intervals. The best feasible configuration is the one with the highest throughput; a
   configuration is "within noise of the best" when the ratio of its runs to the best's
   has an interval that includes 1 (it is the best, or not clearly slower).
2. ``bench tune`` from scratch, once per seed (``--seeds``), as a user runs it (a
   subprocess, its own study): at which trial does it first measure a configuration of
   that set, and at what cost in wall time, against the grid's run.

Prints a table and writes ``benchmarks/data/tune_vs_grid.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = """name = "{name}"
description = "tinygpt-s prefill: L1 pruning x int8 quantization (bench tune against the grid)"
[run]
threads = 2
warmup = 3
iterations = 15
repeats = {repeats}
energy = false
idle_s = 0
quality = true
timeout_s = 120
[[models]]
name = "tinygpt-s"
weights = "pydoc"
[[workloads]]
name = "forward"
batch = 8
seq_len = 128
"""
PRUNE = [0.3, 0.5, 0.7]
SCHEMES = ["int8_dynamic", "int8_weight_only"]
OBJECTIVE, CONSTRAINT, BOUND = "throughput_tokens", "kl_to_baseline", 0.05


def chains() -> list[list[dict]]:
    prunes = [None, *({"name": "prune", "method": "l1_unstructured", "amount": a} for a in PRUNE)]
    quants = [None, *({"name": "quantize", "scheme": s} for s in SCHEMES)]
    return [[s for s in (p, q) if s] for p in prunes for q in quants]


def key(chain: list[dict]) -> str:
    return (
        " + ".join(f"{s['name']}({s.get('amount', s.get('scheme'))})" for s in chain) or "baseline"
    )


def grid_suite(repeats: int) -> str:
    import tomli_w

    text = BASE.format(name="tune-grid", repeats=repeats)
    entries = [{"techniques": [{"name": "baseline"}] + [{"chain": c} for c in chains() if c]}]
    return text + tomli_w.dumps(entries[0])


def tune_suite(seed: int, repeats: int) -> str:
    return (
        BASE.format(name=f"tune-seed{seed}", repeats=1)
        + f"""
[tune]
objectives = ["max {OBJECTIVE}"]
constraints = ["{CONSTRAINT} <= {BOUND}"]
budget = {len(chains())}
repeats = {repeats}
remeasure = 3
seed = {seed}
[[tune.stages]]
options = [{{ name = "prune", method = "l1_unstructured", amount = {PRUNE} }}, {{ name = "none" }}]
[[tune.stages]]
options = [{{ name = "quantize", scheme = {json.dumps(SCHEMES)} }}, {{ name = "none" }}]
"""
    )


def bench(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "bench", *args], check=True, stdout=subprocess.DEVNULL)


def run_grid(tmp: Path, repeats: int) -> dict:
    from bench.analysis.stats import center, ratio
    from bench.results import store

    path = tmp / "grid.toml"
    path.write_text(grid_suite(repeats))
    t0 = time.perf_counter()
    bench("run", str(path), "--results", str(tmp / "grid"))
    seconds = time.perf_counter() - t0
    (run,) = [p for p in (tmp / "grid").iterdir() if p.is_dir()]
    processes = len(store.run_results(run))
    by_case: dict[str, dict[str, list[float]]] = {}
    for r in store.run_results(run):
        if r["status"] == "ok":
            for m in r["metrics"]:
                by_case.setdefault(r["case_id"], {}).setdefault(m["name"], []).append(m["value"])
    configs = {}
    for case_id, figures in by_case.items():
        name = case_id.rsplit("/", 1)[-1]
        configs[name] = {
            "throughput": figures[OBJECTIVE],
            "kl": center(figures.get(CONSTRAINT, [0.0])),
        }
    feasible = {k: v for k, v in configs.items() if v["kl"] <= BOUND}
    best = max(feasible, key=lambda k: center(feasible[k]["throughput"]))
    near = {}
    for k, v in feasible.items():
        r = ratio(v["throughput"], feasible[best]["throughput"])
        near[k] = r.value if k == best or not (r.has_interval and r.high < 1) else None
    return {
        "seconds": seconds,
        "processes": processes,
        "configs": configs,
        "best": best,
        "near_best": {k: v for k, v in near.items() if v is not None},
    }


def run_tune(tmp: Path, seed: int, repeats: int) -> dict:
    import optuna

    from bench.results import store
    from bench.run.tune import completed

    path = tmp / f"tune-{seed}.toml"
    path.write_text(tune_suite(seed, repeats))
    url = f"sqlite:///{tmp / f'tune-{seed}.sqlite'}"
    t0 = time.perf_counter()
    bench(
        "tune",
        str(path),
        "--results",
        str(tmp / f"tune-{seed}"),
        "--history-url",
        url,
        "--reports",
        str(tmp / "reports"),
    )
    seconds = time.perf_counter() - t0
    (name,) = [s.study_name for s in optuna.study.get_all_study_summaries(url)]
    study = optuna.load_study(study_name=name, storage=url)
    trials = sorted(completed(study), key=lambda t: t["number"])
    results = tmp / f"tune-{seed}"
    processes = [len(store.run_results(results / t["run_id"])) for t in trials]
    return {
        "seconds": seconds,
        "order": [key(t["chain"]) for t in trials],
        "processes": processes,
        "stopped": [t.get("stopped") for t in trials],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--grid-repeats", type=int, default=3)
    ap.add_argument("--trial-repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/data/tune_vs_grid.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        grid = run_grid(tmp, args.grid_repeats)
        # case labels of the grid ("prune-l1-0.3+quant-int8dyn") name the same chains as
        # the tune's trials: map both to the chain's key through the suite's own labels
        from bench.spec.suite import parse_suite

        labels = {
            c.id.rsplit("/", 1)[-1]: key(
                [{"name": t.name, **t.params} for t in c.techniques if t.name != "baseline"]
            )
            for c in parse_suite(grid_suite(1)).cases
        }
        near = {labels[k] for k in grid["near_best"]}
        tunes = []
        for seed in range(args.seeds):
            t = run_tune(tmp, seed, args.trial_repeats)
            hits = [i + 1 for i, k in enumerate(t["order"]) if k in near]
            t["first_hit"] = hits[0] if hits else None
            t["processes_to_first_hit"] = sum(t["processes"][: hits[0]]) if hits else None
            tunes.append(t)
    result = {
        "command": "python benchmarks/tune_vs_grid.py " + " ".join(sys.argv[1:]),
        "configurations": len(chains()),
        "grid": {
            **grid,
            "best": labels[grid["best"]],
            "near_best": sorted(labels[k] for k in grid["near_best"]),
        },
        "tune": tunes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    g = result["grid"]
    print(
        f"grid: {len(chains())} configurations in one run of {g['processes']} process runs, "
        f"{g['seconds']:.0f} s; best {g['best']}; within noise: {', '.join(g['near_best'])}"
    )
    for seed, t in enumerate(tunes):
        print(
            f"tune seed {seed}: first within noise of the best at trial {t['first_hit']} of "
            f"{len(t['order'])} measured ({t['processes_to_first_hit']} process runs by "
            f"then); {t['seconds']:.0f} s in all; order: "
            f"{', '.join(t['order'])}"
        )
    firsts = sorted(t["first_hit"] or math.inf for t in tunes)
    print(f"first hit, by seed: {firsts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
