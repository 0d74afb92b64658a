"""Workloads: what is measured on a model. Each registers a params schema and a runner."""


def vocab_size(model) -> int:
    """Token ids must stay below this; every supported model carries it in its config."""
    return int(model.config.vocab_size)


def random_tokens(model, ctx, batch: int, length: int):
    import torch

    ids = torch.randint(0, vocab_size(model), (batch, length), generator=ctx.generator())
    return ids.to(ctx.device)
