"""What a suite file says before its keys are validated: ``extends`` (a base file merged
under it), ``--set`` overrides, and ``[defaults]`` (keys shared by every entry of a name).

Order, each step on plain TOML data: the ``extends`` chain is merged (tables deep-merged,
arrays replaced, the extending file winning), then ``--set`` overrides are applied (so
they win over every file, and can set ``defaults`` too), then ``[defaults]`` is handed out
to the entries (an entry's own key wins over a default). The result has neither
``extends`` nor ``defaults``: it is the effective suite, which ``bench.spec.suite`` writes
back as TOML so that every process that reads the suite again reads the same thing.
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.spec import registry

# [defaults.<section>.<name>]: the registry whose entries a section's names are.
SECTIONS = {
    "models": registry.models,
    "workloads": registry.workloads,
    "techniques": registry.techniques,
}
# matrix.include keys naming one entry of a section
INCLUDE_KEYS = {"model": "models", "workload": "workloads", "technique": "techniques"}


def is_layered(data: dict[str, Any], overrides: Sequence[str]) -> bool:
    return bool(overrides) or "extends" in data or "defaults" in data


def resolve(
    data: dict[str, Any], where: str, base_dir: Path, overrides: Sequence[str]
) -> dict[str, Any]:
    """The effective suite data: extends merged, overrides applied, defaults handed out."""
    data = merge_extends(data, where, base_dir, seen=(str(Path(where).resolve()),))
    data = apply_overrides(data, overrides, where)
    return hand_out_defaults(data, where)


# --- extends -----------------------------------------------------------------------------


def merge_extends(
    data: dict[str, Any], where: str, base_dir: Path, seen: tuple[str, ...]
) -> dict[str, Any]:
    if "extends" not in data:
        return data
    data = dict(data)
    name = data.pop("extends")
    if not isinstance(name, str) or not name:
        raise UserError(
            'expected a file name relative to this suite, e.g. extends = "base.toml"',
            where=where,
            key="extends",
        )
    path = base_dir / name
    resolved = str(path.resolve())
    if resolved in seen:
        cycle = " -> ".join([*(Path(s).name for s in seen), path.name])
        raise UserError(f"extends makes a cycle: {cycle}", where=where, key="extends")
    try:
        base = tomllib.loads(path.read_bytes().decode("utf-8", errors="replace"))
    except FileNotFoundError:
        raise UserError(f"no such base suite {str(path)!r}", where=where, key="extends") from None
    except OSError as e:
        raise UserError(
            f"cannot read {str(path)!r}: {e.strerror}", where=where, key="extends"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"invalid TOML: {e}", where=str(path)) from None
    base = merge_extends(base, str(path), path.parent, (*seen, resolved))
    return deep_merge(base, data)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: tables merge key by key, anything else (arrays too,
    arrays of tables included) is replaced whole."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# --- --set overrides ---------------------------------------------------------------------


def parse_override(text: str, where: str | None = None) -> tuple[tuple[str, ...], Any]:
    """``"run.repeats=5"`` -> (("run", "repeats"), 5). The key is a dotted TOML key (an
    array's entry by its index: ``workloads.0.batch``); the value a TOML value, or else
    the text itself as a string (``run.device=cuda``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    usage = f"--set {text!r}: expected KEY=VALUE with a dotted TOML key, e.g. run.repeats=5"
    if not sep or not key:
        raise UserError(usage, where=where)
    try:
        table = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        raise UserError(usage, where=where) from None
    path: list[str] = []
    node: Any = table
    while isinstance(node, dict):  # one key per level: {"run": {"repeats": 0}}
        ((k, node),) = node.items()
        path.append(k)
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare word: the string itself
    return tuple(path), parsed


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], where: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text, where)
        if path[0] == "extends":
            raise UserError(f"--set {text}: extends cannot be overridden", where=where)
        node: Any = data
        for i, part in enumerate(path):
            last = i == len(path) - 1
            shown = ".".join(path[:i]) or "the suite"
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise UserError(
                        f"--set {text}: {shown} has {len(node)} entries; "
                        f"name one by its index 0..{len(node) - 1}",
                        where=where,
                    )
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise UserError(f"--set {text}: {shown} is a value, not a table", where=where)
    return data


def key_path(key: str) -> tuple[str, ...]:
    """``"workloads[0].batch"`` -> ("workloads", "0", "batch"): an error's key as a path."""
    return tuple(p for p in key.replace("[", ".").replace("]", "").split(".") if p)


def blame(e: UserError, overrides: Sequence[str]) -> UserError:
    """An error at a key an override set names the override (the last one that did)."""
    if not e.key:
        return e
    at = key_path(e.key)
    for text in reversed(overrides):
        path, _ = parse_override(text)
        n = min(len(at), len(path))
        if at[:n] == path[:n]:
            return UserError(f"{e.key}: {e.message}", where=e.where, key=f"--set {text}")
    return e


# --- [defaults] --------------------------------------------------------------------------


def hand_out_defaults(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``[defaults.workloads.generate]`` keys set on every ``generate`` workload that does
    not set them itself: in ``[[workloads]]`` and in ``matrix.include`` (likewise models
    and techniques, chain steps included)."""
    if "defaults" not in data:
        return data
    data = dict(data)
    defaults = check_defaults(data.pop("defaults"), where)

    def fill(section: str, entry: Any) -> Any:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return entry  # validation says what is wrong with it
        shared = defaults.get(section, {}).get(entry["name"], {})
        return {**copy.deepcopy(shared), **entry}

    def fill_chain(steps: Any) -> Any:
        return [fill("techniques", s) for s in steps] if isinstance(steps, list) else steps

    for section in SECTIONS:
        entries = data.get(section)
        if isinstance(entries, list):
            data[section] = [
                {**e, "chain": fill_chain(e["chain"])}
                if isinstance(e, dict) and "chain" in e
                else fill(section, e)
                for e in entries
            ]
    matrix = data.get("matrix")
    if isinstance(matrix, dict) and isinstance(matrix.get("include"), list):
        includes = []
        for inc in matrix["include"]:
            if isinstance(inc, dict):
                inc = dict(inc)
                for key, section in INCLUDE_KEYS.items():
                    if isinstance(inc.get(key), list):  # an axis of entries
                        inc[key] = [fill(section, e) for e in inc[key]]
                    elif key in inc:
                        inc[key] = fill(section, inc[key])
                if "chain" in inc:
                    inc["chain"] = fill_chain(inc["chain"])
            includes.append(inc)
        data["matrix"] = {**matrix, "include": includes}
    return data


def check_defaults(defaults: Any, where: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``defaults.<section>.<name>.<key>``: a known section, a registered name, and keys
    that name's schema has (values are checked where they land, in each entry)."""

    def fail(message: str, key: str):
        return UserError(message, where=where, key=key)

    if not isinstance(defaults, dict):
        raise fail("expected a table of [defaults.<models|workloads|techniques>.<name>]",
                   "defaults")  # fmt: skip
    for section, by_name in defaults.items():
        if section not in SECTIONS:
            raise fail(f"unknown key; allowed keys: {', '.join(SECTIONS)}", f"defaults.{section}")
        if not isinstance(by_name, dict):
            raise fail(
                f"expected tables by name, e.g. [defaults.{section}.<name>]", f"defaults.{section}"
            )
        for name, keys in by_name.items():
            at = f"defaults.{section}.{name}"
            try:
                entry = SECTIONS[section].get(name)
            except KeyError as e:
                raise fail(e.args[0], at) from None
            if not isinstance(keys, dict):
                raise fail(f"expected a table of {name}'s keys", at)
            allowed = sorted(entry.params.model_fields)
            for k in keys:
                if k not in allowed:
                    listing = ", ".join(allowed) or "none"
                    raise fail(f"unknown key for {name}; allowed keys: {listing}", f"{at}.{k}")
    return defaults


def describe(overrides: Sequence[str]) -> str:
    """The overrides as a TOML comment line of the effective suite."""
    return "# --set " + " --set ".join(json.dumps(o) for o in overrides)
