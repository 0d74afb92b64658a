"""A case on several ranks: started through torch's launcher from the case process (so the
case's isolation, timeout and resume hold: a timeout kills the case's process group, ranks
included), each rank running the case as usual inside its process group, their results
folded into the one result of the case.

How rank figures combine (``combine``): times are the slowest rank's (the group moves at
its pace); throughput is summed when each rank serves its own data (data parallel) and the
group's (the slowest rank's) when all serve the same batch (tensor parallel); bytes are per
rank, the metric the largest, every rank's kept in ``samples["ranks"]``; the rest (losses,
quality, counts) are rank 0's, which the others match (same synchronised weights, same
outputs).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from bench.errors import UnsupportedHere
from bench.results import store
from bench.results.schema import CaseResult, Metric
from bench.run.distributed import Placement, RankFailed, launch
from bench.spec import registry
from bench.spec.suite import Case

# The model's own bytes: a rank's share when the model is sharded.
SHARDED_BYTES = {"state_dict_bytes", "weights_bytes", "gradient_bytes", "optimizer_state_bytes"}
ENERGY_ABSENT = (
    "not measured on launched ranks: an energy window of its own would repeat collectives "
    "a different number of times on each rank, and ranks sharing a CPU are one device to "
    "codecarbon's model"
)


def placement_of(case: Case, facts: dict[str, Any]) -> tuple[Placement, dict[str, bool]] | None:
    """(where the case's ranks go, {"data_parallel": each rank serves its own data,
    "sharded": each holds a share of the model}), or None when the case runs in its own
    process. Multi-node settings come from the run (``facts["launch"]``)."""
    for step in case.techniques:
        entry = registry.techniques.get(step.name)
        if "placement" not in entry.meta:
            continue
        params = entry.params.model_validate(step.params)
        placed = entry.meta["placement"](params, case.run["device"])
        if placed is not None:
            placed = Placement(**placed, **(facts.get("launch") or {}))
            return placed, {k: entry.meta[k](params) for k in ("data_parallel", "sharded")}
    return None


def check_placement(placement: Placement) -> None:
    """What this machine cannot place (skipped with why): more NCCL ranks than GPUs."""
    if placement.backend != "nccl":
        return
    from bench.telemetry.cuda_probe import cuda_device_count

    have = cuda_device_count()
    per_node = placement.world_size // placement.nnodes
    if per_node > have:
        raise UnsupportedHere(
            f"{per_node} NCCL ranks on this node need {per_node} GPUs; {have} here"
        )


def rank_entry(case_json: dict[str, Any], repeat: int, run_id: str | None, facts: dict) -> dict:
    """One rank's run of the case (the function the launcher starts). A failed rank raises,
    so the launcher stops its peers (they may be waiting for it in a collective)."""
    import torch.distributed as dist

    from bench.run import case as runner

    entered = time.time()
    result = runner.execute(Case.from_json(case_json), repeat, run_id, {**facts, "rank": True})
    if result.status in ("failed", "oom"):
        print(result.traceback or "", flush=True)
        raise RuntimeError(f"rank {dist.get_rank()}: {result.error}")
    return {"entered": entered, "result": result.to_json()}


def run_on_ranks(
    case: Case,
    result: CaseResult,
    facts: dict[str, Any],
    repeat: int,
    placement: Placement,
    kind: dict[str, bool],
) -> None:
    """Launch the case's ranks (``placement_of``'s answer) and fold their results into
    ``result``."""
    # Every node of the launch names it alike: the case and repeat, never a random id.
    placement = dataclasses.replace(placement, rdzv_id=f"{case.hash}-r{repeat}")
    check_placement(placement)
    result.info["placement"] = {**dataclasses.asdict(placement), **kind}
    if why := placement.oversubscribed():
        result.info["warning"] = why
    rank_facts = {k: v for k, v in facts.items() if k != "launch"}
    t0 = time.time()
    try:
        got = launch(rank_entry, (case.to_json(), repeat, result.run_id, rank_facts), placement)
    except RankFailed as e:
        result.info["rank_exit_codes"] = {str(r): c for r, c in sorted(e.exit_codes.items())}
        result.info["failed_rank"] = e.rank
        raise
    _write_rank_files(got, facts, case, repeat)
    ranks = {r: CaseResult.from_json(v["result"]) for r, v in got.items()}
    if 0 not in ranks:  # another node holds rank 0: its case result is the case's
        result.info["ranks_here"] = sorted(ranks)
        result.info["case_result_on"] = "the node whose ranks include global rank 0"
        return
    first = ranks[0]
    if first.status != "ok":
        result.status, result.error = first.status, first.error
        return
    startup = max(v["entered"] for v in got.values()) - t0
    result.metrics = [
        Metric(
            "launch_startup",
            startup,
            "s",
            "wall_clock_launch_to_last_rank_ready (rank processes, rendezvous, process group)",
        ),
        *combine({r: x.metrics for r, x in ranks.items()}, **kind),
    ]
    result.samples = {**first.samples, "ranks": _by_rank(ranks)}
    result.info.update(first.info)  # its "absent" says why energy is (bench.run.case)


def combine(metrics: dict[int, list[Metric]], data_parallel: bool, sharded: bool) -> list[Metric]:
    """One metric per name from every rank's (see the module's docstring). The model's
    own bytes of a sharded model (tensor parallel, FSDP) are a rank's share, so they are
    named ``..._per_rank``: never ranked against a whole model's."""
    world = len(metrics)
    out = []
    for m in metrics[0]:
        values = [next((x.value for x in metrics[r] if x.name == m.name), None) for r in metrics]
        if any(v is None for v in values):
            continue  # not every rank has it: not a figure of the group
        how, value = _rule(m, data_parallel)
        name = f"{m.name}_per_rank" if sharded and m.name in SHARDED_BYTES else m.name
        out.append(Metric(name, value(values), m.unit, f"{how} of {world} ranks ({m.method})"))
    return out


def _rule(m: Metric, data_parallel: bool):
    if m.unit == "s":
        return "max", max
    if m.name.startswith("throughput_"):
        return ("sum", sum) if data_parallel else ("min", min)
    if m.unit == "bytes":
        return "max", max
    if m.unit.endswith("/s"):
        return "sum", sum
    return "rank 0", lambda values: values[0]


def _by_rank(ranks: dict[int, CaseResult]) -> dict[str, Any]:
    """Every rank's figures, for what the combined metrics leave out (memory per rank)."""
    return {
        "unit": "per metric",
        "values": {str(r): {m.name: m.value for m in x.metrics} for r, x in sorted(ranks.items())},
        "pids": {str(r): x.info.get("pid") for r, x in sorted(ranks.items())},
    }


def _write_rank_files(got: dict[int, Any], facts: dict[str, Any], case: Case, repeat: int) -> None:
    if not facts.get("run_dir"):
        return
    folder = Path(facts["run_dir"]) / store.RANKS
    folder.mkdir(parents=True, exist_ok=True)
    stem = store.case_file_stem(case.id, repeat)
    for rank, value in got.items():
        store.write_json_atomic(folder / f"{stem}.rank{rank}.json", value["result"])
