"""Tables of already formatted text as Markdown and as escaped HTML: the one way reports
and comparisons lay out a table; and the one way any page the harness writes escapes text,
links and its title (``esc``, ``href``, ``link``, ``page``).

Every string in a page that did not come from the harness's own source (suite names and
descriptions, case, model and technique labels and parameters, run ids, error messages,
metric names and units from plugins, notes, commits, paths) reaches the HTML through
``esc`` (text and quoted attribute values) or ``href`` (link targets); pages never
interpolate such a string raw.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

WEB_SCHEMES = ("http", "https")  # the only link targets kept as they are


def esc(value: object) -> str:
    """``value`` as HTML text, safe both between tags and inside a quoted attribute
    (``&``, ``<``, ``>``, ``"`` and ``'`` escaped)."""
    return html.escape(str(value), quote=True)


def href(target: str) -> str:
    """A link target, ready for a quoted ``href``/``src``: a web address (http, https) as
    it is; anything else is a path relative to the page, its unsafe characters (``:``
    among them) percent-encoded, so no string from a file becomes a ``javascript:`` link
    and a '#' or '?' in a file name stays part of the name."""
    target = str(target)
    parts = urllib.parse.urlsplit(target)
    if parts.scheme in WEB_SCHEMES and parts.netloc:
        return esc(target)
    return esc(urllib.parse.quote(target, safe="/"))


def link(text: object, target: str) -> str:
    return f'<a href="{href(target)}">{esc(text)}</a>'


def page(title: str, body: str) -> str:
    """A whole self-contained page: the title escaped, the shared style, ``body`` as given
    (markup the caller built with ``esc``, ``href`` and ``html_table``)."""
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}'
        f"</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


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

    def cell(tag: str, text: str, j: int, cls: str = "") -> str:
        names = " ".join(n for n in (cls, "num" if j >= numeric_from else "") if n)
        attr = f' class="{esc(names)}"' if names else ""
        links = text if isinstance(text, list) else [text] if isinstance(text, Link) else None
        if links is not None:
            inner = " · ".join(link(x.text, x.href) for x in links)
            return f"<{tag}{attr}>{inner}</{tag}>"
        return f"<{tag}{attr}>{esc(text)}</{tag}>"

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
