"""The ``bench`` command (also ``llm-opt-bench``): one module per command, each with an
``add_parser(sub)`` that sets ``run(args)``; the options they share are in ``options``.

Results go to stdout, progress and warnings to stderr. User errors print one line (file,
key, what is allowed) and exit 2; a traceback means a bug in bench, never in the user's
input. ``build_parser()`` is public: the docs site generates the CLI reference from it.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import warnings
from pathlib import Path

from bench.cli.options import EXIT_CODES, HelpFormatter
from bench.errors import UserError

# In the order `bench --help` lists them; each is bench/cli/<module>.py.
COMMANDS = (
    "validate", "list_cases", "run", "show", "report", "merge", "compare", "ab", "calibrate",
    "history", "profile", "tune", "names", "schema",
)  # fmt: skip

FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
# Errors of a path itself (not of the disk or the machine): the user's to fix.
PATH_ERRORS = {errno.ENOENT, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EACCES,
               errno.ELOOP, errno.EPERM}  # fmt: skip


def _prog() -> str:
    # `python -m bench` is the way in where another `bench` command (Frappe's) shadows ours.
    name = Path(sys.argv[0]).name
    if name == "__main__.py":
        return "python -m bench"
    return "llm-opt-bench" if name == "llm-opt-bench" else "bench"


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__

    p = argparse.ArgumentParser(
        prog=_prog(),
        description="Benchmark LLM optimization techniques. Results go to stdout; progress, "
        "warnings and errors to stderr.",
        epilog=EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (`COMMAND --help`)"
    )
    for name in COMMANDS:
        importlib.import_module(f"bench.cli.{name}").add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any("\0" in a for a in argv):  # no path can hold one (a shell cannot pass it either)
        print("bench: error: an argument holds a NUL byte", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    args.argv = ["bench", *argv]  # kept in the run's manifest
    with warnings.catch_warnings():  # restored on return: a caller's settings are its own
        warnings.showwarning = _one_line_warning
        warnings.filterwarnings("always", category=UserWarning, module=r"bench(\.|$)")
        try:
            return args.run(args)
        except UserError as e:
            print(f"bench: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            if e.errno in FULL_DISK:  # outside a run's own handler (which says the same)
                print(f"bench: error: {where}cannot write: {e.strerror}", file=sys.stderr)
                return 74
            if e.errno not in PATH_ERRORS or not e.filename:
                raise
            # A path the user gave that cannot be used: said like any other user error.
            print(f"bench: error: {where}{e.strerror}", file=sys.stderr)
            return 2


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """bench's own warnings (a skipped file, a doubtful figure) in one line like an error:
    the user's to act on, not the code's; a library's keep their origin."""
    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parents[1]):
        print(f"bench: warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr,
              end="")  # fmt: skip
