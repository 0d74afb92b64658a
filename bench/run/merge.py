"""``bench merge``: the shards of one suite, as one run folder; or the same suite run on
several machines, side by side (``--across-machines``, bench.run.machines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.results import files, store
from bench.results.files import believed
from bench.run.case import now_iso


def read_manifests(run_dirs: list[Path]) -> list[dict]:
    """The runs' manifests; they must come from one suite file."""
    manifests = []
    for d in run_dirs:
        if not (d / store.MANIFEST).is_file():
            raise UserError(f"{d}: no run here (no {store.MANIFEST})")
        manifests.append(store.believed_manifest(d))
    hashes = {m["suite"]["sha256"] for m in manifests}
    if len(hashes) != 1:
        raise UserError("bench merge: the runs come from different suite files (hashes differ)")
    return manifests


def merged_manifest(run_id: str, manifests: list[dict], status: str) -> dict[str, Any]:
    """What every merged run's manifest says: its id, suite, first environment, span."""
    first = manifests[0]
    return {
        "schema_version": 1,
        "run_id": run_id,
        "suite": first["suite"],
        "environment": first["environment"],
        "started": min(m["started"] or "" for m in manifests),
        "ended": now_iso(),
        "status": status,
    }


def machine(environment: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs' timings comparable: the hardware and the software that ran."""
    gpu = environment.get("gpu") or {}
    return {
        "cpu": environment.get("cpu_model"),
        "cores": environment.get("cpu_affinity"),
        "gpus": sorted(str(d.get("name") or "") for d in gpu.get("devices") or []),
        "torch": environment.get("torch"),
        "cuda": environment.get("cuda"),
        "python": environment.get("python"),
        "bench": (environment.get("software") or {}).get("bench_source"),
    }


def differences(manifests: list[dict]) -> list[str]:
    """'key: a vs b' for each machine fact on which the runs differ."""
    facts = [machine(m.get("environment") or {}) for m in manifests]
    return [
        f"{key}: " + " vs ".join(sorted({str(f[key]) for f in facts}))
        for key in facts[0]
        if len({str(f[key]) for f in facts}) > 1
    ]


def merge_runs(run_dirs: list[Path], results: Path, allow_mixed: bool = False) -> Path:
    """One run made of the shards (or partial runs) of one suite: every case file copied
    into a new run folder whose manifest says which runs it holds, ``complete`` when their
    selections cover the suite. A report over it equals the unsharded run's. Runs from
    different machines or software are refused unless ``allow_mixed``: one case's repeats
    would then mix two machines' timings."""
    import shutil

    from bench.spec.suite import parse_suite

    manifests = read_manifests(run_dirs)
    if (mixed := differences(manifests)) and not allow_mixed:
        raise UserError(
            "bench merge: the runs come from different environments ("
            + "; ".join(mixed)
            + "): --allow-mixed merges them anyway, --across-machines compares them"
        )
    first = manifests[0]
    suite = parse_suite(first["suite"]["text"], where=first["suite"].get("path") or "<suite>")
    for d in run_dirs:  # every case believable before anything is written
        for f in sorted((d / store.CASES).glob("*.json")):
            believed(files.read_case, f)
    run_id, run_dir = store.create_run_dir(results, suite.name)
    seen: dict[str, Path] = {}
    covered: set[str] = set()
    for d, m in zip(run_dirs, manifests, strict=True):
        selection = m.get("selection")
        covered |= set(selection["cases"]) if selection else {c.id for c in suite.cases}
        for sub in (store.CASES, store.LOGS, store.RANKS):
            for f in sorted((d / sub).glob("*")):
                if f.name in seen and sub == store.CASES:
                    if f.read_bytes() != (run_dir / sub / f.name).read_bytes():
                        raise UserError(
                            f"bench merge: {f.name} is in both {seen[f.name]} and {d}; "
                            "shards of one run never share a case"
                        )
                    continue
                seen.setdefault(f.name, d)
                (run_dir / sub).mkdir(exist_ok=True)
                name = f"{d.name}.{f.name}" if sub == store.LOGS else f.name
                target = run_dir / sub / name
                shutil.copy2(f, target)
    for f in (run_dir / store.CASES).glob("*.json"):  # the merged run is their run now
        data = store.read_json(f)  # as written (checked above), not as read
        data["run_id"] = run_id
        store.write_json_atomic(f, data)
    done = all(m.get("status") in ("complete", "partial") for m in manifests)
    status = "complete" if done and covered >= {c.id for c in suite.cases} else "partial"
    manifest = {
        **merged_manifest(run_id, manifests, status),
        **({"mixed_environments": mixed} if mixed else {}),
        "attempts": [a for m in manifests for a in m.get("attempts", [])],
        "merged_from": [
            {
                "run_id": m["run_id"],
                "status": m.get("status"),
                "selection": m.get("selection"),
                "environment": m.get("environment"),
            }
            for m in manifests
        ],
    }
    if status == "partial":
        manifest["selection"] = {"cases": sorted(covered), "of": len(suite.cases)}
    store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    return run_dir
