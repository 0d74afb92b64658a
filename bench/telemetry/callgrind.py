"""Instruction counts from valgrind's callgrind: a clock that counts instead of timing.

A process started under ``valgrind --tool=callgrind --collect-atstart=no`` runs every
instruction on valgrind's simulated CPU; ``CallgrindClock`` turns collection on only
between its marks (torch exposes callgrind's toggle and dump requests, the ones that
``torch.utils.benchmark.Timer.collect_callgrind`` uses), so a workload's timed calls, and
nothing around them, are counted. Each mark dumps the counts since the previous one into a
file of its own; ``seconds(a, b)`` reads them back. The counts do not drift with the load on
the machine: they change when the work does.

Starting torch fully instrumented takes minutes; started with ``--instr-atstart=no``
valgrind only translates (about 6x faster) and the counting process switches
instrumentation on after its imports, through a two-line C helper built once with the
system's compiler against the ``callgrind.h`` that torch ships. Without a compiler the
process is instrumented from the start (same counts, a slower start).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The events a dump carries with cache simulation on (``--cache-sim=yes``), and the
# estimate of cycles named in each figure's method: iai-callgrind's weights of an L1 hit,
# a last-level hit and a trip to RAM. Valgrind's simulated caches are not this CPU's.
CYCLES_FORMULA = "L1_hits + 5*LL_hits + 35*RAM_hits (callgrind cache simulation)"
COUNTERS = {
    "instructions": "callgrind_Ir",
    "estimated_cycles": f"callgrind_estimated_cycles: {CYCLES_FORMULA}",
}

# MKL's AVX2 kernels run ~60x slower under valgrind than its SSE2 path, which conditional
# bitwise reproducibility selects: counted code runs there (the methods say so), and its
# sums come out the same on every run.
COUNT_ENV = {"MKL_CBWR": "COMPATIBLE"}

_HELPER = r"""
#include "callgrind.h"
void bench_start_instrumentation(void) { CALLGRIND_START_INSTRUMENTATION; }
int bench_running_on_valgrind(void) { return RUNNING_ON_VALGRIND; }
"""


def valgrind_missing() -> str | None:
    """Why instructions cannot be counted here, or None when they can."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (e.g. apt-get install valgrind)"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "torch is not importable"
    if not torch._C._valgrind_supported_platform():
        return "this torch build has no callgrind client requests"
    return None


def valgrind_argv(out_dir: Path, counters: list[str], helper: Path | None) -> list[str]:
    """valgrind's command line for a process whose counted calls are dumped to
    ``out_dir/callgrind.<pid>.<n>``: collection off, and instrumentation off until the
    helper turns it on (on from the start without one), cache simulation only when
    estimated cycles are asked for."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        f"--instr-atstart={'no' if helper else 'yes'}",
        f"--cache-sim={'yes' if 'estimated_cycles' in counters else 'no'}",
        f"--callgrind-out-file={out_dir}/callgrind.%p",
        f"--log-file={out_dir}/valgrind.log",
    ]


def helper_source_dir() -> Path:
    """torch's copy of valgrind's client-request headers."""
    import torch.utils.benchmark.utils.valgrind_wrapper as w

    return Path(w.__file__).parent


def build_helper(cache: Path | None = None) -> Path | None:
    """The shared library with CALLGRIND_START_INSTRUMENTATION, compiled once per header
    version into ``cache``; None without a C compiler (the caller instruments from the
    start instead)."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    headers = helper_source_dir()
    key = hashlib.sha256(_HELPER.encode() + (headers / "callgrind.h").read_bytes()).hexdigest()
    cache = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bench"
    lib = cache / f"callgrind_requests-{key[:16]}.so"
    if lib.exists():
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "requests.c"
        src.write_text(_HELPER)
        out = Path(tmp) / lib.name
        done = subprocess.run(
            [cc, "-O1", "-shared", "-fPIC", f"-I{headers}", str(src), "-o", str(out)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return None
        os.replace(out, lib)  # atomic: a concurrent build finds a whole file or none
    return lib


_instrumented = False
# callgrind numbers a process's dumps from 1, whichever clock asked for them: the count of
# dumps this process made so far, shared by every clock in it (a fork inherits it).
_dumps = 0


def start_instrumentation(lib: Path | None) -> None:
    """Switch callgrind's instrumentation on, once per process (each switch throws away
    valgrind's translations); a no-op without the helper, which means it was on from the
    start."""
    global _instrumented
    if lib is None or _instrumented:
        return
    import ctypes

    ctypes.CDLL(str(lib)).bench_start_instrumentation()
    _instrumented = True


@dataclass(frozen=True)
class Dump:
    """The totals of one callgrind dump: event name -> count."""

    events: dict[str, int]

    @property
    def instructions(self) -> int:
        return self.events["Ir"]

    @property
    def estimated_cycles(self) -> int:
        """``CYCLES_FORMULA`` from the cache simulation's events."""
        e = self.events
        ram = e["ILmr"] + e["DLmr"] + e["DLmw"]
        l1_miss = e["I1mr"] + e["D1mr"] + e["D1mw"]
        accesses = e["Ir"] + e["Dr"] + e["Dw"]
        return (accesses - l1_miss) + 5 * (l1_miss - ram) + 35 * ram

    def value(self, counter: str) -> int:
        return getattr(self, counter)


def read_dump(path: Path) -> Dump:
    """The ``events:`` names and the ``totals:`` (or ``summary:``) line of a callgrind file."""
    names: list[str] = []
    totals: list[int] | None = None
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                names = line.split()[1:]
            elif line.startswith(("totals:", "summary:")):
                totals = [int(x) for x in line.split()[1:]]
    if not names or totals is None:
        raise ValueError(f"{path}: no events/totals lines (not a complete callgrind dump)")
    totals += [0] * (len(names) - len(totals))  # trailing zero events may be left out
    return Dump(dict(zip(names, totals, strict=True)))


class CallgrindClock:
    """A clock whose "seconds" between two marks are the counted events between them.

    Marks are taken back to back around calls (``bench.telemetry.timer``): each mark stops
    collection, dumps what was counted since the previous mark, and starts collecting again;
    ``finish`` stops collecting, so whatever runs between timed loops is not counted. The
    mark's own few Python instructions are counted in every call alike."""

    def __init__(
        self, out_prefix: str, counter: str = "instructions", helper: Path | None = None
    ) -> None:
        import torch

        self._toggle = torch._C._valgrind_toggle
        self._toggle_and_dump = torch._C._valgrind_toggle_and_dump_stats
        self.prefix = out_prefix  # callgrind's --callgrind-out-file with %p expanded
        self.counter = counter
        self.helper = helper  # switches instrumentation on at the first mark
        self.method = COUNTERS[counter]
        self._on = False
        self._read: dict[int, Dump] = {}

    def mark(self) -> int:
        global _dumps
        # Instrumented from the first counted call on: building and optimizing the model
        # runs uninstrumented, several times faster.
        start_instrumentation(self.helper)
        if self._on:
            self._toggle_and_dump()  # collection off, and the counts since the last mark out
            _dumps += 1
        self._toggle()
        self._on = True
        return _dumps

    def finish(self) -> None:
        if self._on:
            self._toggle()
            self._on = False

    def dump(self, k: int) -> Dump:
        if k not in self._read:
            self._read[k] = read_dump(Path(f"{self.prefix}.{k}"))
        return self._read[k]

    def seconds(self, a: int, b: int) -> float:
        """The counter summed over the dumps after mark ``a`` up to mark ``b``."""
        return float(sum(self.dump(k).value(self.counter) for k in range(a + 1, b + 1)))

    def discard(self) -> None:
        """Remove the dump files read so far (a run keeps the counts, not the dumps)."""
        for k in self._read:
            Path(f"{self.prefix}.{k}").unlink(missing_ok=True)
