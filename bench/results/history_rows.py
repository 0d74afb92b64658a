"""Which rows of a history can be believed: the database is a file (or a server) anyone can
write to, so a row is checked before its figures reach a change-point search."""

from __future__ import annotations

import json
import math
from typing import Any


def environment_key(facts: dict[str, Any]) -> str:
    """The key of a series' environment (``analysis.sides.environment_facts``): runs whose
    facts differ are another series, and their drift another machine's."""
    import hashlib

    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]


def believed_rows(df) -> tuple[list[bool], dict[str, tuple[int, str]]]:
    """Which rows of the history's frame can be believed, and per run, how many cannot and
    why the first cannot (a database anyone can write to: a text where a number belongs,
    JSON that does not parse, an interval that does not hold its value, a series key that
    its facts do not give)."""
    good: list[bool] = []
    bad: dict[str, tuple[int, str]] = {}
    for row in df.itertuples(index=False):
        why = row_problem(row)
        good.append(why is None)
        if why is not None:
            count, first = bad.get(str(row.run_id), (0, why))
            bad[str(row.run_id)] = (count + 1, first)
    return good, bad


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def row_problem(row) -> str | None:
    import pandas as pd

    for key in ("run_id", "case_id", "metric", "unit", "method", "env_key", "started"):
        if not isinstance(getattr(row, key), str):
            return f"{key} {getattr(row, key)!r} is not text"
    try:  # the parser frame() uses: Python's fromisoformat takes forms pandas refuses
        pd.to_datetime(row.started, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return f"started {row.started!r} is not a date"
    if not _finite(row.value):
        return f"value {row.value!r} is not a finite number"
    if not isinstance(row.n, int) or isinstance(row.n, bool) or row.n < 1:
        return f"n {row.n!r} is not a count of runs"
    for key in ("low", "high"):
        bound = getattr(row, key)  # None, or NaN where pandas filled a column of floats
        missing = bound is None or (isinstance(bound, float) and math.isnan(bound))
        if not missing and not _finite(bound):
            return f"{key} {bound!r} is not a finite number"
    low, high = row.low, row.high
    slack = 1e-9 * abs(row.value)  # a geometric mean and its bounds round apart when runs agree
    if _finite(low) and _finite(high) and not low - slack <= row.value <= high + slack:
        return f"the interval [{low}, {high}] does not hold the value {row.value}"
    try:
        values, env, gates = (json.loads(getattr(row, k)) for k in ("run_values", "env", "gates"))
    except (TypeError, ValueError) as e:
        return f"JSON that does not parse ({e})"
    if not isinstance(values, list) or not values or not all(map(_finite, values)):
        return "run_values is not a list of finite numbers"
    if not isinstance(env, dict) or environment_key(env) != row.env_key:
        return "env_key is not the key of the run's recorded facts"
    if not isinstance(gates, dict) or not all(isinstance(t, dict) for t in gates.values()):
        return "gates is not a table of tolerances"
    return None
