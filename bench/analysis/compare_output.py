"""How a comparison is shown: the verdict table on the console, ``compare.md``,
``compare.html`` (a template) with its forest plot, and ``compare.json``, for ``bench
compare`` and ``bench ab``."""

from __future__ import annotations

import math
from pathlib import Path

from bench.analysis import verdicts
from bench.analysis.compare import Comparison
from bench.analysis.units import human
from bench.results import store

MANY_RUNS = 50  # more units per side than this: say the tolerance is tight for the spread

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
