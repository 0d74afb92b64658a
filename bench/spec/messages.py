"""One-line messages for pydantic validation errors: the file, the key path, and what
is allowed, in words a suite author can act on."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from bench.errors import UserError


def user_error(
    e: ValidationError,
    where: str,
    prefix: str,
    schema: type[BaseModel],
    axes: dict[str, list] | None = None,
) -> UserError:
    errors = e.errors(include_url=False)
    for er in errors:
        # Union members show up in loc as tags like "constrained-int"; keys are identifiers.
        er["loc"] = tuple(x for x in er["loc"] if not isinstance(x, str) or x.isidentifier())
    err = errors[0]
    same_key = [er for er in errors if er["loc"] == err["loc"] and er["type"] != "extra_forbidden"]
    if len(same_key) > 1:  # a value that fits no member of a union: say what each wants
        err = {**err, "msg": "; or ".join(dict.fromkeys(er["msg"] for er in same_key))}
    loc = [str(x) if isinstance(x, str) else f"[{x}]" for x in err["loc"]]
    path = prefix
    for part in loc:
        path = f"{path}{part}" if part.startswith("[") else (f"{path}.{part}" if path else part)
    field_name = err["loc"][0] if err["loc"] else None
    if axes and field_name in axes and err["type"] != "extra_forbidden":
        path = f"{path}[{_index_of(axes[field_name], err.get('input'))}]"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = sorted(_schema_at(schema, err["loc"][:-1]).model_fields)
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listing = ", ".join(allowed) if allowed else "none"
        return UserError(f"unknown key{hint}; allowed keys: {listing}", where=where, key=path)
    if kind == "missing":
        return UserError("required key is missing", where=where, key=path)
    if kind == "value_error":  # a schema's own check: its message says what is wrong
        return UserError(err["msg"].removeprefix("Value error, "), where=where, key=path)
    value = err.get("input")
    what = "out of range" if kind in _RANGE_ERRORS else "not allowed"
    return UserError(f"{value!r} is {what}: {err['msg']}", where=where, key=path)


def _schema_at(schema: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The nested model that holds the key at ``loc`` (e.g. RunSettings for ``run.x``)."""
    for part in loc:
        info = schema.model_fields.get(part) if isinstance(part, str) else None
        nested = info.annotation if info is not None else None
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            break
        schema = nested
    return schema


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _index_of(values: list, value: Any) -> int:
    """Where the offending value sits in its axis (type-exact, so 1 and True differ)."""
    return next((i for i, v in enumerate(values) if v == value and type(v) is type(value)), 0)
