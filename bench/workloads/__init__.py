"""Workloads: what is measured on a model. Each registers a params schema and a runner."""

from collections.abc import Callable


def vocab_size(model) -> int:
    """Token ids must stay below this; every supported model carries it in its config."""
    return int(model.config.vocab_size)


def random_tokens(model, ctx, batch: int, length: int):
    import torch

    ids = torch.randint(0, vocab_size(model), (batch, length), generator=ctx.generator())
    return ids.to(ctx.device)


def inference(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run under torch.inference_mode: no autograd bookkeeping in what is timed."""
    import torch

    def call() -> object:
        with torch.inference_mode():
            return fn()

    return call
