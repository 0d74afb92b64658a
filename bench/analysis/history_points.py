"""What a run adds to a history: its facts, the environment key that says which series its
points extend, and one point per case and metric (the geometric mean over the case's process runs
and its interval). Read from the run folder, which stays the source of truth."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

from bench.analysis import stats
from bench.analysis.sides import environment_facts
from bench.errors import UserError
from bench.results import store
from bench.results.files import BadFile
from bench.results.history import PointRow, RunRow
from bench.results.history_rows import environment_key
from bench.spec.gates import gates_of_suite_text


def run_points(run_dir: Path) -> tuple[RunRow, list[PointRow]]:
    """The history rows of one run folder."""
    manifest = store.believed_manifest(run_dir)
    if manifest["started"] is None:
        raise UserError("malformed manifest: started: missing", where=str(run_dir / store.MANIFEST))
    env, suite = manifest["environment"] or {}, manifest["suite"]
    git = env.get("git") or {}
    facts = environment_facts(env)
    gates = gates_of_suite_text(suite["text"], f"{run_dir} (its suite)")
    run = RunRow(
        run_id=manifest["run_id"],
        suite=suite["name"],
        started=manifest["started"],
        commit=git.get("commit"),
        dirty=git.get("dirty"),
        env_key=environment_key(facts),
        env=facts,
        path=str(run_dir.resolve()),
        gates={m: t.to_json() for m, t in gates.items()},
        suite_text=suite["text"],
    )
    values: dict[tuple[str, str], list[float]] = {}
    meta: dict[tuple[str, str], tuple[str, str]] = {}
    for r in store.run_results(run_dir):
        if r["status"] != "ok":
            continue
        for m in r["metrics"]:
            if m["value"] is not None:
                key = (r["case_id"], m["name"])
                values.setdefault(key, []).append(m["value"])
                meta.setdefault(key, (m["unit"] or "", m["method"] or ""))
    points = []
    for (case_id, metric), vals in values.items():
        interval = stats.center_interval(vals)
        unit, method = meta[(case_id, metric)]
        points.append(
            PointRow(
                case_id=case_id,
                metric=metric,
                unit=unit,
                method=method,
                value=stats.center(vals),
                low=interval[0] if interval else None,
                high=interval[1] if interval else None,
                n=len(vals),
                values=vals,
            )
        )
    return run, points


def history_runs(results: Path, name: str | None = None) -> Iterator[tuple[str, Path]]:
    """(history name, run folder) of every finished run under ``results`` that was marked as
    part of a history (of ``name`` only, when given), oldest first."""
    for manifest_path in sorted(Path(results).glob(f"*/{store.MANIFEST}")):
        try:
            manifest = store.read_manifest(manifest_path.parent)
        except BadFile as e:
            warnings.warn(f"{e}; skipped", stacklevel=2)
            continue
        marked = manifest.get("history")
        if marked and (name is None or marked == name) and manifest.get("status") == "complete":
            yield marked, manifest_path.parent
