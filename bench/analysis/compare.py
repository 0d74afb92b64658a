"""``bench compare BASE CAND``: a verdict per case and metric on whether a candidate run
changed what the base measured (``bench.analysis.verdicts``); ``compare_output`` shows
it (console table, Markdown, HTML).

Each side (``bench.analysis.sides``) is one or more invocations. Sides must come from
comparable machines and software, and from the same suite; a run is never compared with
itself. The base sets the bar: its ``[gates]`` (or a pinned ``--gates`` file) decide which
metrics are judged and with what tolerance, never the candidate's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.analysis import verdicts
from bench.analysis.levels import Spread
from bench.analysis.sides import Side, disturbance_note
from bench.errors import UserError
from bench.results.metric_info import DETERMINISTIC, HIGHER_IS_BETTER, RESOLUTION, Tolerance
from bench.spec.gates import gates as default_gates

# (case id, metric, log scale) -> what is known of that case's drift between runs
Known = Callable[[str, str, bool], Sequence[Spread]]


@dataclass
class Comparison:
    base: Side
    cand: Side
    rows: list[tuple[str, verdicts.Change]]  # (case id, change), in the base's case order
    only_base: list[str]
    only_cand: list[str]
    differences: list[str]  # environment differences overridden by --allow-mixed
    rule: str = verdicts.SIGNIFICANT
    alpha: float = verdicts.ALPHA
    notes: list[str] = field(default_factory=list)  # gates, pairing: what the reader must know
    evidence: str = "run"  # what one unit of evidence is: "run" (compare) or "pair" (ab)

    def verdicts(self) -> dict[str, int]:
        out = {str(v): 0 for v in verdicts.Verdict}
        for _, ch in self.rows:
            out[str(ch.verdict)] += 1
        return out

    def exit_code(self, strict: bool = False) -> int:
        counts = self.verdicts()
        failed = counts["REGRESSION"] or (strict and counts["INCONCLUSIVE"])
        return 1 if failed else 0

    @property
    def tests(self) -> int:
        return sum(1 for _, ch in self.rows if ch.tested)

    def rule_text(self) -> str:
        """The rule in words, with the level the intervals were taken at."""
        level = next((ch.level for _, ch in self.rows if ch.tested), math.nan)
        if math.isnan(level):
            shown = "no interval in this comparison"
        else:
            shown = (
                f"intervals at {verdicts.confidence_text(level)} (Bonferroni over {self.tests} test"
                f"{'s' if self.tests != 1 else ''} at a family-wise {self.alpha:.2g})"
            )
        unit = (
            "ABBA blocks of adjacent A/B pairs"
            if self.evidence == "pair"
            else "runs (the invocation is the unit)"
        )
        return (
            f"{verdicts.RULES[self.rule]}; OK: the whole interval lies inside the tolerance; "
            f"INCONCLUSIVE: anything else. Evidence: {unit}; {shown}."
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "base": {"paths": self.base.paths, "runs": self.base.runs},
            "candidate": {"paths": self.cand.paths, "runs": self.cand.runs},
            "rule": self.rule,
            "rule_text": self.rule_text(),
            "alpha": self.alpha,
            "evidence": self.evidence,
            "verdicts": self.verdicts(),
            "rows": [
                {"case_id": case_id, **ch.to_json(), "unit": self.base.units.get(ch.metric)}
                for case_id, ch in self.rows
            ],
            "only_in_base": self.only_base,
            "only_in_candidate": self.only_cand,
            "environment_differences": self.differences,
            "notes": self.notes,
        }


def environment_differences(base: Side, cand: Side) -> list[str]:
    """What makes the two sides' numbers incomparable, in words; empty when nothing does."""
    out = []
    for name in sorted(set(base.facts) & set(cand.facts)):
        b, c = base.facts[name], cand.facts[name]
        if b != c or len(b) > 1:
            # The file behind a value one side alone has: a stray edit, or another machine.
            odd = [cand.fact_sources.get((name, v)) for v in sorted(c - b)]
            odd += [base.fact_sources.get((name, v)) for v in sorted(b - c)]
            source = next((f" (as {s} says)" for s in odd if s), "")
            out.append(f"{name}: {' / '.join(sorted(b))} vs {' / '.join(sorted(c))}{source}")
    return out


def comparable_setups(base: Side, cand: Side, force: bool) -> list[str]:
    """The sides' setup differences, which only ``force`` lets through (a UserError else)."""
    differences = environment_differences(base, cand)
    if differences and not force:
        raise UserError(
            "the sides were measured on different setups (" + "; ".join(differences) + "); "
            "their numbers are not comparable (--allow-mixed compares them anyway)"
        )
    return differences


def judged_gates(
    base: Side, cand: Side, pinned: dict[str, Tolerance] | None
) -> tuple[dict[str, Tolerance], list[str]]:
    """The gates a comparison is judged by, and notes for the reader: a pinned file's, else
    the base's (its first run's), else the defaults; a candidate whose suite changes a gate
    is judged by the base's, and the note says so."""
    if pinned is not None:
        return pinned, ["gates: the pinned --gates file"]
    judged = base.gates if base.gates is not None else default_gates()
    notes = []
    if base.gates_differ:
        notes.append(
            f"gates: the base's runs disagree on [gates] ({', '.join(base.gates_differ)} differ "
            "from the first): judged by the first base run's"
        )
    if cand.gates is not None and cand.gates != judged:
        changed = sorted(
            m for m in set(judged) | set(cand.gates) if judged.get(m) != cand.gates.get(m)
        )
        shown = ", ".join(
            f"{m} {_tol(cand.gates.get(m))} (base {_tol(judged.get(m))})" for m in changed
        )
        notes.append(f"gates: the candidate's suite changes {shown}; judged by the base's")
    return judged, notes


def _tol(t: Tolerance | None) -> str:
    return "off" if t is None else t.describe()


def compare(
    base: Side,
    cand: Side,
    force: bool = False,
    same_suite: bool = True,
    gates: dict[str, Tolerance] | None = None,
    rule: str = verdicts.SIGNIFICANT,
    known: Known | None = None,
) -> Comparison:
    """Verdicts for every case and gated metric both sides measured, the invocation as the
    unit. ``same_suite=False`` lets two suites be compared on the cases they share;
    ``gates`` pins the tolerances; ``known`` gives what is known of each case's drift between
    runs (a history, a calibration) for sides too small to show it themselves."""
    same = sorted(set(base.runs) & set(cand.runs))
    if same:
        raise UserError(f"run {same[0]} is on both sides: a run compared with itself says nothing")
    if same_suite and base.suites != cand.suites:
        raise UserError(
            f"the sides ran different suites ({', '.join(sorted(base.suites))} vs "
            f"{', '.join(sorted(cand.suites))}); compare runs of one suite"
        )
    differences = comparable_setups(base, cand, force)
    judged, notes = judged_gates(base, cand, gates)
    rows = []
    for case_id in base.cases:
        for metric, tolerance in judged.items():
            b, c = base.runs_of(case_id, metric), cand.runs_of(case_id, metric)
            if b is None or c is None or metric in base.modelled | cand.modelled:
                continue
            log = tolerance.kind != "absolute"
            ch = verdicts.between_runs(
                b, c, metric, HIGHER_IS_BETTER[metric], tolerance, metric in DETERMINISTIC,
                known(case_id, metric, log) if known is not None else (),
                RESOLUTION.get(metric, 0.0),
            )  # fmt: skip
            rows.append((case_id, ch))
    if not rows:
        raise UserError("the sides share no case and gated metric: nothing to compare")
    return finish(base, cand, rows, differences, notes, rule)


def compare_pairs(
    base: Side,
    cand: Side,
    pairs: Sequence[tuple[str, int, int, int]],
    alpha: float,
    force: bool = False,
    gates: dict[str, Tolerance] | None = None,
    rule: str = verdicts.SIGNIFICANT,
    notes: Sequence[str] = (),
) -> Comparison:
    """Verdicts of a paired A/B job (``bench ab``): ``pairs`` are (case id, base repeat,
    candidate repeat, block) of adjacent processes of the two sides' run folders; each row is
    judged on its ABBA blocks' mean log ratios at the family-wise ``alpha`` this look may
    spend."""
    differences = comparable_setups(base, cand, force)
    judged, gate_notes = judged_gates(base, cand, gates)
    rows = []
    for case_id in base.cases:
        mine = [(b, c, k) for case, b, c, k in pairs if case == case_id]
        for metric, tolerance in judged.items():
            if metric in RESOLUTION:  # counted once a side, not per process: no pairs
                b, c = base.runs_of(case_id, metric), cand.runs_of(case_id, metric)
                if b is not None and c is not None:
                    hib = HIGHER_IS_BETTER[metric]
                    ch = verdicts.between_runs(b, c, metric, hib, tolerance,
                                               resolution=RESOLUTION[metric])  # fmt: skip
                    rows.append((case_id, ch))
                continue
            vb, vc = base.by_repeat.get((case_id, metric)), cand.by_repeat.get((case_id, metric))
            if not mine or vb is None or vc is None or metric in base.modelled | cand.modelled:
                continue
            base_values = [vb.get(b, math.nan) for b, _, _ in mine]
            cand_values = [vc.get(c, math.nan) for _, c, _ in mine]
            ch = verdicts.paired(
                base_values, cand_values, metric, HIGHER_IS_BETTER[metric], tolerance,
                metric in DETERMINISTIC, [k for _, _, k in mine],
            )  # fmt: skip
            rows.append((case_id, ch))
    if not rows:
        raise UserError("the sides share no case and gated metric: nothing to compare")
    return finish(base, cand, rows, differences, [*gate_notes, *notes], rule, alpha, "pair")


def finish(
    base: Side,
    cand: Side,
    rows: list[tuple[str, verdicts.Change]],
    differences: list[str],
    notes: list[str],
    rule: str,
    alpha: float = verdicts.ALPHA,
    evidence: str = "run",
) -> Comparison:
    """Decide the rows together (one family) and wrap them with what the reader needs."""
    decided = verdicts.decide([ch for _, ch in rows], alpha=alpha, rule=rule)
    rows = [(case_id, ch) for (case_id, _), ch in zip(rows, decided, strict=True)]
    only_base = [c for c in base.cases if c not in cand.cases]
    only_cand = [c for c in cand.cases if c not in base.cases]
    busy = [disturbance_note(n, s) for n, s in (("base", base), ("candidate", cand))]
    notes = [*notes, *(b for b in busy if b)]
    regressed = verdicts.Verdict.REGRESSION
    slower = {c for c, ch in rows if ch.verdict == regressed and base.units.get(ch.metric) == "s"}
    if slower:  # where the time went, when both sides' runs were profiled
        from bench.analysis.profiles import regression_notes

        notes += regression_notes(base.run_dirs, cand.run_dirs, sorted(slower))
    return Comparison(
        base, cand, rows, only_base, only_cand, differences, rule, alpha, notes, evidence
    )


__all__ = ["Comparison", "Known", "compare", "compare_pairs"]
