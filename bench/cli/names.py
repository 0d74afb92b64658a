"""``bench names [NAME]``: the registered models, workloads and techniques; with NAME, that
entry's docs and parameters (from its pydantic schema, so they cannot drift)."""

from __future__ import annotations

import argparse
import difflib
import inspect
from typing import Any

from bench.cli import options
from bench.errors import UserError


def add_parser(sub) -> None:
    p = options.command(
        sub,
        "names",
        main,
        help="the registered models, workloads and techniques; NAME: its docs and parameters",
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="one entry: its docs and parameters")
    options.add_json(p)


def main(args: argparse.Namespace) -> int:
    from bench.spec.registry import known_names

    known = known_names()
    if args.name is None:
        if args.json:
            options.print_json(known)
        else:
            for kind, names in known.items():
                print(f"{kind}s: {', '.join(names)}")
        return 0
    found = [describe(kind, args.name) for kind, names in known.items() if args.name in names]
    if not found:
        every = sorted({n for names in known.values() for n in names})
        close = difflib.get_close_matches(args.name, every, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"no model, workload or technique named {args.name!r}{hint}; see `bench names`"
        )
    if args.json:
        options.print_json(found[0] if len(found) == 1 else found)
        return 0
    for i, entry in enumerate(found):
        print(("\n" if i else "") + "\n".join(text(entry)))
    return 0


def describe(kind: str, name: str) -> dict[str, Any]:
    """A registry entry as data: its docs and its parameters' JSON Schema."""
    from bench.spec import registry

    entry = getattr(registry, f"{kind}s").get(name)
    schema = entry.params.model_json_schema()
    return {
        "kind": kind,
        "name": name,
        "doc": inspect.cleandoc(entry.doc),
        "parameters": schema.get("properties", {}),
        "required": schema.get("required", []),
        "meta": {k: v for k, v in entry.meta.items() if isinstance(v, str | int | float | bool)},
    }


def text(entry: dict[str, Any]) -> list[str]:
    from bench.spec.schema import in_words

    lines = [f"{entry['kind']} {entry['name']}"]
    lines += [f"  {line}".rstrip() for line in (entry["doc"] or "(no docs)").splitlines()]
    lines += [f"  {k}: {v}" for k, v in entry["meta"].items()]
    params = entry["parameters"]
    lines.append("  parameters:" if params else "  parameters: none")
    for key, prop in params.items():
        kind = in_words(prop)
        default = "required" if key in entry["required"] else f"default {prop.get('default')!r}"
        about = f" — {prop['description']}" if prop.get("description") else ""
        lines.append(f"    {key}: {kind}, {default}{about}")
    return lines
