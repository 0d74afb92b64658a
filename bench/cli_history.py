"""``bench history``: the nightly history's alarms and change points, its trend pages, and
``bench history rebuild``; and the step of ``bench run --history`` that appends a run."""

from __future__ import annotations

import argparse
import fnmatch
import os
import tempfile
from pathlib import Path

from bench.errors import UserError

URL_VARIABLE = "BENCH_HISTORY_URL"
EPILOG = """exit status: 0 no open alarm; 1 an open alarm (with --confirm: one confirmed or
not dismissed by the re-run); 2 bad input (unknown history, unreachable database, corrupt row)"""


def add_parser(sub) -> None:
    h = sub.add_parser(
        "history",
        help="alarms and change points of a nightly history; `history rebuild` re-derives it",
        description="bench history NAME: open alarms and recent change points of the runs "
        "appended with `bench run --history NAME`.  bench history rebuild [NAME]: re-derive "
        "the database from the run folders under --results.  bench history ack NAME "
        "[--case GLOB] [--metric M] [--note TEXT]: accept the open alarms (a regression "
        "meant to be): they stop alarming; a later change alarms again.",
        epilog=EPILOG,
        usage="bench history NAME | rebuild [NAME] | ack NAME  [options]",
    )
    h.add_argument("words", nargs="+", metavar="NAME | rebuild [NAME] | ack NAME")
    add_location(h)
    h.add_argument("--since", metavar="DATE", help="only change points from this date on")
    h.add_argument("--case", metavar="GLOB", help="only cases matching this glob")
    h.add_argument("--metric", metavar="NAME", help="only this metric")
    h.add_argument(
        "--plot", action="store_true", help="write trend pages to REPORTS/nightly/index.html"
    )
    h.add_argument("--reports", type=Path, default=Path("reports"), metavar="DIR")
    h.add_argument("--note", metavar="TEXT", help="with ack: why the regression is accepted")
    h.add_argument(
        "--gates",
        type=Path,
        metavar="FILE",
        help="judge every night with this TOML file's [gates] (default: each night's own)",
    )
    h.add_argument(
        "--confirm",
        action="store_true",
        help="re-run the commits on both sides of each alarm's change (`bench ab`): a "
        "REGRESSION confirms it, OK or IMPROVED dismisses it, INCONCLUSIVE keeps it open, "
        "unconfirmed; also confirms a one-night regression right away",
    )


def add_location(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="results root; the history database defaults to DIR/history.sqlite",
    )
    p.add_argument(
        "--history-url",
        metavar="URL",
        default=os.environ.get(URL_VARIABLE),
        help=f"a shared history database instead, e.g. postgresql://user@host/bench "
        f"(default: ${URL_VARIABLE})",
    )


def database_url(args: argparse.Namespace) -> str:
    from bench.results.history import default_url

    return args.history_url or default_url(args.results)


def open_db(args: argparse.Namespace):
    from bench.results.history import History

    return History(database_url(args))


def append(args: argparse.Namespace, run_dir: Path) -> str:
    """Append a finished run to the history named by ``--history``; a line saying so."""
    from bench.analysis.history_points import run_points

    run, points = run_points(run_dir)
    with open_db(args) as db:
        db.append(args.history, run, points)
    return f"history {args.history}: +1 run ({len(points)} points) in {where(args)}"


def where(args: argparse.Namespace) -> str:
    from bench.results.history import shown

    return shown(database_url(args))


def main(args: argparse.Namespace) -> int:
    words = args.words
    if words[0] == "ack":
        if len(words) != 2:
            raise UserError("bench history ack NAME: one history name")
        return analyse(args, words[1], acknowledge=True)
    if words[0] == "rebuild":
        if len(words) > 2:
            raise UserError("bench history rebuild [NAME]: one history name at most")
        return rebuild(args, words[1] if len(words) == 2 else None)
    if len(words) > 1:
        raise UserError(f"bench history NAME: one name, got {' '.join(words)}")
    return analyse(args, words[0])


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
    from bench.run.suite_driver import make_console

    console = make_console()
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
            return _acknowledge(db, name, cp.alarms(points), args, console)
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
    trend_report.print_summary(name, series, points, alarms, console)
    for n in notes:
        console.print(n, highlight=False)
    if args.plot:
        index = trend_report.write_pages(
            name, series, points, alarms, args.reports / "nightly", notes
        )
        console.print(f"trend pages: {index}")
    return 1 if alarms else 0


def _acknowledge(db, name: str, alarms, args: argparse.Namespace, console) -> int:
    """Accept the open alarms (those --case/--metric select): their series stop alarming
    for every change up to now; a later regression alarms again."""
    import pandas as pd

    when = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    for a in alarms:
        s = a.series
        db.ack(name, (s.case_id, s.metric, s.env_key), when, args.note or "")
        console.print(f"accepted: {s.case_id} {s.metric} ({a.change.describe()})", highlight=False)
    console.print(f"history {name}: {len(alarms)} alarm(s) accepted", highlight=False)
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
