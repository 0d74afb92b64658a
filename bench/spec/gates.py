"""The ``[gates]`` table of a suite: the tolerance each metric is judged with when two runs
are compared (``bench compare``, ``bench ab``, the pytest gates).

    [gates]
    latency_median = 0.10                 # relative: a ratio beyond 1.10 (or 1/1.10)
    heldout_bits_per_byte = { absolute = 0.02 }
    params_total = "exact"                # any difference
    memory_prefill_peak_rss = "off"       # not judged

Metrics not named keep their default (``bench.results.metric_info.DEFAULT_GATES``); a
metric that has no direction (better is neither more nor less) cannot be gated.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.results.metric_info import DEFAULT_GATES, HIGHER_IS_BETTER, Tolerance

OFF = "off"


def parse_gates(table: Any, where: str) -> dict[str, Tolerance | None]:
    """A ``[gates]`` table as metric -> tolerance (None: not judged); a UserError naming
    the key for an unknown metric or a tolerance that is not a positive number."""
    if not isinstance(table, dict):
        raise UserError("expected a table of metric = tolerance", where=where, key="gates")
    out: dict[str, Tolerance | None] = {}
    for metric, value in table.items():
        key = f"gates.{metric}"
        if metric not in HIGHER_IS_BETTER:
            close = difflib.get_close_matches(metric, sorted(HIGHER_IS_BETTER), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(
                f"unknown metric{hint}; gates take a metric with a direction: "
                + ", ".join(sorted(HIGHER_IS_BETTER)),
                where=where,
                key=key,
            )
        out[metric] = _tolerance(value, where, key)
    return out


def _tolerance(value: Any, where: str, key: str) -> Tolerance | None:
    if value == OFF:
        return None
    if value == "exact":
        return Tolerance("exact")
    kind, number = "relative", value
    if isinstance(value, dict) and len(value) == 1:
        ((kind, number),) = value.items()
    if kind not in ("relative", "absolute") or isinstance(number, bool):
        number = None
    if not isinstance(number, int | float) or not _positive_finite(number):
        raise UserError(
            f"tolerance {value!r}: expected a positive fraction (0.05 = 5%), "
            '{ absolute = X } with X > 0, "exact" or "off"',
            where=where,
            key=key,
        )
    return Tolerance(kind, float(number))


def _positive_finite(number: float) -> bool:
    try:
        return math.isfinite(number) and number > 0
    except OverflowError:  # an integer no float holds
        return False


def gates(overrides: dict[str, Tolerance | None] | None = None) -> dict[str, Tolerance]:
    """The metrics to judge and their tolerances: the defaults, then a suite's overrides."""
    merged: dict[str, Tolerance | None] = {**DEFAULT_GATES, **(overrides or {})}
    return {m: t for m, t in merged.items() if t is not None}


def gates_of_suite_text(text: str, where: str) -> dict[str, Tolerance]:
    """The gates of a suite file's text (as a run's manifest keeps it), without expanding
    the rest of the suite."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"invalid TOML: {e}", where=where) from None
    return gates(parse_gates(data.get("gates", {}), where))


def gates_of_file(path: Path) -> dict[str, Tolerance]:
    """The gates of ``--gates FILE``: a suite file, or a TOML file holding only [gates]."""
    where = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise UserError(f"cannot read the gates file ({e.strerror})", where=where) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"invalid TOML: {e}", where=where) from None
    if "gates" not in data:
        raise UserError("no [gates] table in this file", where=where)
    return gates(parse_gates(data["gates"], where))
