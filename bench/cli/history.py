"""``bench history show NAME``: the nightly history's alarms and change points, its trend
pages; ``bench history rebuild [NAME]`` and ``bench history ack NAME``; and the step of
``bench run --history`` that appends a run. Subcommands, so that any name can be a
history's, ``ack`` and ``rebuild`` included."""

from __future__ import annotations

import argparse
import fnmatch
import tempfile
from pathlib import Path

from bench.cli import options
from bench.cli.options import open_db, where
from bench.errors import UserError


def add_parser(sub) -> None:
    h = options.command(
        sub,
        "history",
        None,  # each subcommand sets its own
        help="alarms and change points of a nightly history (show, rebuild, ack)",
        description="The runs appended with `bench run --history NAME`, in a database under "
        "--results (or --history-url).  show NAME: open alarms and recent change points "
        "(exit 1 on an open alarm).  rebuild [NAME]: re-derive the database from the run "
        "folders under --results.  ack NAME: accept the open alarms (a regression meant to "
        "be); they stop alarming, a later change alarms again.",
    )
    hs = h.add_subparsers(
        dest="history_command", required=True, metavar="SUBCOMMAND", help="what to do"
    )

    s = options.command(hs, "show", show, help="open alarms and recent change points of NAME")
    s.add_argument("name", metavar="NAME", help="the history (`bench run --history NAME`)")
    options.add_results(s, history=True)
    _select(s)
    s.add_argument("--since", metavar="DATE", help="only change points from this date on")
    s.add_argument(
        "--plot", action="store_true", help="write trend pages to REPORTS/nightly/index.html"
    )
    options.add_reports(s, what="where --plot writes the trend pages")
    s.add_argument(
        "--confirm",
        action="store_true",
        help="re-run the commits on both sides of each alarm's change (`bench ab`): a "
        "REGRESSION confirms it, OK or IMPROVED dismisses it, INCONCLUSIVE keeps it open, "
        "unconfirmed; also confirms a one-night regression right away",
    )
    options.add_json(s)

    r = options.command(
        hs, "rebuild", rebuild_command, help="re-derive the database from the run folders"
    )
    r.add_argument("name", metavar="NAME", nargs="?", help="only this history (default: all)")
    options.add_results(r, history=True)

    a = options.command(
        hs, "ack", ack, help="accept the open alarms of NAME (a regression meant to be)"
    )
    a.add_argument("name", metavar="NAME", help="the history")
    options.add_results(a, history=True)
    _select(a)
    a.add_argument("--since", metavar="DATE", help="only change points from this date on")
    a.add_argument("--note", metavar="TEXT", help="why the regression is accepted")


def _select(p: argparse.ArgumentParser) -> None:
    p.add_argument("--case", metavar="GLOB", help="only cases matching this glob")
    p.add_argument("--metric", metavar="NAME", help="only this metric")
    p.add_argument(
        "--gates",
        type=Path,
        metavar="FILE",
        help="judge every night with this TOML file's [gates] (default: each night's own)",
    )


def append(args: argparse.Namespace, run_dir: Path) -> str:
    """Append a finished run to the history named by ``--history``; a line saying so."""
    from bench.analysis.history_points import run_points

    run, points = run_points(run_dir)
    with open_db(args) as db:
        db.append(args.history, run, points)
    return f"history {args.history}: +1 run ({len(points)} points) in {where(args)}"


def show(args: argparse.Namespace) -> int:
    return analyse(args, args.name)


def ack(args: argparse.Namespace) -> int:
    return analyse(args, args.name, acknowledge=True)


def rebuild_command(args: argparse.Namespace) -> int:
    return rebuild(args, args.name)


def rebuild(args: argparse.Namespace, name: str | None) -> int:
    from bench.analysis.history_points import history_runs, run_points

    found: dict[str, list[Path]] = {}
    for history, run_dir in history_runs(args.results, name):
        found.setdefault(history, []).append(run_dir)
    if name is not None and name not in found:
        raise UserError(f"no finished run marked --history {name} here", where=str(args.results))
    with open_db(args) as db:
        for history, dirs in found.items():
            n = db.replace(history, [run_points(d) for d in dirs])
            print(f"history {history}: {n} runs re-derived from {args.results}")
    return 0


def analyse(args: argparse.Namespace, name: str, acknowledge: bool = False) -> int:
    from bench.analysis import changepoints as cp
    from bench.analysis import trend_report
    from bench.results.metric_info import MODELLED_NOTE

    console = options.progress()
    with open_db(args) as db:
        frame = db.frame(name)
        if frame.empty:
            known = db.names()
            raise UserError(
                f"no history named {name!r} (known: {', '.join(known) or 'none'})",
                where=where(args),
            )
        from bench.spec.gates import gates_of_file

        pinned = None if args.gates is None else gates_of_file(args.gates)
        series = cp.series_of(_filtered(frame, args), pinned)
        modelled = sorted({s.metric for s in series if s.modelled})
        series = [s for s in series if not s.modelled]
        points = cp.analyse(series)
        if args.since:
            since = _since(args.since)
            points = [p for p in points if p.night.started >= since]
        if acknowledge:
            return _acknowledge(db, name, cp.alarms(points), args)
        notes = [f"not tracked: {', '.join(modelled)} ({MODELLED_NOTE})"] if modelled else []
        alarms, accepted = _accepted(cp.alarms(points), db.acks(name))
        notes += accepted
        if args.confirm:
            suspects = cp.suspects(series)
            texts = {p.night.run_id: db.suite_text(name, p.night.run_id) for p in alarms}
            texts |= {p.night.run_id: db.suite_text(name, p.night.run_id) for p in suspects}
    if args.confirm:
        alarms, confirmed = confirm(alarms, suspects, texts, args, console)
        notes += confirmed
    index = None
    if args.plot:
        index = trend_report.write_pages(
            name, series, points, alarms, args.reports / "nightly", notes
        )
    if args.json:
        options.print_json(_as_json(name, series, points, alarms, notes, index))
        return 1 if alarms else 0
    out = options.results()
    trend_report.print_summary(name, series, points, alarms, out)
    for n in notes:
        out.print(n, highlight=False, markup=False)
    if index is not None:
        out.print(f"trend pages: {index}", highlight=False)
    return 1 if alarms else 0


def _as_json(name: str, series, points, alarms, notes: list[str], index) -> dict:
    """What ``history show`` prints, as data: every change point (alarms first), the notes."""
    shown = [*alarms, *(p for p in points if p not in alarms)]
    return {
        "history": name,
        "runs": len({n.run_id for s in series for n in s.nights}),
        "series": len(series),
        "open_alarms": len(alarms),
        "change_points": [
            {
                "alarm": p in alarms,
                "case_id": p.series.case_id,
                "metric": p.series.metric,
                "unit": p.series.unit,
                "env_key": p.series.env_key,
                "run_id": p.night.run_id,
                "started": p.night.started.isoformat(),
                "commit": p.night.commit,
                "nights_after": p.nights_after,
                **p.change.to_json(),
            }
            for p in shown
        ],
        "notes": notes,
        "trend_pages": None if index is None else str(index),
    }


def _acknowledge(db, name: str, alarms, args: argparse.Namespace) -> int:
    """Accept the open alarms (those --case/--metric select): their series stop alarming
    for every change up to now; a later regression alarms again."""
    import pandas as pd

    out = options.results()
    when = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    for a in alarms:
        s = a.series
        db.ack(name, (s.case_id, s.metric, s.env_key), when, args.note or "")
        out.print(f"accepted: {s.case_id} {s.metric} ({a.change.describe()})", highlight=False)
    out.print(f"history {name}: {len(alarms)} alarm(s) accepted", highlight=False)
    return 0


def _accepted(alarms, acks: dict) -> tuple[list, list[str]]:
    """The alarms still open, and a line for each one an ack covers (its change began
    before the ack was made)."""
    import pandas as pd

    open_, notes = [], []
    for a in alarms:
        s = a.series
        ack = acks.get((s.case_id, s.metric, s.env_key))
        if ack and a.night.started <= pd.Timestamp(ack[0]):
            notes.append(
                f"accepted on {ack[0][:10]}: {s.case_id} {s.metric} {a.change.describe()}"
                + (f" ({ack[1]})" if ack[1] else "")
            )
        else:
            open_.append(a)
    return open_, notes


def _filtered(frame, args: argparse.Namespace):
    if args.case:
        frame = frame[[fnmatch.fnmatchcase(c, args.case) for c in frame["case_id"]]]
    if args.metric:
        if args.metric not in set(frame["metric"]):
            raise UserError(f"--metric {args.metric}: not in this history")
        frame = frame[frame["metric"] == args.metric]
    if frame.empty:
        raise UserError(f"--case {args.case}: no case of this history matches")
    return frame


def _since(text: str):
    import pandas as pd

    try:
        return pd.Timestamp(text, tz="UTC") if "+" not in text else pd.Timestamp(text)
    except ValueError:
        raise UserError(f"--since {text!r}: expected a date such as 2026-11-01") from None


def confirm(alarms, suspects, suite_texts: dict[str, str], args, console):
    """Re-run what each alarm (and one-night suspect) is about: the commit of the last night
    before the change could have started against the commit of the last night it could have
    started on (the change point's position is uncertain: ``ChangePoint.first``/``last``),
    in a paired ``bench ab`` job. REGRESSION confirms; OK or IMPROVED dismisses; INCONCLUSIVE
    keeps an alarm open, marked unconfirmed (a suspect stays a suspect)."""
    from bench.run.ab import Budget, SideSpec, run_ab

    kept, notes = [], []
    for p in [*alarms, *suspects]:
        nights = p.series.nights
        first = p.first if p.first is not None else p.index
        last = p.last if p.last is not None else p.index
        before, after = nights[first - 1].commit, nights[last].commit
        what = f"{p.series.case_id} {p.series.metric} at {p.night.run_id}"
        span = (
            f"nights {nights[first].run_id}…{nights[last].run_id}" if first != last else "one night"
        )
        is_alarm = p in alarms
        if before and before == after:
            notes.append(
                f"{what}: dismissed, the same commit ran on both sides of the change "
                f"({after[:10]}, {span}): the machine changed, not the code"
            )
            continue
        if not before or not after:
            notes.append(f"{what}: no commits to re-run; the alarm stands unconfirmed")
            kept += [p] if is_alarm else []
            continue
        with tempfile.TemporaryDirectory() as tmp:
            suite = Path(tmp) / "suite.toml"
            suite.write_text(suite_texts.get(p.night.run_id, ""))
            try:
                comparison = run_ab(
                    SideSpec("base", suite, before),
                    SideSpec("candidate", suite, after),
                    Path(tmp) / "ab",
                    Budget(minutes=10),
                    console,
                )
            except UserError as e:
                notes.append(f"{what}: cannot re-run ({e}); the alarm stands unconfirmed")
                kept += [p] if is_alarm else []
                continue
        verdicts = [
            str(ch.verdict)
            for case_id, ch in comparison.rows
            if case_id == p.series.case_id and ch.metric == p.series.metric
        ]
        verdict = verdicts[0] if verdicts else "nothing"
        pair = f"{before[:10]} → {after[:10]}, the change's {span}"
        if verdict == "REGRESSION":
            kept.append(p)
            notes.append(f"{what}: confirmed by a paired re-run ({pair})")
        elif verdict == "INCONCLUSIVE" and is_alarm:
            kept.append(p)
            notes.append(
                f"{what}: unconfirmed, the paired re-run ({pair}) was INCONCLUSIVE; "
                "the alarm stays open"
            )
        else:
            notes.append(f"{what}: dismissed, the paired re-run ({pair}) says {verdict}")
    return kept, notes
