"""Results on disk: one folder per run, one JSON file per case and repeat, written
atomically; and the way back into a pandas DataFrame."""

from __future__ import annotations

import datetime as dt
import json
import math
import secrets
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import atomic
from bench.filenames import MAX_READABLE, hashed_name, path_component
from bench.spec.suite import is_baseline

MANIFEST = "manifest.json"
CASES = "cases"
LOGS = "logs"
COUNT = "count"  # the file tail of a case's instruction counts
PROFILES = "profiles"  # a case's profiled pass: <case>.json and <case>.trace.json.gz
RANKS = "ranks"  # each rank's own result of a parallel case

COLUMNS = [
    "run_id", "suite", "case_id", "case_hash", "repeat", "status", "model", "workload",
    "techniques", "is_baseline", "parameters", "metric", "value", "unit", "method", "error",
    "started", "pass", "disturbed",
]  # fmt: skip


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON so that ``path`` holds either the old file or the whole
    new one (``bench.atomic``)."""
    data = json.dumps(_finite(obj), indent=1, allow_nan=False, default=str).encode()
    atomic.write_bytes(path, data)


def _finite(obj: Any) -> Any:
    """NaN and infinities become null: strict JSON, and "not measured" is never a number."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def new_run_id(suite_name: str) -> str:
    """A run id: UTC time to the second, the suite's name, 32 random bits."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{path_component(suite_name)}-{secrets.token_hex(4)}"


def create_run_dir(results: Path, suite_name: str) -> tuple[str, Path]:
    """A new run id and its folder, created exclusively: two runs started in the same
    second (shards, parallel jobs) never share a folder."""
    results.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = new_run_id(suite_name)
        try:
            (results / run_id).mkdir()
        except FileExistsError:
            continue
        return run_id, results / run_id


def case_name(case_id: str) -> str:
    """A case id's parts joined by '__' (readable), one-to-one: an id that the plain form
    cannot carry back (unsafe characters, a '__' of its own) gets a hash of itself."""
    parts = case_id.split("/")
    readable = "__".join(parts)
    if len(readable) <= MAX_READABLE and all(
        path_component(p) == p and "__" not in p for p in parts
    ):
        return readable
    return hashed_name("__".join(parts), case_id)


def case_file_stem(case_id: str, repeat: int | str) -> str:
    """``case_name`` then ``.r<repeat>``, or the pass's name (``.count`` for the case's
    instruction counts, ``.profile`` for its profile's log)."""
    tail = repeat if isinstance(repeat, str) else f"r{repeat}"
    return f"{case_name(case_id)}.{tail}"


def case_path(run_dir: Path, case_id: str, repeat: int | str) -> Path:
    """The result file of one process run of a case (``repeat``: its index, or ``COUNT``)."""
    return run_dir / CASES / f"{case_file_stem(case_id, repeat)}.json"


def disturbed(result: dict[str, Any]) -> bool | None:
    """Did other work disturb this process run's window (bench.telemetry.disturbance)?
    None when it was not recorded."""
    return ((result.get("info") or {}).get("disturbance") or {}).get("disturbed")


def is_count(result: dict[str, Any]) -> bool:
    """A case's instruction counts (``bench.run.count_server``), not one of its timed runs."""
    return (result.get("info") or {}).get("pass") == COUNT


def log_path(run_dir: Path, case_id: str, repeat: int | str) -> Path:
    return run_dir / LOGS / f"{case_file_stem(case_id, repeat)}.log"


def profile_path(run_dir: Path, case_id: str) -> Path:
    """The result of a case's profiled pass (its operator table); its trace lies beside."""
    return run_dir / PROFILES / f"{case_name(case_id)}.json"


def profiles(run_dir: Path) -> list[dict[str, Any]]:
    """The profiled passes of one run folder that can be read, in file-name order."""
    out = []
    for p in sorted((run_dir / PROFILES).glob("*.json")):
        try:
            r = read_json(p)
        except (OSError, ValueError):
            continue
        if isinstance(r, dict) and "case_id" in r:
            out.append(r)
    return out


def read_json(path: Path) -> Any:
    """Strict JSON from a file bench wrote (``files.BadFile`` when it is not)."""
    from bench.results.files import read_json as strict

    return strict(path)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """A run's manifest, checked (``files.BadFile``), as a reader should believe it: a
    ``running`` run whose process is gone reads ``interrupted`` (``liveness.effective``)."""
    from bench.results.files import read_manifest as checked
    from bench.results.liveness import effective

    return effective(checked(Path(run_dir) / MANIFEST))


def believed_manifest(run_dir: Path) -> dict[str, Any]:
    """``read_manifest``, a manifest that cannot be believed a UserError naming it."""
    from bench.results.files import believed

    return believed(lambda p: read_manifest(p.parent), Path(run_dir) / MANIFEST)


def run_results(run_dir: Path) -> list[dict[str, Any]]:
    """Every case result of one run folder that can be believed, in file-name order; each
    one that cannot is skipped with a warning naming it and what is wrong."""
    from bench.results.files import BadFile, read_case

    out = []
    for path in sorted((Path(run_dir) / CASES).glob("*.json")):
        try:
            out.append(read_case(path))
        except BadFile as e:
            warnings.warn(f"{e}; skipped", stacklevel=2)
    return out


def finished_ok(run_dir: Path) -> set[tuple[str, int | str]]:
    """(case_id, repeat) pairs that already have an ``ok`` result in this run (repeat
    ``COUNT`` for the case's counts); a file that cannot be believed is run again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_results(run_dir)
    return {
        (r["case_id"], COUNT if is_count(r) else r["repeat"])
        for r in results
        if r["status"] == "ok"
    }


# --- loading into pandas -------------------------------------------------------------


def _result_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif (p / CASES).is_dir():
            files.extend(sorted((p / CASES).glob("*.json")))
        elif p.is_dir():
            files.extend(sorted(p.glob(f"*/{CASES}/*.json")))
        else:
            warnings.warn(f"{p}: no such results file or folder; skipped", stacklevel=3)
    return files


def load_results(*paths: str | Path) -> Any:
    """Read result files, run folders or a results root into a long DataFrame.

    One row per case x repeat x metric. A case without metrics (failed, skipped, ...)
    still gets one row, with its status and error and an empty metric, so it is never
    silently dropped. Unreadable or truncated files are reported with a warning and skipped.
    """
    from bench.results.files import BadFile, read_case

    records = []
    for path in _result_files(paths or ("results",)):
        try:
            r = read_case(path)
        except BadFile as e:
            warnings.warn(f"{e}; skipped", stacklevel=2)
            continue
        records.append(r)
    return results_frame(records)


def results_frame(records: Iterable[dict[str, Any]]) -> Any:
    """Case results (as written to disk) as the long DataFrame of ``load_results``."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for r in records:
        case = r["case"]
        base = {
            "run_id": r.get("run_id"),
            "suite": case.get("suite"),
            "case_id": r["case_id"],
            "case_hash": r.get("case_hash"),
            "repeat": r.get("repeat", 0),
            "status": r.get("status"),
            "model": case["model"]["label"],
            "workload": case["workload"]["label"],
            "techniques": "+".join(t["label"] for t in case["techniques"]),
            "is_baseline": is_baseline([t["name"] for t in case["techniques"]]),
            "parameters": json.dumps(
                {
                    "model": case["model"]["params"],
                    "workload": case["workload"]["params"],
                    "workload_name": case["workload"]["name"],
                    "techniques": [t["params"] for t in case["techniques"]],
                    "technique_names": [t["name"] for t in case["techniques"]],
                },
                sort_keys=True,
            ),
            "error": r.get("error"),
            "started": r.get("started"),
            "pass": COUNT if is_count(r) else "time",  # a timed process run, or the counts
            "disturbed": disturbed(r),
        }
        metrics = r.get("metrics") or []
        if not metrics:
            rows.append({**base, "metric": None, "value": math.nan, "unit": None, "method": None})
        for m in metrics:
            value = m.get("value")
            rows.append(
                {
                    **base,
                    "metric": m["name"],
                    "value": math.nan if value is None else float(value),
                    "unit": m.get("unit"),
                    "method": m.get("method"),
                }
            )
    # Runs in order, and cases in the order they ran (the suite's order), not file names'.
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(["run_id", "started"], kind="stable", na_position="last").reset_index(
        drop=True
    )
