"""MkDocs hook: the reference sections generated from the code at build time, so they
cannot drift from it.

A page asks for a section with a marker line in its Markdown:

- ``<!-- generated: suite-keys -->``: every suite key, from the suite's JSON Schema
  (``bench.spec.suite.json_schema()``, which pydantic derives from the models that
  validate suites);
- ``<!-- generated: registry -->``: every registered model, workload and technique with
  its docs and parameters, from the registries' pydantic schemas;
- ``<!-- generated: cli -->``: every command, argument, default and exit code, from
  ``bench.cli.build_parser()`` (the parser ``bench`` itself runs).

A marker whose generator fails fails the build: a reference that is silently missing is
the drift this hook exists to prevent.
"""

from __future__ import annotations

import argparse
import html
import json
import re
from typing import Any

from bench.spec.schema import in_words

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, page, config, files) -> str:
    def expand(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown generated section {name!r}")
        return GENERATORS[name]()

    return MARKER.sub(expand, markdown)


# --- Markdown helpers -------------------------------------------------------------------


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: Any) -> str:
    text = str(text)
    if "|" in text:  # a table would split a code span at the pipe, and show "\|" escaped
        return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --- suite keys ---------------------------------------------------------------------------


def _suite_schema() -> dict[str, Any]:
    from bench.spec import suite

    if hasattr(suite, "json_schema"):
        return suite.json_schema()
    return suite.SuiteFile.model_json_schema()


def _limits(prop: dict[str, Any]) -> str:
    words = {
        "minimum": "≥",
        "exclusiveMinimum": ">",
        "maximum": "≤",
        "exclusiveMaximum": "<",
        "minLength": "length ≥",
        "maxLength": "length ≤",
        "minItems": "items ≥",
        "pattern": "matches",
    }
    found = []
    for p in [prop, *prop.get("anyOf", [])]:
        for k, v in p.items():
            if k in words:
                found.append(f"{words[k]} {_code(v) if k == 'pattern' else v}")
    return ", ".join(found)


def _default(key: str, prop: dict[str, Any], required: list[str]) -> str:
    if key in required:
        return "required"
    if "default" not in prop:
        return ""
    value = prop["default"]
    if value is None:
        return "unset"
    if isinstance(value, dict) and value and len(json.dumps(value)) > 40:
        return "(see the table)"
    return _code(json.dumps(value))


def _key_rows(schema: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> list[list[str]]:
    required = schema.get("required", [])
    rows = []
    for key, prop in schema.get("properties", {}).items():
        about = prop.get("description", "")
        limits = _limits(prop)
        rows.append(
            [
                _code(prefix + key),
                in_words(prop, defs),
                _default(key, prop, required),
                about + (f" ({limits})" if limits else ""),
            ]
        )
    return rows


def suite_keys() -> str:
    schema = _suite_schema()
    defs = schema.get("$defs", {})
    out = [
        "Generated from the suite's JSON Schema (`bench schema` prints it) when this site was "
        "built. Types are TOML's; a list where one value is expected is a matrix axis.",
        "",
        "### Top level",
        "",
        _table(["key", "type", "default", "what"], _key_rows(schema, defs)),
    ]
    # Each table the top level refers to ([run], [matrix], [[matrix.include]], ...), once.
    seen: set[str] = set()

    def refs(props: dict[str, Any], where: str) -> list[tuple[str, str]]:
        found = []
        for key, prop in props.items():
            for p in [prop, *prop.get("anyOf", []), prop.get("items") or {}]:
                ref = p.get("$ref", "") if isinstance(p, dict) else ""
                name = ref.rsplit("/", 1)[-1]
                if name in defs and name not in seen:
                    seen.add(name)
                    found.append((f"{where}{key}", name))
        return found

    queue = refs(schema.get("properties", {}), "")
    while queue:
        path, name = queue.pop(0)
        sub = defs[name]
        is_array = any(
            isinstance(p, dict) and p.get("type") == "array"
            for p in [schema.get("properties", {}).get(path, {})]
        )
        heading = f"[[{path}]]" if is_array else f"[{path}]"
        out += ["", f"### `{heading}`", ""]
        if sub.get("description"):
            out += [" ".join(sub["description"].split()), ""]
        out.append(_table(["key", "type", "default", "what"], _key_rows(sub, defs)))
        queue += refs(sub.get("properties", {}), f"{path}.")
    return "\n".join(out) + "\n"


# --- registry entries ----------------------------------------------------------------------


def registry() -> str:
    from bench.spec import registry as reg

    out = [
        "Generated from the registries when this site was built (`bench names NAME` prints "
        "the same). A key whose value is a list is a matrix axis.",
    ]
    for kind_registry, title in (
        (reg.models, "Models"),
        (reg.workloads, "Workloads"),
        (reg.techniques, "Techniques"),
    ):
        out += ["", f"### {title}", ""]
        for name in kind_registry.names():
            entry = kind_registry.get(name)
            schema = entry.params.model_json_schema()
            defs = schema.get("$defs", {})
            out += ["", f"#### `{name}`", ""]
            doc = (entry.doc or "").strip()
            if doc:
                out += [" ".join(doc.split()), ""]
            rows = _key_rows(schema, defs)
            out.append(_table(["key", "type", "default", "what"], rows) if rows else "No keys.")
    return "\n".join(out) + "\n"


# --- the command line ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from bench.cli import build_parser

    return build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, p, helps.get(name, "")) for name, p in action.choices.items()]
    return []


def _argument_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                metavar = action.metavar or action.dest.upper()
                name += f" {metavar if isinstance(metavar, str) else ' '.join(metavar)}"
        else:
            name = action.metavar or action.dest
            name = name if isinstance(name, str) else " ".join(name)
            if action.nargs in ("*", "+"):
                name += "..."
            elif action.nargs == "?":
                name = f"[{name}]"
        default = action.default
        shown = ""
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            shown = "one of " + ", ".join(map(str, action.choices))
        if default not in (None, False, [], argparse.SUPPRESS) and action.nargs != 0:
            shown = (shown + "; " if shown else "") + f"default {_code(default)}"
        help_text = (action.help or "") % {"default": default, "prog": parser.prog}
        rows.append([_code(name), help_text, shown])
    return rows


def _exit_codes(epilog: str) -> list[list[str]]:
    """The 'exit status:' epilog as rows (code, meaning); continuation lines join the row."""
    rows: list[list[str]] = []
    for line in epilog.splitlines()[1:]:
        m = re.match(r"^\s+(\d+)\s+(.*)$", line)
        if m:
            rows.append([m.group(1), m.group(2)])
        elif rows and line.strip():
            rows[-1][1] += " " + line.strip()
    return rows


def _command(
    name: str, parser: argparse.ArgumentParser, summary: str, depth: int, top_epilog: str
) -> list[str]:
    hashes = "#" * depth
    out = ["", f"{hashes} `{name}`", ""]
    description = parser.description or summary
    if description:
        out += [" ".join(description.split()), ""]
    out += ["```text", parser.format_usage().strip(), "```", ""]
    rows = _argument_rows(parser)
    if rows:
        out += [_table(["argument", "what", "values"], rows), ""]
    if parser.epilog and parser.epilog.strip() != top_epilog.strip():
        codes = _exit_codes(parser.epilog) if parser.epilog.startswith("exit") else []
        if codes:
            out += [_table(["exit status", "when"], codes), ""]
        else:
            out += ["```text", parser.epilog.strip(), "```", ""]
    for sub_name, sub, sub_help in _subcommands(parser):
        out += _command(f"{name} {sub_name}", sub, sub_help, depth + 1, top_epilog)
    return out


def cli() -> str:
    parser = _parser()
    parser.prog = "bench"
    epilog = parser.epilog or ""
    out = [
        "Generated from `bench.cli.build_parser()`, the parser `bench` itself runs, when this "
        "site was built; `bench COMMAND --help` prints the same.",
        "",
        "```text",
        parser.format_usage().strip(),
        "```",
    ]
    codes = _exit_codes(epilog) if epilog.startswith("exit") else []
    if codes:
        out += ["", "### Exit status (every command)", "", _table(["exit status", "when"], codes)]
    out += ["", "### Commands", ""]
    commands = _subcommands(parser)
    out.append(_table(["command", "what"], [[_code(f"bench {n}"), h] for n, _, h in commands]))
    for name, sub, summary in commands:
        sub.prog = f"bench {name}"
        for sub_name, subsub, _ in _subcommands(sub):
            subsub.prog = f"bench {name} {sub_name}"
        out += _command(f"bench {name}", sub, summary, 3, epilog)
    return "\n".join(out) + "\n"


GENERATORS = {"suite-keys": suite_keys, "registry": registry, "cli": cli}
