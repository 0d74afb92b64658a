"""Non-finite weights: a checkpoint holding a NaN or an infinity is refused when a suite is
validated, naming the file and the tensor; one too large to scan then is caught in its case
process instead, by a forward pass whose outputs must be finite.

A NaN weight makes every output NaN: the model still runs, so without these checks a case
would report the speed of a model that computes nothing (and a quantizer would fail on
torch's "min should be less than or equal to max").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Checkpoints up to this many bytes of safetensors are scanned tensor by tensor when a suite
# is validated (every `bench validate`, and `bench run` before its first case). Scanning
# reads every byte once and costs about as much as loading the weights: a second or two per
# GiB on one core. 4 GiB covers a 2B-parameter model in bfloat16 (a 1B one in float32) at a
# few seconds, once per file (the verdict is cached); above it (7B+ models: 14 GiB and up)
# the scan would cost as much as the run's setup, so the case checks its model's outputs.
SCAN_LIMIT_BYTES = 4 * 2**30
# Elements checked at a time: bounds the scratch memory of one huge tensor (an embedding).
_CHUNK = 1 << 24
# Verdicts on files at least this large are also kept in bench's cache folder; a smaller file
# scans in well under a second, so a verdict on disk would only pile up (tests, temp files).
_DISK_CACHE_MIN_BYTES = 64 * 2**20
# Bump when what the scan finds changes: cached verdicts of older scans are then ignored.
_SCAN_VERSION = 1
_scanned: dict[tuple[str, int, int], str | None] = {}  # this process's verdicts


class NonFiniteOutputs(RuntimeError):
    """The built model's outputs hold NaN or infinite values."""


def total_bytes(files: Iterable[Path]) -> int:
    return sum(f.stat().st_size for f in files)


def too_large_to_scan(files: Iterable[Path]) -> str | None:
    """Why the weights in ``files`` are not scanned at validation (their size), or None."""
    files = list(files)
    size = total_bytes(files)
    if size <= SCAN_LIMIT_BYTES:
        return None
    return (
        f"{size / 2**30:.1f} GiB of weights, over the {SCAN_LIMIT_BYTES / 2**30:g} GiB that "
        "validation scans for non-finite values"
    )


def _count(t) -> tuple[int, int]:
    """(NaN values, infinite values) in a floating-point tensor, a chunk at a time."""
    import torch

    flat = t.reshape(-1)
    nan = inf = 0
    for start in range(0, flat.numel(), _CHUNK):
        chunk = flat[start : start + _CHUNK]
        if chunk.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            chunk = chunk.float()  # float8 and other narrow types: isfinite may not cover them
        if bool(torch.isfinite(chunk).all()):
            continue
        nan += int(torch.isnan(chunk).sum())
        inf += int(torch.isinf(chunk).sum())
    return nan, inf


def describe(nan: int, inf: int) -> str:
    parts = [f"{n} {what} value{'' if n == 1 else 's'}"
             for n, what in ((nan, "NaN"), (inf, "infinite")) if n]  # fmt: skip
    return " and ".join(parts)


def _scan(file: Path) -> str | None:
    """The first tensor of ``file`` that holds a non-finite value and what it holds; None
    if all are finite. One tensor is in memory at a time."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        for name in f.keys():  # noqa: SIM118 - a safe_open handle is not a mapping
            t = f.get_tensor(name)
            if not t.is_floating_point():
                continue
            nan, inf = _count(t)
            if nan or inf:
                return f"tensor {name!r} holds {describe(nan, inf)}"
    return None


def _cache_file(key: tuple[str, int, int]) -> Path:
    from bench.cache import cache_dir

    digest = hashlib.sha256(json.dumps([_SCAN_VERSION, *key]).encode()).hexdigest()[:24]
    return cache_dir() / "checkpoint-scans" / f"{digest}.json"


def nonfinite_problem(file: Path) -> str | None:
    """``_scan(file)``, remembered per file (path, size, modification time) in this process
    and, for a large file, in bench's cache folder: a suite is validated again in each case
    process (a scan there would count in the case's build time), and the same checkpoint by
    every command."""
    st = file.stat()
    key = (str(file.resolve()), st.st_size, st.st_mtime_ns)
    if key in _scanned:
        return _scanned[key]
    if st.st_size < _DISK_CACHE_MIN_BYTES:
        _scanned[key] = _scan(file)
        return _scanned[key]
    cached = _cache_file(key)
    try:
        record = json.loads(cached.read_text())
        if record.get("key") == list(key):
            _scanned[key] = record["problem"]
            return record["problem"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass  # not scanned yet, or an unreadable record: scan
    problem = _scan(file)
    _scanned[key] = problem
    try:
        from bench.atomic import write_text

        write_text(cached, json.dumps({"key": list(key), "problem": problem}))
    except OSError:  # a read-only cache: the verdict lives in this process only
        pass
    return problem


def check_weights_finite(files: Iterable[Path]) -> str | None:
    """Raise ValueError naming the first non-finite tensor of ``files``; or, where the files
    are too large to scan here, return why (the case then checks its outputs)."""
    files = sorted(files)
    skipped = too_large_to_scan(files)
    if skipped:
        return skipped
    for file in files:
        problem = nonfinite_problem(file)
        if problem:
            raise ValueError(f"{file}: {problem}")
    return None


def check_outputs_finite(model: Any, device: str, why: str) -> None:
    """Fail the case if a one-token forward pass of ``model`` gives a NaN or an infinity.

    Run on the freshly built model, before any technique (a compiled model would compile
    for this shape too) and outside the timed windows. One token reaches every weight but
    the other rows of the embedding: a NaN that one token never looks up stays unseen.
    """
    import torch

    ids = torch.zeros((1, 1), dtype=torch.long, device=device)
    with torch.no_grad():
        out = model(ids)
    logits = out[0] if isinstance(out, tuple | list) else out
    nan, inf = _count(logits.detach())
    if nan or inf:
        raise NonFiniteOutputs(
            f"model outputs are not finite: a one-token forward pass gives {describe(nan, inf)} "
            f"among {logits.numel()} logits; check the checkpoint's weights ({why})"
        )
