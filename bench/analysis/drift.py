"""What is known of how a case drifts between invocations on a machine: the history
database's runs of the same case, metric and environment. ``bench calibrate SUITE`` puts
back-to-back A/A runs there (the history "calibration"); ``bench run --history NAME`` puts
nightly runs there. Each such series gives a ``levels.Spread``: the variance of its run
centers within its segments (split where the change-point detector finds a change, so a
real step in a nightly history is not taken for drift), with invocations - segments
degrees of freedom. ``bench compare`` pools them with what the sides show themselves.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.analysis.compare import Known
from bench.analysis.levels import Spread, spread_of_groups
from bench.results.metric_info import Tolerance

CALIBRATION = "calibration"  # the history ``bench calibrate`` appends to
MIN_NIGHTS = 3  # fewer runs in a series: not an estimate worth pooling


def known_drift(url: str, env_keys: Iterable[str]) -> Known | None:
    """A ``Known`` reading the history database at ``url``; None when there is no database
    (a default SQLite file not made yet) or it holds no run of these environments."""
    from bench.results.history import History

    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        return None
    keys = set(env_keys)
    frames = {}
    with History(url) as db:
        for name in db.names():
            frame = db.frame(name)
            frame = frame[frame["env_key"].isin(keys)]
            if not frame.empty:
                frames[name] = frame
    if not frames:
        return None
    return _Known(frames)


class _Known:
    def __init__(self, frames):
        self._series = {}
        for name, frame in frames.items():
            for (case_id, metric), g in frame.groupby(["case_id", "metric"], sort=False):
                if len(g) >= MIN_NIGHTS:
                    self._series.setdefault((case_id, metric), []).append((name, g))

    def __call__(self, case_id: str, metric: str, log: bool) -> Sequence[Spread]:
        out = []
        for name, g in self._series.get((case_id, metric), []):
            for _, runs in g.groupby("env_key", sort=False):
                commits = [c if isinstance(c, str) else None for c in runs["git_commit"]]
                spread = series_spread(list(runs["run_values"]), log, name, commits)
                if spread is not None:
                    out.append(spread)
        return out


def series_spread(
    nights: list[list[float]], log: bool, name: str, commits: list[str | None] | None = None
) -> Spread | None:
    """The spread of one series' run centers. A calibration's runs of one commit are A/A by
    construction: all of their spread is drift, the slow kind included, and counts (runs of
    different commits are kept apart: a change of the code is not drift). A nightly history
    may hold real changes of the code: it is split where the change-point analysis keeps a
    significant change (``changepoints``), and the spread is taken within the pieces."""
    from bench.analysis import changepoints as cp

    if len(nights) < MIN_NIGHTS or (log and not all(x > 0 for v in nights for x in v)):
        return None
    groups = [nights]
    if name == CALIBRATION and commits is not None:
        by_commit: dict[str | None, list] = {}
        for values, commit in zip(nights, commits, strict=True):
            by_commit.setdefault(commit, []).append(values)
        groups = list(by_commit.values())
    elif name != CALIBRATION:
        tol = Tolerance("relative" if log else "absolute", 0.05)
        series = cp.Series(
            "", "", "", "", {},
            tuple(cp.Night("", None, None, 1.0, None, None, tuple(v), tol) for v in nights),
        )  # fmt: skip
        cuts = [p.index for p in cp.significant_changes(series)]
        bounds = [0, *cuts, len(nights)]
        groups = [nights[a:b] for a, b in itertools.pairwise(bounds)]
    where = "calibration" if name == CALIBRATION else f"history '{name}'"
    return spread_of_groups(groups, log, where)


CALIBRATION_HEADER = ["case", "metric", "run sd", "process sd in a run",
                      "one run a side: decided beyond"]  # fmt: skip


def calibration_rows(side, known: Known | None) -> list[list[str]]:
    """What a calibration says per case and noisy gated metric of ``side`` (its runs): the
    spread of one run's center, the spread of its process runs around it, and how large a
    change must be before a comparison of one run a side can call it (the half-width of its
    interval: Bonferroni over these rows at the family-wise ``verdicts.ALPHA``)."""
    import math

    from scipy import stats

    from bench.analysis.levels import pool
    from bench.analysis.verdicts import ALPHA
    from bench.results.metric_info import DETERMINISTIC
    from bench.spec.gates import gates

    judged = side.gates if side.gates is not None else gates()
    found = []
    for case_id in side.cases:
        for metric, tol in judged.items():
            runs = side.runs_of(case_id, metric)
            if runs is None or metric in DETERMINISTIC or metric in side.modelled:
                continue
            log = tol.kind != "absolute"
            mine = [
                s for s in (known(case_id, metric, log) if known else []) if s.source == CALIBRATION
            ]
            m = max(len(r) for r in runs)
            found.append((case_id, metric, log, m, pool(mine, m)))
    rows = []
    for case_id, metric, log, _, pooled in found:
        if pooled is None:
            rows.append([case_id, metric, "—", "—", "no estimate"])
            continue
        t = float(stats.t.ppf(1 - ALPHA / len(found) / 2, pooled.df))
        half = t * math.sqrt(2 * pooled.var)
        within = pooled.sources[0].within

        def pct(x: float, log: bool = log) -> str:
            return f"{100 * math.expm1(x):.1f}%" if log else f"{x:.3g}"

        rows.append([
            case_id, metric, f"{pct(math.sqrt(pooled.var))} ({pooled.df:g} df)",
            pct(math.sqrt(within)) if math.isfinite(within) else "—", f"±{pct(half)}",
        ])  # fmt: skip
    return rows
