"""The run's profiled pass: after the timed cases, one more process per case, launched as a
timed one is (``bench.run.profiling`` runs inside it). Its result, the operator table, is
written to ``profiles/<case>.json``, beside the trace: never among the timed results, so no
verdict, table or history reads a profiled figure as a measurement."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.results import store
from bench.spec.suite import Case

if TYPE_CHECKING:
    from bench.run.suite_driver import RunSession

TOP = 3  # operators named on the console line


def settings(session: RunSession) -> dict[str, Any] | None:
    """What the pass runs with, or None when the run profiles nothing."""
    run = session.suite.run
    wanted = run.profile if session.opts.profile is None else session.opts.profile
    if not wanted:
        return None
    return {
        "calls": run.profile_calls,
        "stack": run.profile_stack,
        "python": run.profile_python,
        "dir": str(session.run_dir / store.PROFILES),
    }


def profilable(case: Case) -> str | None:
    """Why this case cannot be profiled, or None."""
    from bench.run import ranks

    if ranks.placement_of(case, {}) is not None:
        return "a case of several processes (ranks): the profiler follows one"
    return None


def profile_run(session: RunSession, console) -> None:
    """Profile every case of the run that has no profile yet (a resumed run keeps its own)."""
    chosen = settings(session)
    if chosen is None or session.launcher is None:
        return
    todo = []
    for case in session.cases:
        path = store.profile_path(session.run_dir, case.id)
        if path.exists() and _ok(path):
            continue
        why = profilable(case)
        if why:
            console.print(f"not profiling {case.id}: {why}", highlight=False)
            continue
        todo.append(case)
    if not todo:
        return
    console.print(f"profiling {len(todo)} case(s) under torch.profiler ({chosen['calls']} calls)")
    session.manifest["profile"] = {k: chosen[k] for k in ("calls", "stack", "python")}
    for case in todo:
        log = store.log_path(session.run_dir, case.id, "profile")
        facts = {**session.facts, "profile": chosen}
        result = session.launcher.run(case, 0, session.run_id, log, session.timeout, facts)
        store.write_json_atomic(store.profile_path(session.run_dir, case.id), result)
        _print(console, result)


def _ok(path) -> bool:
    try:
        return store.read_json(path).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


def _print(console, result: dict[str, Any]) -> None:
    from rich.markup import escape

    if result["status"] != "ok":
        error = (result.get("error") or "—").splitlines()[0][:160]
        line = escape(f"{result['case_id']} (profile)  {error}")
        console.print(f"[red]{result['status']:>8}[/] {line}", highlight=False)
        return
    p = result["info"]["profile"]
    top = ", ".join(
        f"{o['operator']} {o['self_share']:.0%}" for o in p["operators"][:TOP] if o["self_share"]
    )
    ratios = [o["ratio"] for o in p["overhead"].values() if o.get("ratio")]
    overhead = f"; profiler overhead {ratios[0]:.2f}×" if ratios else ""
    line = escape(
        f"{result['case_id']} (profile)  operators explain {p['explained_share']:.0%} of "
        f"{p['wall_us_per_call'] / 1e3:.2f} ms/call: {top}{overhead}"
    )
    console.print(f"[green]{'profiled':>8}[/] {line}", highlight=False)
