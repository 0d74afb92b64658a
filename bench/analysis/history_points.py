"""What a run adds to a history: its facts, the environment key that says which series its
points extend, and one point per case and metric (the geometric mean over the case's process runs
and its interval). Read from the run folder, which stays the source of truth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from bench.analysis import stats
from bench.analysis.sides import environment_facts, environment_key, read_result
from bench.errors import UserError
from bench.results import store
from bench.results.history import PointRow, RunRow
from bench.spec.gates import gates_of_suite_text


def run_points(run_dir: Path) -> tuple[RunRow, list[PointRow]]:
    """The history rows of one run folder."""
    manifest = read_result(run_dir / store.MANIFEST)
    try:
        env = manifest.get("environment") or {}
        suite = manifest["suite"]
        git = env.get("git") or {}
        facts = environment_facts(env)
        run = RunRow(
            run_id=manifest["run_id"],
            suite=suite["name"],
            started=manifest["started"],
            commit=git.get("commit"),
            dirty=git.get("dirty"),
            env_key=environment_key(facts),
            env=facts,
            path=str(run_dir.resolve()),
            gates={
                m: t.to_json()
                for m, t in gates_of_suite_text(
                    suite.get("text", ""), f"{run_dir} (its suite)"
                ).items()
            },
            suite_text=suite.get("text", ""),
        )
    except (KeyError, TypeError, AttributeError):
        raise UserError(
            "malformed manifest: no run_id, suite or started", where=str(run_dir)
        ) from None
    values: dict[tuple[str, str], list[float]] = {}
    meta: dict[tuple[str, str], tuple[str, str]] = {}
    for f in sorted((run_dir / store.CASES).glob("*.json")):
        r = read_result(f)
        if r.get("status") != "ok":
            continue
        for m in r.get("metrics") or []:
            if isinstance(m.get("value"), int | float) and not isinstance(m["value"], bool):
                key = (r["case_id"], m["name"])
                values.setdefault(key, []).append(float(m["value"]))
                meta.setdefault(key, (m.get("unit") or "", m.get("method") or ""))
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
        manifest = read_result(manifest_path)
        marked = manifest.get("history")
        if marked and (name is None or marked == name) and manifest.get("status") == "complete":
            yield marked, manifest_path.parent
