"""Tables of already formatted text as Markdown and as escaped HTML: the one way reports
and comparisons lay out a table."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Link:
    """A table cell that links somewhere (a trace beside the report)."""

    text: str
    href: str

    def __str__(self) -> str:
        return self.text


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "_none_\n"
    lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _md_cell(text: str | Link | list) -> str:
    """One Markdown table cell: a '|' or a line break would end the row."""
    if isinstance(text, list):  # several links in one cell
        return " · ".join(map(_md_cell, text))
    if isinstance(text, Link):
        return f"[{_md_cell(text.text)}](<{text.href}>)"
    return " ".join(str(text).replace("\\", "\\\\").replace("|", "\\|").splitlines())


def html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    classes: Sequence[Sequence[str]] | None = None,
    numeric_from: int = 1,
) -> str:
    """An escaped table in a horizontally scrolling box (wide tables never widen the
    page). ``classes[i][j]`` styles cell (i, j), e.g. a verdict colour; columns from
    ``numeric_from`` on are right-aligned."""
    if not rows:
        return "<p><em>none</em></p>"
    e = html.escape

    def cell(tag: str, text: str, j: int, cls: str = "") -> str:
        names = " ".join(n for n in (cls, "num" if j >= numeric_from else "") if n)
        attr = f' class="{e(names)}"' if names else ""
        links = text if isinstance(text, list) else [text] if isinstance(text, Link) else None
        if links is not None:
            inner = " · ".join(f'<a href="{e(x.href)}">{e(x.text)}</a>' for x in links)
            return f"<{tag}{attr}>{inner}</{tag}>"
        return f"<{tag}{attr}>{e(str(text))}</{tag}>"

    head = "".join(cell("th", h, j) for j, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(
            cell("td", text, j, classes[i][j] if classes else "") for j, text in enumerate(row)
        )
        + "</tr>"
        for i, row in enumerate(rows)
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;"
    "margin:2em auto;padding:0 1em;color:#1d2330;line-height:1.45}"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;"
    "border-bottom:1px solid #e3e6ea;padding-bottom:.2em}"
    ".scroll{overflow-x:auto;max-width:100%}"
    "table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
    "td,th{border-bottom:1px solid #e3e6ea;padding:4px 10px;text-align:left;"
    "vertical-align:top;white-space:nowrap}th{background:#f5f7f9;font-weight:600}"
    "td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".good{background:#e3f4e6;color:#11612a}.bad{background:#fbe4e4;color:#9b1c1c}"
    ".unsure{background:#fff4d6;color:#7a5300}.muted{color:#6b7280}"
    "dl.env{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;font-size:14px}"
    "dl.env dt{font-weight:600}dl.env dd{margin:0}"
    "figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #e3e6ea}"
    "p.caption{margin:.2em 0 .4em;color:#374151}"
    ".note{color:#4b5563;font-size:13px}"
)
