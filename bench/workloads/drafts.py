"""The draft model of speculative decoding: the one a suite names, or by default the
distilled student of the target model (saved by a ``distill`` case under a run folder's
``checkpoints/``, its teacher recorded in the file), or else the built-in tinygpt-s
trained with its own recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_DRAFT = {"name": "tinygpt-s", "weights": "pydoc"}


def distilled_students(results_root: Path, teacher_label: str) -> list[tuple[Path, dict]]:
    """(file, model entry) of the students distilled from ``teacher_label`` under
    ``results_root``, newest first."""
    from safetensors import safe_open

    found = []
    for path in results_root.glob("*/checkpoints/*.safetensors"):
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception:  # a file being written, or not safetensors: not a candidate
            continue
        if meta.get("teacher") == teacher_label and meta.get("model"):
            found.append((path.stat().st_mtime, path, json.loads(meta["model"])))
    return [(p, entry) for _, p, entry in sorted(found, reverse=True)]


def resolve_draft(explicit: dict[str, Any] | None, target_label: str, run_dir: str | None):
    """(draft entry, why this one): the suite's, the newest distilled student of the
    target in the results folder this run writes to, or ``DEFAULT_DRAFT``."""
    if explicit is not None:
        return explicit, "named in the suite"
    if run_dir is not None:
        root = Path(run_dir).parent
        for path, entry in distilled_students(root, target_label):
            # The student's shape keys as its case had them; its weights from the file.
            entry = {k: v for k, v in entry.items() if v is not None}
            entry.update(weights="random", checkpoint=str(path))
            return entry, f"the newest student distilled from {target_label} under {root}"
    return dict(DEFAULT_DRAFT), (
        f"no student distilled from {target_label} in the results folder: the built-in "
        "tinygpt-s trained with its own recipe"
    )


def build_draft(spec: dict[str, Any], target, ctx):
    from bench.spec.registry import model_entry

    entry, params, label = model_entry(spec)
    draft = entry.fn(params, ctx).to(device=ctx.device, dtype=ctx.torch_dtype).eval()
    if draft.config.vocab_size != target.config.vocab_size:
        raise ValueError(
            f"draft {label} has a vocabulary of {draft.config.vocab_size}, the target "
            f"{target.config.vocab_size}: speculative decoding needs the same tokens"
        )
    return draft, label
