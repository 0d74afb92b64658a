"""Python flame graphs: py-spy samples the Python stacks of a process while it runs some
work, for the overhead an operator view cannot show (an eager decode loop's Python,
dispatch between small operators).

py-spy is started as a child of the process it samples (``--pid`` of the parent), with
``--nonblocking`` so that it reads the stacks without pausing the process. Where Linux's
Yama module limits tracing to descendants, the process first names any process as its
allowed tracer (``PR_SET_PTRACER``); elsewhere that call is a harmless no-op.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

RATE_HZ = 200
START_TIMEOUT_S = 30.0
_PR_SET_PTRACER, _PR_SET_PTRACER_ANY = 0x59616D61, -1


class Unavailable(RuntimeError):
    """py-spy cannot sample here; the message says why."""


def executable() -> str | None:
    """py-spy beside this interpreter (a virtualenv's bin/), else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _allow_tracer() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PTRACER, _PR_SET_PTRACER_ANY, 0, 0, 0)


def flame_graph(path: Path, work: Callable[[], Any], rate: int = RATE_HZ) -> dict[str, Any]:
    """Run ``work()`` while py-spy samples this process; write its flame graph (SVG) to
    ``path``. Returns the samples taken and py-spy's read errors. Raises ``Unavailable``."""
    from select import select

    exe = executable()
    if exe is None:
        raise Unavailable("py-spy is not installed (pip install py-spy, or the 'profile' extra)")
    _allow_tracer()
    tmp = path.with_name(path.name + ".part")
    proc = subprocess.Popen(
        [exe, "record", "--pid", str(os.getpid()), "--output", str(tmp), "--format",
         "flamegraph", "--rate", str(rate), "--nonblocking"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    ready, _, _ = select([proc.stdout], [], [], START_TIMEOUT_S)
    first = proc.stdout.readline() if ready else ""
    if "Sampling process" not in first:
        proc.kill()
        rest = proc.communicate()[0]
        why = " ".join((first + rest).split())[:300] or f"no answer in {START_TIMEOUT_S:g} s"
        raise Unavailable(f"py-spy could not sample this process: {why}")
    try:
        work()
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            out = proc.communicate(timeout=120)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise Unavailable("py-spy did not finish writing within 120 s") from None
    found = re.search(r"Samples: (\d+) Errors: (\d+)", out)
    if proc.returncode != 0 or found is None or not tmp.exists():
        raise Unavailable(f"py-spy wrote no flame graph: {' '.join(out.split())[:300]}")
    os.replace(tmp, path)
    method = f"py-spy record --nonblocking, {rate} Hz"
    return {"samples": int(found[1]), "errors": int(found[2]), "rate_hz": rate,
            "flame_graph": path.name, "method": method}  # fmt: skip
