""" "Among the cases that meet my constraints, which is best on my objective?"

Syntax: constraints, then the objective, separated by ";":
    "kl_to_baseline <= 0.05, heldout_bits_per_byte < 3.1; max throughput_tokens"
Constraints compare a metric (geometric mean over repeats) with a number (<, <=, >, >=, ==);
the objective is "max METRIC" or "min METRIC". Answered per model and workload.
"""

from __future__ import annotations

import difflib
import operator
import re
from dataclasses import dataclass

import pandas as pd

from bench.analysis import stats
from bench.analysis.tables import ok_rows, run_values, scoped
from bench.errors import UserError

OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|<|>)\s*([-+0-9.eE]+)\s*$")
_OBJECTIVE = re.compile(r"^\s*(max|min)\s+([A-Za-z_][\w.]*)\s*$")


@dataclass(frozen=True)
class Question:
    constraints: tuple[tuple[str, str, float], ...]
    direction: str  # "max" or "min"
    objective: str


def parse(expr: str, known: set[str]) -> Question:
    parts = expr.split(";")
    if len(parts) != 2:
        raise UserError(
            f"--best {expr!r}: expected 'CONSTRAINTS; max|min METRIC', e.g. "
            "'kl_to_baseline <= 0.05; max throughput_tokens'"
        )
    constraints = []
    for text in filter(str.strip, parts[0].split(",")):
        m = _CONSTRAINT.match(text)
        if not m:
            raise UserError(
                f"--best: cannot read constraint {text.strip()!r}; use METRIC <= NUMBER"
            )
        try:
            value = float(m.group(3))
        except ValueError:
            raise UserError(f"--best: {m.group(3)!r} in {text.strip()!r} is not a number") from None
        constraints.append((_known(m.group(1), known), m.group(2), value))
    m = _OBJECTIVE.match(parts[1])
    if not m:
        raise UserError(
            f"--best: cannot read objective {parts[1].strip()!r}; use 'max METRIC' or 'min METRIC'"
        )
    return Question(tuple(constraints), m.group(1), _known(m.group(2), known))


def _known(metric: str, known: set[str]) -> str:
    if metric not in known:
        close = difflib.get_close_matches(metric, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"--best: unknown metric {metric!r}{hint}; the results have: {', '.join(sorted(known))}"
        )
    return metric


def answer(df: pd.DataFrame, expr: str, pool: bool = False) -> pd.DataFrame:
    """Per run, model and workload: the best case meeting the constraints (none if no case
    does), by its median over process repeats, and whether its lead over the next eligible
    case clears that case's interval (``clear``) or is within noise. Runs are kept apart
    unless ``pool`` asks to pool them; ``run`` says which runs a row holds."""
    df = scoped(df, pool)
    rows = ok_rows(df)
    q = parse(expr, set(rows.metric))
    index = ["run_id", "model", "workload", "case_id", "techniques"]
    wide = rows.pivot_table(index=index, columns="metric", values="value", aggfunc=stats.center)
    wide = wide.reset_index()
    keep = pd.Series(True, index=wide.index)
    for metric, op, value in q.constraints:
        keep &= wide[metric].notna() & OPS[op](wide[metric], value)
    eligible = wide[keep & wide[q.objective].notna()]
    values = run_values(df)
    out = []
    for (run, model, workload), g in wide.groupby(["run_id", "model", "workload"], sort=False):
        e = eligible[
            (eligible.run_id == run) & (eligible.model == model) & (eligible.workload == workload)
        ]
        row = {"run": run, "model": model, "workload": workload, "best": None}
        row.update({q.objective: None, "clear": None})
        if not e.empty:
            runs = {t: values[(run, c, q.objective)] for t, c in zip(e.techniques, e.case_id,
                                                                    strict=True)}  # fmt: skip
            w = stats.winner(runs, q.direction == "max")
            best = e[e.techniques == w.leader].iloc[0]
            row.update(best=w.leader, **{q.objective: best[q.objective]})
            row["clear"] = "only eligible case" if w.runner_up is None else w.describe()
        out.append({**row, "eligible": len(e), "cases": len(g)})
    return pd.DataFrame(out)
