"""torch.compile: the model is compiled lazily, on its first call.

That first call lands in the workload's warm-up, so its cost is reported apart as
``compile_time`` (first warm-up call minus the steady-state median), never mixed into
steady-state latency, and tagged with the inductor cache's state (empty, or holding
earlier cases' kernels: a repeat of the same case then mostly loads, another model still
compiles its own graphs). The
inductor cache lives in the run's folder, so one run's cases share it and nothing leaks
into the user's home. A recompile below dynamo's limit is allowed (its time lands in
warm-up); hitting the limit fails the case rather than silently falling back to eager.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from bench.spec.registry import Params, register_technique


class CompileParams(Params):
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = (
        "default"
    )
    backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    fullgraph: bool = False  # True: a graph break is an error instead of a silent split


def _label(p: CompileParams) -> str:
    parts = ["compile", p.mode] + ([p.backend] if p.backend != "inductor" else [])
    return "-".join(parts)


def prepare_compile(run_dir: str | None) -> tuple[str | None, str]:
    """What every torch.compile of a case needs: the inductor cache in the run's folder
    (when there is one) and a recompile limit that fails loudly. Returns the cache path and
    its state before this case: "empty" (this case compiles from scratch) or "non-empty"
    (earlier cases or repeats left kernels there), so compile times are never compared
    across the two unknowingly."""
    import torch

    state = "unknown (no run folder: the user's inductor cache)"
    if run_dir:
        cache = Path(run_dir) / "inductor-cache"
        cache.mkdir(parents=True, exist_ok=True)
        state = "non-empty" if any(cache.iterdir()) else "empty"
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    return os.environ.get("TORCHINDUCTOR_CACHE_DIR"), state


# The modes under which inductor captures CUDA graphs (on a GPU); it may skip them.
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


@register_technique(
    "compile",
    params=CompileParams,
    label=_label,
    lazy_cost="compile_time",
    cuda_graphs=lambda p: p.mode in CUDA_GRAPH_MODES and p.backend == "inductor",
)
def apply_compile(model, params: CompileParams, ctx):
    """Wrap the model in torch.compile; compilation happens on the first call."""
    import torch

    cache, state = prepare_compile(ctx.run_dir)
    # The wrapper forwards attribute lookups (config, new_cache) to the model it wraps.
    compiled = torch.compile(
        model, mode=params.mode, backend=params.backend, fullgraph=params.fullgraph
    )
    return compiled, {
        "modules_touched": 1,
        "modules_candidates": 1,
        "inductor_cache": cache,
        "inductor_cache_state": state,
        "recompile_limit_fails_case": True,
    }
