"""The end of a ``bench tune``: the search's front, measured again in one run, and written
out as a suite ``bench run`` reproduces (judged in ``bench.analysis.tune_front``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.run import tune
from bench.run.tune import Tuner, trial_suite, write_suite
from bench.spec.tune import TuneSpec

MAX_FRONT = 8  # points re-measured at most: each costs `remeasure` process runs


def search_front(trials: list[dict[str, Any]], spec: TuneSpec) -> list[dict[str, Any]]:
    """The trials on the search's Pareto front among those meeting the constraints."""
    from bench.analysis.tune_front import pareto

    ok = [t for t in trials if not t.get("error") and max(t["constraints"] or [0]) <= 0]
    front = [ok[i] for i in pareto([t["figures"] for t in ok], spec.objectives)]
    first = spec.objectives[0]
    front.sort(key=lambda t: t["figures"][first.metric], reverse=first.maximise)
    return front[:MAX_FRONT]


def remeasure(tuner: Tuner, front: list[dict[str, Any]]) -> list[Any]:
    """Each front point measured again, every point of one workload in one run with the
    suite's ``remeasure`` repeats; the points with their runs."""
    from bench.analysis.tune_front import Point, describe_chain

    points = []
    by_workload: dict[str, list[dict[str, Any]]] = {}
    for t in front:
        by_workload.setdefault(repr(sorted(t["workload"].items())), []).append(t)
    for k, (_, group) in enumerate(sorted(by_workload.items())):
        chains = [t["chain"] for t in group if t["chain"]]
        data = trial_suite(
            tuner.data,
            f"{tuner.suite.name}-front{k}",
            chains,
            group[0]["workload"],
            tuner.spec.remeasure,
        )
        path = write_suite(data, tuner.folder / f"front-{k}.toml")
        tuner.console.print(f"[bold]re-measuring {len(group)} point(s)[/] of the front")
        measured = tune.run_measurement(
            path, tuner.opts.results, tuner.console, inline=tuner.opts.inline
        )
        ids = iter(measured.order[1:])
        base_runs = measured.cases.get(measured.baseline, {})
        for t in group:
            cid = next(ids) if t["chain"] else measured.baseline
            label = describe_chain(t["chain"]) + (f" {t['workload']}" if t["workload"] else "")
            point = Point(label, t["number"], t["chain"], t["workload"], t["figures"])
            point.runs, point.base = measured.cases.get(cid, {}), base_runs
            point.run_id, point.error = measured.run_id, measured.errors.get(cid)
            points.append(point)
    return points


def write_tuned(tuner: Tuner, points: list[Any]) -> Path:
    """The front's configurations as a suite that ``bench run`` reproduces."""
    workloads = {repr(sorted(p.workload.items())): p.workload for p in points}
    data = trial_suite(
        tuner.data, f"{tuner.suite.name}-tuned", [p.chain for p in points], {}, tuner.spec.remeasure
    )
    data["workloads"] = [{**tuner.data["workloads"][0], **w} for w in workloads.values()]
    data["description"] = (
        f"The front bench tune found for {tuner.suite.name} (study {tuner.name}): "
        + "; ".join(p.label for p in points)
    )
    return write_suite(data, tuner.folder / "tuned.toml")
