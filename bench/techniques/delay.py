"""A known slowdown on purpose: a sleep before every forward call of the model.

Not an optimization: an instrument to check that a gate catches what it should (a
calibrated +10% regression for ``benchmarks/gates.py``, or a canary in a user's own
pipeline). Sleeping keeps the CPU idle, so the delay adds to wall time without
competing with the model's threads.
"""

from __future__ import annotations

from pydantic import Field

from bench.spec.registry import Params, register_technique


class DelayParams(Params):
    seconds: float = Field(gt=0, le=60)  # slept before each forward call


@register_technique("delay", params=DelayParams, label=lambda p: f"delay-{p.seconds:g}s")
def apply_delay(model, params: DelayParams, ctx):
    """Sleeps ``seconds`` before each call of the model's forward."""
    import time

    seconds = params.seconds
    model.register_forward_pre_hook(lambda module, args: time.sleep(seconds))
    return model, {"sleep_per_forward_s": seconds}
