"""Options shared by several commands, the exit-code table every ``--help`` ends with, and
the two output streams: results (tables, verdicts, JSON, paths written) on stdout,
progress, warnings and errors on stderr."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

URL_VARIABLE = "BENCH_HISTORY_URL"

EXIT_CODES = """exit status:
  0    ok
  1    a verdict failed (a REGRESSION; with --strict an INCONCLUSIVE too), a case or a
       profiled pass failed, an open alarm (history show), no front (tune)
  2    user error: a bad suite, file, key or argument (one line on stderr, no traceback)
  74   cannot write: the disk is full or read-only
  130  interrupted by Ctrl-C (143: by SIGTERM); finished cases are kept (run --resume)"""


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal; the exit-code table kept as laid out."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("exit status:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def command(sub, name: str, run, *, help: str, description: str | None = None, **kw):
    """A subcommand's parser: its help, the exit codes as its epilog, and ``run(args)``
    as what it does (None: a group whose subcommands each set their own)."""
    p = sub.add_parser(
        name,
        help=help,
        description=description or help[:1].upper() + help[1:] + ".",
        epilog=EXIT_CODES,
        formatter_class=HelpFormatter,
        **kw,
    )
    if run is not None:
        p.set_defaults(run=run)
    return p


def add_suite(p: argparse.ArgumentParser, nargs: str | None = None) -> None:
    """The suite argument and ``--set KEY=VALUE``: every command that reads a suite."""
    p.add_argument("suite", type=Path, nargs=nargs, help="the suite file (TOML)")
    p.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="override a suite key: dotted TOML key, TOML value, e.g. --set run.repeats=5 "
        "(repeatable)",
    )


def load(args: argparse.Namespace, path: Path | None = None):
    """The suite at ``path`` (default: the SUITE argument) with ``--set`` applied."""
    from bench.spec.suite import load_suite

    return load_suite(args.suite if path is None else path, overrides=args.set or ())


def add_results(p: argparse.ArgumentParser, history: bool = False) -> None:
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="results root: where runs are written and found (default results/)"
        + ("; the history database defaults to DIR/history.sqlite" if history else ""),
    )
    if history:
        p.add_argument(
            "--history-url",
            metavar="URL",
            default=os.environ.get(URL_VARIABLE),
            help="a shared history database instead, e.g. postgresql://user@host/bench "
            f"(default: ${URL_VARIABLE})",
        )


def add_reports(
    p: argparse.ArgumentParser, default: Path | None = Path("reports"), what=""
) -> None:
    shown = f" (default {default}/)" if default is not None else ""
    p.add_argument(
        "--reports",
        type=Path,
        default=default,
        metavar="DIR",
        help=(what or "where pages are written") + shown,
    )


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout instead of the table (progress stays on stderr)",
    )


def add_allow_mixed(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--allow-mixed", action="store_true", help=what)


def add_executor(p: argparse.ArgumentParser, what: str, jobs: int) -> None:
    p.add_argument("--executor", choices=["local", "slurm"], help=what)
    p.add_argument(
        "--jobs",
        type=int,
        default=jobs,
        metavar="N",
        help=f"with --executor: jobs (default {jobs})",
    )
    p.add_argument(
        "--slurm",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a submitit parameter for the jobs, e.g. slurm_partition=gpu (repeatable)",
    )


# --- the history database (--results / --history-url) -------------------------------


def database_url(args: argparse.Namespace) -> str:
    from bench.results.history import default_url

    return args.history_url or default_url(args.results)


def open_db(args: argparse.Namespace):
    from bench.results.history import History

    return History(database_url(args))


def where(args: argparse.Namespace) -> str:
    from bench.results.history import shown

    return shown(database_url(args))


# --- the two streams ---------------------------------------------------------------


def progress():
    """The console for progress and notes: stderr."""
    from bench.run.suite_driver import make_console

    return make_console()


def results():
    """The console for results (tables, verdicts): stdout; not folded at rich's 80-column
    default when stdout is a file or a pipe."""
    from rich.console import Console

    probe = Console()
    return probe if probe.is_terminal else Console(width=160)


def print_json(obj: Any) -> None:
    """One strict JSON document on stdout: NaN and infinities as null."""
    import json

    from bench.results.store import _finite

    print(json.dumps(_finite(obj), indent=2, allow_nan=False, default=str))
    sys.stdout.flush()
