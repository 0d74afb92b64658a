"""``bench compare BASE CAND``: a verdict per case and metric on whether a candidate run
changed what the base measured (``bench.analysis.verdicts``), and the table, Markdown and
HTML that show them.

Each side (``bench.analysis.sides``) is one or more invocations. Sides must come from
comparable machines and software, and from the same suite; a run is never compared with
itself. The base sets the bar: its ``[gates]`` (or a pinned ``--gates`` file) decide which
metrics are judged and with what tolerance, never the candidate's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.analysis import verdicts
from bench.analysis.levels import Spread
from bench.analysis.sides import Side, disturbance_note
from bench.analysis.units import human
from bench.errors import UserError
from bench.results import store
from bench.results.metric_info import DETERMINISTIC, HIGHER_IS_BETTER, RESOLUTION, Tolerance
from bench.spec.gates import gates as default_gates

MANY_RUNS = 50  # more units per side than this: say the tolerance is tight for the spread
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


# --- presentation --------------------------------------------------------------------

COLOURS = {"REGRESSION": "red", "IMPROVED": "green", "OK": "default", "INCONCLUSIVE": "yellow"}


def verdict_text(ch: verdicts.Change) -> str:
    if ch.verdict != verdicts.Verdict.INCONCLUSIVE:
        return str(ch.verdict)
    if math.isnan(ch.estimate) or not ch.tested:
        return f"INCONCLUSIVE ({ch.why})"
    unit = "pair" if ch.evidence == "pair" else "run"
    per = "" if ch.evidence == "pair" else " per side"
    if not ch.more:
        more = f"no number of {unit}s would decide it at this tolerance"
    elif ch.more > verdicts.MAX_MORE:
        more = f"over {verdicts.MAX_MORE} more {unit}s{per}: the tolerance is tight for this spread"
    else:
        more = f"~{ch.more} more {unit}{'s' if ch.more != 1 else ''}{per}"
        if ch.more > MANY_RUNS:
            more += ": the tolerance is tight for this spread"
    return f"INCONCLUSIVE ({more})"


def _n(ch: verdicts.Change, n: int) -> str:
    return f"{n} {ch.evidence}{'s' if n != 1 else ''}"


def table_rows(c: Comparison, verdicts: set[str] | None = None) -> list[list[str]]:
    """One row per case and metric (``HEADER``), those with a verdict in ``verdicts``."""
    out = []
    for case_id, ch in c.rows:
        if verdicts is not None and str(ch.verdict) not in verdicts:
            continue
        unit = c.base.units.get(ch.metric)
        out.append(
            [
                case_id,
                ch.metric,
                verdict_text(ch),
                ch.describe(),
                f"{human(ch.base, unit)} ({_n(ch, ch.n_base)})",
                f"{human(ch.cand, unit)} ({_n(ch, ch.n_cand)})",
                ch.tolerance.describe(),
                "exact" if ch.exact else ch.basis,
            ]
        )
    return out


# "base" and "candidate" are each side's center (geometric mean), so candidate / base is
# the change shown; the interval is the one the verdict used (its level: the rule line).
HEADER = ["case", "metric", "verdict", "change [interval]", "base", "candidate", "tolerance",
          "error from"]  # fmt: skip
NOT_OK = {"REGRESSION", "IMPROVED", "INCONCLUSIVE"}


def print_comparison(c: Comparison, console, show_all: bool = False) -> None:
    """The verdict table; OK rows only with ``show_all`` (they are counted below it, and
    every row is in the --reports files)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{len(c.base.runs)} base run(s) → {len(c.cand.runs)} candidate run(s)")
    for col in HEADER:
        table.add_column(col, overflow="fold")
    for row in table_rows(c, None if show_all else NOT_OK):
        verdict = row[2].split(" ", 1)[0]
        # Names come from files: "[/]" in a case label is text, not markup.
        cells = [escape(str(cell)) for cell in row]
        table.add_row(*cells[:2], f"[{COLOURS[verdict]}]{cells[2]}[/]", *cells[3:])
    if table.row_count:
        console.print(table)
    for line in summary_lines(c):
        console.print(escape(line), highlight=False)


def summary_lines(c: Comparison) -> list[str]:
    counts = c.verdicts()
    lines = [", ".join(f"{n} {v}" for v, n in counts.items()), c.rule_text(), *c.notes]
    if c.differences:
        differences = "; ".join(c.differences)
        lines.append(f"compared despite different setups (--allow-mixed): {differences}")
    if c.only_base:
        lines.append(f"only in base (not judged): {', '.join(c.only_base)}")
    if c.only_cand:
        lines.append(f"only in candidate (not judged): {', '.join(c.only_cand)}")
    return lines


def to_markdown(c: Comparison) -> str:
    from bench.analysis.document import md_table

    out = [
        "# Comparison",
        "",
        f"- base: {', '.join(c.base.paths)} ({len(c.base.runs)} run(s))",
        f"- candidate: {', '.join(c.cand.paths)} ({len(c.cand.runs)} run(s))",
        "",
        *(f"{line}  " for line in summary_lines(c)),
        "",
        "## Needs attention",
        "",
        md_table(HEADER, table_rows(c, NOT_OK)),
        "## OK",
        "",
        md_table(HEADER, table_rows(c, {"OK"})),
    ]
    return "\n".join(out) + "\n"


VERDICT_CLASS = {"REGRESSION": "bad", "IMPROVED": "good", "OK": "", "INCONCLUSIVE": "unsure"}
FOREST = "forest.png"
FOREST_CAPTION = (
    "Candidate over base for every case and metric judged on a ratio, with the interval its "
    "verdict used (level: see the rule); the grey band is the tolerance, the colour the verdict."
)


def to_html(c: Comparison, forest_png: bytes | None) -> str:
    import base64

    from bench.analysis.document import render

    def table(verdicts: set[str]) -> dict:
        rows = table_rows(c, verdicts)
        classes = [["", "", VERDICT_CLASS[r[2].split(" ", 1)[0]]] + [""] * 5 for r in rows]
        return {"rows": rows, "classes": classes}

    counts = c.verdicts()
    return render(
        "compare.html.j2",
        title="Comparison",
        base={"paths": c.base.paths, "runs": len(c.base.runs)},
        candidate={"paths": c.cand.paths, "runs": len(c.cand.runs)},
        counts=list(counts.items()),
        n_ok=counts["OK"],
        verdict_class=VERDICT_CLASS,
        notes=summary_lines(c)[1:],
        forest=base64.b64encode(forest_png).decode() if forest_png is not None else None,
        forest_caption=FOREST_CAPTION,
        header=HEADER,
        attention=table(NOT_OK),
        ok=table({"OK"}),
    )


def write_outputs(c: Comparison, out: Path) -> list[Path]:
    """compare.json, compare.md, forest.png and compare.html (self-contained) in ``out``."""
    import io

    from bench import atomic
    from bench.analysis.plots import forest

    out.mkdir(parents=True, exist_ok=True)
    store.write_json_atomic(out / "compare.json", c.to_json())
    md = to_markdown(c)
    png = None
    fig = forest([(f"{case} · {ch.metric}", ch) for case, ch in c.rows if not ch.certain])
    if fig is not None:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=110, format="png")
        png = buf.getvalue()
        atomic.write_bytes(out / FOREST, png)
        md += f"\n{FOREST_CAPTION}\n\n![forest plot]({FOREST})\n"
    atomic.write_bytes(out / "compare.md", md.encode())
    atomic.write_bytes(out / "compare.html", to_html(c, png).encode())
    return [out / n for n in ("compare.json", "compare.md", "compare.html")]


__all__ = ["Comparison", "compare", "print_comparison", "write_outputs"]
