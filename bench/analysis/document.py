"""Tables of already formatted text as Markdown, and every HTML page the harness writes.

Pages are Jinja2 templates (``bench/analysis/templates``) rendered by ``render`` with
autoescaping on and undefined names an error: every string a page shows (suite names and
descriptions, case, model and technique labels and parameters, run ids, error messages,
metric names and units from plugins, notes, commits, paths) is escaped by Jinja, and link
targets pass through the ``href`` filter. No module builds markup by hand; the templates
never mark a string safe.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WEB_SCHEMES = ("http", "https")  # the only link targets kept as they are


def href(target: object) -> str:
    """A link target (the templates' ``href`` filter; the template escapes the result): a
    web address (http, https) as it is; anything else is a path relative to the page, its
    unsafe characters (``:`` among them) percent-encoded, so no string from a file becomes
    a ``javascript:`` link and a '#' or '?' in a file name stays part of the name."""
    target = str(target)
    parts = urllib.parse.urlsplit(target)
    if parts.scheme in WEB_SCHEMES and parts.netloc:
        return target
    return urllib.parse.quote(target, safe="/")


@functools.cache
def environment() -> Any:
    """The one Jinja2 environment of the harness's pages (jinja2 imported on first use)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bench.analysis", "templates"),
        autoescape=True,  # every template is HTML
        undefined=jinja2.StrictUndefined,  # a misspelt name fails, never renders as ""
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["href"] = href
    env.tests["link"] = lambda value: isinstance(value, Link)
    env.tests["links"] = lambda value: isinstance(value, list)  # several links in one cell
    return env


def render(template: str, **context: Any) -> str:
    """The page ``template`` (a file in ``bench/analysis/templates``) with ``context``."""
    return environment().get_template(template).render(**context)


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
