"""The text every CPython ships: the documentation topics in ``pydoc_data.topics``.

About 465 KB of English prose about Python, as bytes. The split is deterministic: the
last 10% of every topic is held out, so every subject appears on both sides and no
held-out byte is ever trained on.
"""

from __future__ import annotations

import hashlib
from functools import cache

HELD_OUT_FRACTION = 0.1


@cache
def corpus_split() -> tuple[bytes, bytes]:
    """(train, held_out) bytes of the pydoc topics, topics in sorted order."""
    from pydoc_data.topics import topics

    docs = [topics[k].encode() for k in sorted(topics)]
    cuts = [int(len(d) * (1 - HELD_OUT_FRACTION)) for d in docs]
    train = b"\n".join(d[:c] for d, c in zip(docs, cuts, strict=True))
    held = b"\n".join(d[c:] for d, c in zip(docs, cuts, strict=True))
    return train, held


def corpus_sha256() -> str:
    train, held = corpus_split()
    return hashlib.sha256(train + b"\0" + held).hexdigest()


def bigram_bits_per_byte() -> float:
    """Held-out bits per byte of an add-one-smoothed byte bigram model of the train split:
    the bar a trained model must clearly clear."""
    import numpy as np

    train, held = corpus_split()
    tr = np.frombuffer(train, dtype=np.uint8).astype(np.int64)
    he = np.frombuffer(held, dtype=np.uint8).astype(np.int64)
    counts = np.ones((256, 256))
    np.add.at(counts, (tr[:-1], tr[1:]), 1)
    probs = counts / counts.sum(axis=1, keepdims=True)
    return float(-np.log2(probs[he[:-1], he[1:]]).mean())


def as_tensor(data: bytes):
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def evenly_spaced(count: int, windows: int | None):
    """Indices of ``windows`` of ``count`` held-out windows, evenly spaced so that every
    topic is represented; all of them when ``windows`` is None or not smaller."""
    import torch

    if windows is None or windows >= count:
        return torch.arange(count)
    return torch.linspace(0, count - 1, windows).round().long()
