"""``bench merge --across-machines NAME=RUN ...``: the same suite run on several machines
(a CPU box, a GPU box), as one run whose groups are per machine, so a report compares the
machines case by case (bench.analysis.machines): tokens/s, J/token and, with the suite's
``[pricing]`` table (cost of a machine-hour by machine name), cost per million tokens.

A machine's cases keep their own baseline: its model label (and so the case id) gains
``@NAME``, so no figure ever pools two machines' runs.
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import UserError
from bench.results import files, store
from bench.results.files import believed
from bench.run.merge import machine, merged_manifest, read_manifests

SEPARATOR = "@"


def labelled(items: list[str]) -> list[tuple[str, Path, dict]]:
    """``NAME=RUN_DIR`` (or a bare RUN_DIR: its host name) -> (name, folder, manifest)."""
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = "", item
        out.append((name, Path(path)))
    manifests = read_manifests([p for _, p in out])
    out = [
        (n or (m["environment"] or {}).get("host") or "?", p, m)
        for (n, p), m in zip(out, manifests, strict=True)
    ]
    names = [n for n, _, _ in out]
    if len(set(names)) != len(names):
        raise UserError(
            f"bench merge --across-machines: machine names repeat ({', '.join(names)}); "
            "name each run NAME=RUN_DIR"
        )
    for n in names:
        if not n or SEPARATOR in n or "/" in n:
            raise UserError(
                f"bench merge --across-machines: {n!r} is no machine name (no '@' or '/')"
            )
    return out


def merge_machines(items: list[str], results: Path) -> Path:
    """One run holding every machine's cases, each case tagged with its machine."""
    machines = labelled(items)
    manifests = [m for _, _, m in machines]
    run_id, run_dir = store.create_run_dir(results, manifests[0]["suite"]["name"])
    (run_dir / store.CASES).mkdir(exist_ok=True)
    for name, folder, _ in machines:
        for f in sorted((folder / store.CASES).glob("*.json")):
            believed(files.read_case, f)
            r = store.read_json(f)  # as written, not as read: keys stay as they were
            model = r["case"]["model"]
            model["label"] = f"{model['label']}{SEPARATOR}{name}"
            r["case_id"] = f"{model['label']}/{r['case_id'].partition('/')[2]}"
            r["case"]["id"] = r["case_id"]  # one id: readers check the two agree
            r["run_id"] = run_id
            r.setdefault("info", {})["machine"] = name
            store.write_json_atomic(store.case_path(run_dir, r["case_id"], r["repeat"]), r)
    complete = all(m.get("status") == "complete" for m in manifests)
    manifest = {
        **merged_manifest(run_id, manifests, "complete" if complete else "partial"),
        "attempts": [],
        "machines": {
            name: {
                "run_id": m["run_id"],
                "status": m.get("status"),
                "machine": machine(m["environment"]),
                "environment": m["environment"],
            }
            for name, _, m in machines
        },
    }
    store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    return run_dir
