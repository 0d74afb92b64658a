"""The pieces of the ``train`` workload's loop: a fixed data order, one optimizer step
(gradient accumulation, bf16 autocast, clipping, the lr schedule), and the bytes that
training holds (gradients, optimizer state, saved activations)."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from bench.errors import Diverged


@dataclass
class Batches:
    """Micro-batch ``i`` is the same tensor for a given seed whatever the optimizer: two
    cases see the same data in the same order. Byte-level models read windows of the pydoc
    train split (the held-out split is never read); others get seeded random token ids."""

    vocab: int
    batch: int
    seq_len: int
    seed: int
    device: str
    data: Any = None  # the train split as one tensor of byte ids (byte-level models)
    shard: tuple[int, int] = (0, 1)  # (rank, world): rank r reads micro-batches r, r+world, ...

    def __post_init__(self) -> None:
        import torch

        if self.vocab == 256:
            from bench.models.corpus import as_tensor, corpus_split

            self.data = as_tensor(corpus_split()[0])
        self._offsets = torch.arange(self.seq_len + 1)

    def __call__(self, i: int):
        """(inputs, next-token targets) of micro-batch ``i`` (of this rank's slice)."""
        import torch

        i = i * self.shard[1] + self.shard[0]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        if self.data is None:
            window = torch.randint(0, self.vocab, (self.batch, self.seq_len + 1), generator=gen)
        else:
            high = len(self.data) - self.seq_len - 1
            starts = torch.randint(0, high, (self.batch, 1), generator=gen)
            window = self.data[starts + self._offsets]
        window = window.to(self.device)
        return window[:, :-1], window[:, 1:]


@dataclass
class Stepper:
    """One optimizer step of ``model`` over ``accum`` micro-batches; ``teacher`` (a
    techniques.distill.Teacher) turns the loss into the distillation loss."""

    model: Any
    optimizers: list[Any]
    batches: Batches
    accum: int = 1
    autocast: str = "none"
    clip: float | None = 1.0
    teacher: Any = None
    schedulers: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        import torch

        self.params = [p for p in self.model.parameters() if p.requires_grad]
        device = self.batches.device.split(":")[0]
        self.autocast_context = (
            (lambda: torch.autocast(device, dtype=torch.bfloat16))
            if self.autocast == "bfloat16"
            else nullcontext
        )

    def teacher_logits(self, step: int) -> list[Any]:
        """The teacher's logits for each micro-batch of ``step`` (no gradients), or []."""
        import torch

        if self.teacher is None:
            return []
        out = []
        with torch.inference_mode():
            for j in range(self.accum):
                x, _ = self.batches(step * self.accum + j)
                with self.autocast_context():
                    out.append(self.teacher.model(x))
        return out

    def loss(self, logits, targets, teacher_logits):
        """(the objective, its cross-entropy on the data): the same for plain training."""
        import torch.nn.functional as F

        if teacher_logits is not None:
            return self.teacher.loss(logits, teacher_logits, targets)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        return ce, ce

    def __call__(self, step: int, teacher: list[Any]) -> tuple[float, float]:
        """Run step ``step``; returns its mean objective and mean cross-entropy (nats per
        token): a distilled student's progress is read from the latter, as a scratch one's."""
        import torch

        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        total = ce = 0.0
        for j in range(self.accum):
            x, y = self.batches(step * self.accum + j)
            with self.autocast_context():
                logits = self.model(x)
            loss, hard = self.loss(logits, y, teacher[j] if teacher else None)
            (loss / self.accum).backward()
            total += loss.item() / self.accum
            ce += hard.item() / self.accum
        if not math.isfinite(total):
            raise Diverged(step + 1, total)
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        for opt in self.optimizers:
            opt.step()
        for sched in self.schedulers:
            sched.step()
        return total, ce


def local(t):
    """This rank's part of a sharded tensor (DTensor: FSDP, tensor parallel), else ``t``."""
    return t.to_local() if hasattr(t, "to_local") else t


def tensor_bytes(tensors) -> int:
    """Bytes of distinct storages among ``tensors`` (a tied weight counts once); of a
    sharded tensor (DTensor: FSDP, tensor parallel), this rank's shard."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t is not None:
            t = local(t)
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def activation_bytes(model, x, autocast) -> int:
    """Bytes the forward pass of one micro-batch saves for the backward pass: what
    autograd packs (torch.autograd.graph.saved_tensors_hooks), each storage once,
    parameters excluded. The graph is dropped without a backward: nothing is trained."""
    import torch

    params = {local(p).untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and storage.device.type != "meta":
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    with hooks, torch.enable_grad(), autocast():
        out = model(x)
    del out
    return sum(saved.values())
