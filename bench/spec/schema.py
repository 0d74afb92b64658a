"""The JSON Schema of an entry of ``[[models]]``, ``[[workloads]]`` or ``[[techniques]]``:
one alternative per registered name, its keys from that entry's parameter schema, so an
editor completes names and keys and flags unknown ones (``bench schema``)."""

from __future__ import annotations

import copy
import json
from typing import Any

from bench.spec.registry import Registry


def entries_schema(reg: Registry, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``anyOf`` the registered names of ``reg``; each key also takes a list of its values
    (a list is a matrix axis). ``extra``: keys every entry takes besides its own."""
    options = []
    for name in reg.names():
        entry = reg.get(name)
        params = entry.params.model_json_schema(ref_template=f"#/$defs/{name}.{{model}}")
        defs = params.pop("$defs", {})
        props: dict[str, Any] = {
            "name": {"const": name, "description": _first_line(entry.doc) or f"{reg.kind} {name}"}
        }
        for key, prop in params.get("properties", {}).items():
            prop = _inline(prop, defs, name)
            one = {k: v for k, v in prop.items() if k not in ("title", "description", "default")}
            props[key] = {
                "anyOf": [one, {"type": "array", "items": one, "minItems": 1}],
                **{k: prop[k] for k in ("description", "default") if k in prop},
            }
        props.update(copy.deepcopy(extra or {}))
        options.append(
            {
                "type": "object",
                "title": name,
                "properties": props,
                "required": ["name", *params.get("required", [])],
                "additionalProperties": False,
            }
        )
    return {"anyOf": options}


def _inline(prop: dict[str, Any], defs: dict[str, Any], name: str) -> dict[str, Any]:
    """A property with its ``$ref`` to the entry's own definitions replaced by them."""
    prefix = f"#/$defs/{name}."

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(prefix):
                return walk(defs.get(ref.removeprefix(prefix), {}))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(prop)


def _first_line(doc: str) -> str:
    return doc.strip().splitlines()[0] if doc.strip() else ""


def in_words(prop: dict[str, Any], defs: dict[str, Any] | None = None) -> str:
    """A schema property's type in words: 'integer', 'one of "a", "b"', 'list of ...',
    'table'; ``defs``: the schema's definitions (a ``$ref`` to one is a table). One
    wording for ``bench names`` and the docs' key reference."""
    defs = defs or {}
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    if "anyOf" in prop:
        # dict.fromkeys: one word per kind (a list of models is a union of many tables)
        return " or ".join(dict.fromkeys(in_words(p, defs) for p in prop["anyOf"]))
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return "table" if name in defs else name
    kind = prop.get("type")
    if kind == "array":
        items = prop.get("items")
        if isinstance(items, dict) and items:
            return f"list of {in_words(items, defs)}"
        if "prefixItems" in prop:
            return "[" + ", ".join(in_words(p, defs) for p in prop["prefixItems"]) + "]"
        return "list"
    if kind == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"table of {in_words(extra, defs)}"
        return "table"
    if kind == "null":
        return "unset"
    return kind or "any"
