"""A run in words, as the report's Environment section and ``bench show`` print it: what
produced the numbers (suite, run, code, machine, software, bandwidth, idle power) and how
quiet the machine was while it measured."""

from __future__ import annotations

from typing import Any

from bench.analysis.units import human
from bench.results import store


def facts(manifest: dict[str, Any], results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, text) pairs: the environment, then how quiet the run was."""
    return [*environment(manifest), quiet(results)]


def environment(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """What produced these numbers, in words: (label, text) pairs."""
    env = manifest.get("environment") or {}
    git = env.get("git") or {}
    commit = git.get("commit")
    code = "not a git checkout" if not commit else f"{commit[:12]}"
    if commit and git.get("dirty"):
        code += " with uncommitted changes"
    gpu = env.get("gpu") or {}
    gpus = ", ".join(str(d.get("name")) for d in gpu.get("devices", [])) or (
        f"none ({gpu.get('reason')})" if gpu.get("reason") else "none"
    )
    soft = env.get("software") or {}
    software = [f"Python {env.get('python')}", f"torch {env.get('torch')}"]
    software += [f"{k} {soft[k]}" for k in ("torchao", "transformers") if soft.get(k)]
    if env.get("cuda"):
        software.append(f"CUDA {env['cuda']}")
    facts = [
        ("Suite", f"{manifest['suite'].get('name')} ({manifest['suite'].get('path')})"),
        (
            "Run",
            f"{manifest.get('run_id')}, started {manifest.get('started')}, "
            f"{manifest.get('status')}"
            + (f" ({manifest['status_reason']})" if manifest.get("status_reason") else ""),
        ),
        ("Code", code),
        (
            "CPU",
            f"{env.get('cpu_model')}, {env.get('cpu_affinity') or env.get('cpu_count')} "
            f"of {env.get('cpu_count')} CPUs usable; torch threads where a suite sets no "
            f"run.threads: {env.get('cpu_threads_default', env.get('torch_threads'))}",
        ),
        ("GPU", gpus),
        ("Software", ", ".join(software)),
    ]
    for key, bw in (env.get("copy_bandwidth") or {}).items():
        facts.append(
            ("Memory bandwidth", f"{human(bw.get('read_bytes_per_s'), 'bytes/s')} read, "
             f"{human(bw.get('bytes_per_s'), 'bytes/s')} copy ({key}; {bw.get('read_method')})")
        )  # fmt: skip
    idle = manifest.get("idle_power") or {}
    if idle.get("domains"):
        parts = [f"{d}: {v['watts']:.1f} W ({v.get('method')})"
                 for d, v in idle["domains"].items()]  # fmt: skip
        facts.append(("Idle power", "; ".join(parts)))
    else:
        facts.append(("Idle power", f"not measured: {idle.get('reason') or 'no record'}"))
    return facts


def quiet(results: list[dict[str, Any]]) -> tuple[str, str]:
    """How quiet the machine was while the run measured: its disturbed process runs."""
    from bench.results.disturbance import OTHERS_CORES_LIMIT, STEAL_LIMIT, describe

    seen = [(r, r["info"]["disturbance"]) for r in results if store.disturbed(r) is not None]
    if not seen:
        return ("Quiet", "not recorded (no /proc here, or results from before bench recorded it)")
    bad = [(r, d) for r, d in seen if d["disturbed"]]
    limits = (
        f"disturbed: other processes used ≥ {OTHERS_CORES_LIMIT:g} cores or ≥ "
        f"{100 * STEAL_LIMIT:g}% of CPU time was stolen during the measured calls"
    )
    worst = max(d.get("others_cores") or 0.0 for _, d in seen)
    steal = max(d.get("steal_fraction") or 0.0 for _, d in seen)
    if not bad:
        return ("Quiet", f"yes: no process run of {len(seen)} disturbed (others used at most "
                f"{worst:.2f} cores, at most {100 * steal:.1f}% stolen; {limits})")  # fmt: skip
    listed = "; ".join(f"{r['case_id']} r{r['repeat']}: {describe(d)}" for r, d in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return ("Quiet", f"NO: {len(bad)} of {len(seen)} process runs disturbed ({listed}{more}; "
            f"{limits})")  # fmt: skip
