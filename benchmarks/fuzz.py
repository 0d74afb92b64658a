"""Fuzz every kind of input bench reads: at least 1,000 Hypothesis cases a kind, each a real
file broken and the command that reads it run in process (``tests/fuzzing.py`` says how
each case is judged). Prints a table of outcomes per kind and writes the counts, with
every failure's input and error, to ``benchmarks/data/fuzz.json``.

    python benchmarks/fuzz.py                 # 1,000 a kind (about 7 minutes on 2 cores)
    python benchmarks/fuzz.py --cases 50 --kind manifest
    python benchmarks/fuzz.py --seed 7       # other cases than the recorded ones
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fuzzing import FAILURES, KINDS, Tally, make_seed, run_one

OUT = Path(__file__).parent / "data" / "fuzz.json"


def fuzz_kind(
    name: str, cases: int, seed, root: Path, draw_seed: int | None
) -> tuple[Tally, float]:
    tally = Tally()
    counter = iter(range(10**9))

    @settings(max_examples=cases, deadline=None, database=None, derandomize=draw_seed is None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @hypothesis.seed(draw_seed)
    @given(st.data())
    def one(data):
        tmp = root / f"{name}-{next(counter)}"
        tmp.mkdir()
        run_one(KINDS[name], data, seed, tmp, tally)

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CLI prints its own; others are noise here
        one()
    return tally, time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000, help="Hypothesis cases a kind")
    p.add_argument("--kind", action="append", choices=sorted(KINDS), help="only these kinds")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--seed", type=int, help="draw other cases (default: the same cases each run)")
    args = p.parse_args()
    kinds = args.kind or list(KINDS)
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as d:
        seed = make_seed(Path(d) / "seed")
        for name in kinds:
            tally, seconds = fuzz_kind(name, args.cases, seed, Path(d), args.seed)
            report[name] = {"cases": sum(tally.counts.values()), **dict(tally.counts),
                            "seconds": round(seconds, 1), "failures": tally.failures}  # fmt: skip
            bad = sum(tally.counts[f] for f in FAILURES)
            print(f"{name:24} {sum(tally.counts.values()):6} cases  "
                  + "  ".join(f"{k} {v}" for k, v in sorted(tally.counts.items()))
                  + f"  ({seconds:.0f} s){'  FAILURES ' + str(bad) if bad else ''}",
                  flush=True)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": "python benchmarks/fuzz.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    args.out.write_text(json.dumps({**meta, "kinds": report}, indent=1))
    return 1 if any(r["failures"] for r in report.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
