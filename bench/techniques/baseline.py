"""The unoptimized model: the reference every other technique is compared with."""

from bench.spec.registry import NoParams, register_technique


@register_technique("baseline", params=NoParams, label=lambda p: "baseline")
def apply_baseline(model, params: NoParams, ctx):
    """Leaves the model as built."""
    return model, {}
