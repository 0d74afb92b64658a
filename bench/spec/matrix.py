"""A suite's matrix expanded into cases: entries (a list value is an axis, everywhere),
technique chains, ``matrix.exclude`` / ``matrix.include``, and the checks that need whole
cases (combinations a technique refuses, groups without a baseline)."""

from __future__ import annotations

import difflib
import itertools
from typing import Any

from pydantic import ValidationError

from bench.errors import UserError
from bench.spec import registry
from bench.spec.cases import BASELINE, Case, Component
from bench.spec.messages import user_error
from bench.spec.registry import Registry

OPT_OUT = "baseline"  # `baseline = false` on a workload or an include: no baseline needed


class Expander:
    def __init__(self, where: str):
        self.where = where
        self.no_baseline: set[str] = set()  # keys of entries that opted out of a baseline

    def entries(self, reg: Registry, section: str, index: int, data: Any) -> list[Component]:
        key = f"{section}[{index}]"
        if not isinstance(data, dict):
            raise UserError(f"expected a table, got {data!r}", where=self.where, key=key)
        if section == "workloads" and OPT_OUT in data:
            data = dict(data)
            if self._opted_out(f"{key}.{OPT_OUT}", data.pop(OPT_OUT)):
                self.no_baseline.add(key)
        name = data.get("name")
        if not isinstance(name, str):
            raise UserError(
                f"missing 'name'; known {reg.kind}s: {', '.join(reg.names())}",
                where=self.where,
                key=key,
            )
        try:
            entry = reg.get(name)
        except KeyError as e:
            raise UserError(e.args[0], where=self.where, key=f"{key}.name") from None
        params = {k: v for k, v in data.items() if k != "name"}
        axes = {k: v for k, v in params.items() if isinstance(v, list)}
        for k, v in axes.items():
            if not v:
                raise UserError(
                    "an empty list leaves no values to run", where=self.where, key=f"{key}.{k}"
                )
        out = []
        for combo in itertools.product(*axes.values()):
            values = {**params, **dict(zip(axes, combo, strict=True))}
            try:
                p = entry.params.model_validate(values)
            except ValidationError as e:
                raise user_error(e, self.where, key, entry.params, axes) from None
            out.append(Component(entry.name, p.model_dump(), entry.make_label(p)))
        return out

    def _opted_out(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise UserError(f"expected true or false, got {value!r}", where=self.where, key=key)
        return not value

    def chains(self, key: str, data: dict[str, Any]) -> list[list[Component]]:
        """One ``[[techniques]]`` entry: a technique (its list values are axes) or
        ``chain = [...]``, steps applied in order (each step's list values are axes)."""
        if not isinstance(data, dict) or "chain" not in data:
            return [[c] for c in self.step(key, data)]
        extra = set(data) - {"chain"}
        if extra:
            raise UserError(
                f"a chain entry takes only 'chain', not {sorted(extra)}", where=self.where, key=key
            )
        return self.chain(f"{key}.chain", data["chain"])

    def chain(self, key: str, steps: Any) -> list[list[Component]]:
        if not isinstance(steps, list) or not steps:
            raise UserError(
                'expected a non-empty list of techniques, e.g. chain = ["prune", "quantize"]',
                where=self.where,
                key=key,
            )
        per_step = [self.step(f"{key}[{j}]", s) for j, s in enumerate(steps)]
        return [list(combo) for combo in itertools.product(*per_step)]

    def step(self, key: str, data: Any, reg: Registry = registry.techniques) -> list[Component]:
        """One entry named by a string or a table, its errors reported at ``key``."""
        try:
            return self.entries(reg, "", 0, {"name": data} if isinstance(data, str) else data)
        except UserError as e:
            raise UserError(
                e.message, where=self.where, key=(e.key or "").replace("[0]", key, 1)
            ) from None

    def include(self, key: str, data: dict[str, Any]):
        """One validated ``matrix.include`` entry (bench.spec.suite.Include): its models,
        workloads and chains; a list of names or tables is an axis."""
        if data.get(OPT_OUT) is False:
            self.no_baseline.add(key)

        def axis(part: str, reg: Registry) -> list[Component]:
            v = data[part]
            values = v if isinstance(v, list) else [v]
            if not values:
                raise UserError(
                    "an empty list leaves no values to run", where=self.where, key=f"{key}.{part}"
                )
            at = [
                f"{key}.{part}[{i}]" if isinstance(v, list) else f"{key}.{part}"
                for i in range(len(values))
            ]
            return [c for i, x in enumerate(values) for c in self.step(at[i], x, reg)]

        ms = axis("model", registry.models)
        ws = axis("workload", registry.workloads)
        if data.get("chain") is not None:
            cs = self.chain(f"{key}.chain", data["chain"])
        else:
            cs = [[c] for c in self.step(f"{key}.technique", data.get("technique") or BASELINE)]
        return ms, ws, cs


def check_combinations(candidates: list[tuple[str, Case]], where: str) -> None:
    """What one key cannot say alone: a technique's ``check`` sees the whole case (its
    workload, model and run) and names what does not fit, e.g. an optimizer on a workload
    that does not train, or a warm-up longer than the run."""
    done = set()
    for origin, case in candidates:
        keys = origin.split(", ")
        steps = [(registry.workloads, case.workload, keys[1 if len(keys) > 1 else 0])]
        steps += [(registry.techniques, step, keys[-1]) for step in case.techniques]
        for reg, step, key in steps:
            entry = reg.get(step.name)
            memo = (step.label, case.model.label, case.workload.label, case.run["device"])
            if "check" in entry.meta and memo not in done:
                done.add(memo)
                if why := entry.meta["check"](entry.params.model_validate(step.params), case):
                    raise UserError(why, where=where, key=key)


def check_baselines(candidates: list[tuple[str, Case]], no_baseline: set[str], where: str) -> None:
    """Every group (cases that differ only in techniques) has its baseline case, which
    every ratio, verdict and quality figure of the group is relative to; a group whose
    cases all come from entries with ``baseline = false`` is left alone."""
    by_group: dict[str, list[str]] = {}
    with_baseline = set()
    for origin, case in candidates:
        # the key a fix goes on: the workload of a matrix case, or the include itself
        key = origin.split(", ")[1] if ", " in origin else origin
        by_group.setdefault(case.group, []).append(key)
        if case.is_baseline:
            with_baseline.add(case.group)
    for group, keys in by_group.items():
        needing = [k for k in keys if k not in no_baseline]
        if group in with_baseline or not needing:
            continue
        key = needing[0]
        fix = (
            'add an include with technique "baseline"'
            if key.startswith("matrix.include")
            else 'add technique "baseline" to [[techniques]]'
        )
        raise UserError(
            f"group {group} has no baseline case; {fix} or set baseline = false",
            where=where,
            key=key,
        )


# --- matrix rules --------------------------------------------------------------------


def check_selector(rule: dict[str, Any], where: str, key: str, technique_names: set[str]) -> None:
    if not rule:
        raise UserError("an empty rule would match every case", where=where, key=key)
    known_heads = {"model", "workload", "technique", *technique_names}
    for k in rule:
        head = k.split(".", 1)[0]
        if head not in known_heads:
            close = difflib.get_close_matches(head, sorted(known_heads), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(
                f"unknown selector {k!r}{hint}; use model, workload, technique, "
                "or <model|workload|technique-name>.<parameter>",
                where=where,
                key=f"{key}.{k}",
            )


def matches(rule: dict[str, Any], case: Case) -> bool:
    for k, want in rule.items():
        head, _, param = k.partition(".")
        if head in ("model", "workload"):
            comp: Component = getattr(case, head)
            got = comp.params.get(param) if param else None
            if param and got != want:
                return False
            if not param and want not in (comp.name, comp.label):
                return False
        elif head == "technique" and not param:
            if not any(want in (t.name, t.label) for t in case.techniques):
                return False
        else:
            steps = [t for t in case.techniques if t.name == head]
            if not steps or not any(t.params.get(param) == want for t in steps):
                return False
    return True
