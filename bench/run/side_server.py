"""One side of a ``bench ab`` job: a long-lived process running *that side's* code, which
opens one run folder of the suite, prepares it once (models, bandwidth probe, fork server)
and then runs one case process per request, so that the A/B job can alternate the two
sides' case processes A B B A with the fixed start-up paid once per side.

    python -m bench.run.side_server SUITE --results DIR [--filter GLOB] [--set KEY=VALUE ...]

The protocol is JSON lines: the server writes ``{"ready": run_id, "run_dir": ..., "cases":
[...]}`` once prepared, then reads ``{"case": ID, "repeat": R}`` and answers
``{"status": ..., "path": ...}`` when that process's result is stored; ``{"close": true}``
(or the end of its input) finishes the run folder. The protocol has the process's real
stdout to itself: anything a library prints goes to stderr (the side's log).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from bench.errors import UserError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run.side_server")
    ap.add_argument("suite", type=Path)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--filter", default=None)
    # the suite's overrides, so that this side runs the effective suite the job validated
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args(argv)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints (library warnings) must not corrupt the protocol

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")

    from bench.results import store
    from bench.run.suite_driver import RunOptions, RunSession, make_console, select_cases
    from bench.spec.suite import load_suite

    console = make_console()
    try:
        suite = load_suite(args.suite, args.overrides)
        cases = select_cases(suite.cases, args.filter, None)
    except UserError as e:
        send({"error": str(e)})
        return 2
    by_id = {c.id: c for c in cases}
    opts = RunOptions(results=args.results, argv=["bench-ab-side", *sys.argv[1:]])
    session = RunSession(suite, cases, opts, planned=None)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        session.prepare(console)
        # Counted once a side, before any pair: instruction counts do not drift, so the job
        # judges them by the sides' counts, not by pairs (bench.analysis.compare).
        session.count(console, set())
        # The fork server ready now: the job's first block would otherwise carry its start
        # (seconds), and the job plans its blocks from the first one's time.
        session.launcher.wait_ready()
        send({"ready": session.run_id, "run_dir": str(session.run_dir), "cases": list(by_id)})
        for line in sys.stdin:
            request = json.loads(line)
            if request.get("close"):
                break
            case = by_id[request["case"]]
            repeat = int(request["repeat"])
            result = session.run(case, repeat)
            path = store.case_path(session.run_dir, case.id, repeat)
            send({"status": result["status"], "error": result.get("error"), "path": str(path)})
    except (KeyboardInterrupt, _Terminated):
        session.stop("interrupted (the A/B job stopped)", 130)
        return 130
    finally:
        session.close()
    session.finish()
    return 0


class _Terminated(BaseException):
    pass


def _terminated(signum, frame) -> None:
    raise _Terminated


if __name__ == "__main__":
    sys.exit(main())
