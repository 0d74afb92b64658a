"""Name -> implementation registries for models, workloads and techniques.

A suite refers to everything by name; the name is only ever looked up here, never
imported or evaluated. Built-ins register when first needed; other packages join
through the ``bench.plugins`` entry-point group (each entry names a module whose
``@register_*`` decorators run on import).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict

BUILTIN_MODULES = (
    "bench.models",
    "bench.models.hf",
    "bench.workloads.forward",
    "bench.workloads.generate",
    "bench.workloads.eval",
    "bench.workloads.selftest",
    "bench.workloads.train",
    "bench.techniques.baseline",
    "bench.techniques.prune",
    "bench.techniques.precision",
    "bench.techniques.quantize",
    "bench.techniques.compile",
    "bench.techniques.delay",
    "bench.techniques.optimizer",
    "bench.techniques.lr_schedule",
    "bench.techniques.distill",
    "bench.techniques.parallel",
)
PLUGIN_GROUP = "bench.plugins"


class Params(BaseModel):
    """Base of every parameter schema: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    pass


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    params: type[Params]
    fn: Callable[..., Any]
    label: Callable[[Any], str] | None = None
    doc: str = ""
    # Extra facts a kind needs (e.g. a workload's headline metric and its direction).
    meta: dict[str, Any] = field(default_factory=dict)

    def make_label(self, params: Params) -> str:
        if self.label is not None:
            return self.label(params)
        values = [str(v) for v in params.model_dump().values() if v is not None]
        return "-".join([self.name, *values])


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        *,
        params: type[Params] = NoParams,
        label: Callable[[Any], str] | None = None,
        **meta: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(Entry(self.kind, name, params, fn, label, (fn.__doc__ or "").strip(), meta))
            return fn

        return decorator

    def add(self, entry: Entry) -> None:
        existing = self._entries.get(entry.name)
        if existing is not None and existing.fn is not entry.fn:
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry

    def get(self, name: str) -> Entry:
        load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)


def model_entry(spec: dict[str, Any]) -> tuple[Entry, Params, str]:
    """(entry, validated params, label) of a model named inside another entry's keys (a
    distillation teacher, a draft model): ``{"name": ..., **its keys}``. A ValueError
    (what a schema validator may raise) names what is wrong."""
    name = spec.get("name")
    if not isinstance(name, str):
        raise ValueError("a model entry needs a 'name'")
    try:
        entry = models.get(name)
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    params = entry.params.model_validate({k: v for k, v in spec.items() if k != "name"})
    return entry, params, entry.make_label(params)


def normal_model_entry(spec: dict[str, Any]) -> dict[str, Any]:
    """A model entry with its keys checked by its schema and defaults left out."""
    _, params, _ = model_entry(spec)
    normal = params.model_dump(exclude_defaults=True)
    if "weights" in type(params).model_fields:
        # Always named: the built-in models' default weights changed (random -> shipped),
        # so a form without them would mean different models in different versions.
        normal["weights"] = params.weights  # type: ignore[attr-defined]
    return {"name": spec["name"], **normal}


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; known: {', '.join(known)}"


def known_names() -> dict[str, list[str]]:
    return {r.kind: r.names() for r in (models, workloads, techniques)}


models = Registry("model")
workloads = Registry("workload")
techniques = Registry("technique")

register_model = models.register
register_workload = workloads.register
register_technique = techniques.register

_loaded = False


def load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group=PLUGIN_GROUP):
        ep.load()
