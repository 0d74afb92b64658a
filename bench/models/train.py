"""Training the built-in GPT on the pydoc corpus, cached by what determines the weights.

The cache key hashes the model config, the training config, the corpus and the torch
version; weights are stored as safetensors (never a pickle) with the training record in
the file's metadata, written atomically. A second run with the same key trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.atomic import atomic_path
from bench.cache import cache_dir
from bench.models.corpus import as_tensor, corpus_sha256, corpus_split, evenly_spaced


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 500  # optimizer steps: ~1 minute for tinygpt-s on 2 CPU cores
    batch: int = 16  # sequences per step
    seq_len: int = 128  # tokens per sequence; positions beyond it stay untrained
    lr: float = 3e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 0.01
    seed: int = 0


# Each built-in size's own recipe: a larger model needs more steps (and a gentler peak lr)
# before it is really better than the smaller one, so a teacher beats its student.
RECIPES: dict[str, TrainConfig] = {
    "tinygpt-s": TrainConfig(),  # 0.85M parameters, ~1.5 min on 2 CPU cores
    "tinygpt-m": TrainConfig(steps=1500, lr=1e-3),  # 11M, ~30 min on 2 CPU cores
    "tinygpt-l": TrainConfig(steps=3000, batch=32, seq_len=256, lr=6e-4),  # 86M: a GPU's
}


def recipe(name: str, steps: int | None = None) -> TrainConfig:
    """``name``'s training recipe, with ``steps`` in place of its own when given."""
    base = RECIPES.get(name, TrainConfig())
    return replace(base, steps=steps) if steps else base


def cache_path(name: str, model_cfg: Any, train_cfg: TrainConfig, device: str = "cpu") -> Path:
    import torch

    key = json.dumps(
        {
            "model": asdict(model_cfg),
            "train": asdict(train_cfg),
            "corpus": corpus_sha256(),
            "torch": torch.__version__.split("+")[0],
            "device": device.split(":")[0],  # CPU and GPU arithmetic give different weights
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{name}-{digest}.safetensors"


def held_out_nats_per_byte(
    model,
    seq_len: int,
    batch: int = 32,
    max_bytes: int | None = None,
    windows: int | None = None,
) -> float:
    """Mean next-byte cross-entropy over the held-out split in non-overlapping windows;
    with ``windows``, over that many of them evenly spaced across the split (every topic
    is still represented), to bound the cost."""
    import torch
    import torch.nn.functional as F

    _, held = corpus_split()
    data = as_tensor(held[: max_bytes + 1] if max_bytes else held)
    device = next(model.parameters()).device
    n = (len(data) - 1) // seq_len * seq_len
    x = data[:n].view(-1, seq_len)
    y = data[1 : n + 1].view(-1, seq_len)
    pick = evenly_spaced(len(x), windows)
    x, y = x[pick], y[pick]
    n = len(pick) * seq_len
    total = 0.0
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            logits = model(x[i : i + batch].to(device)).float()
            total += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                y[i : i + batch].reshape(-1).to(device),
                reduction="sum",
            ).item()
    return total / n


def train(model, cfg: TrainConfig, progress=None) -> dict[str, Any]:
    """Train ``model`` in place on the train split; returns the training record."""
    import torch
    import torch.nn.functional as F

    train_bytes, _ = corpus_split()
    device = next(model.parameters()).device
    data = as_tensor(train_bytes).to(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1
    )
    offsets = torch.arange(cfg.seq_len + 1, device=device)
    model.train()
    t0 = time.perf_counter()
    losses = []
    for step in range(cfg.steps):
        starts = torch.randint(0, len(data) - cfg.seq_len - 1, (cfg.batch, 1), generator=gen)
        starts = starts.to(device)
        window = data[starts + offsets]
        logits = model(window[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, cfg.steps, loss.item() / math.log(2))
    seconds = time.perf_counter() - t0
    model.eval()
    return {
        "train_seconds": seconds,
        "train_threads": torch.get_num_threads(),
        "final_train_bits_per_byte": sum(losses[-20:]) / len(losses[-20:]) / math.log(2),
        "held_out_bits_per_byte": held_out_nats_per_byte(model, cfg.seq_len) / math.log(2),
    }


SHIPPED = Path(__file__).parent / "weights"  # trained weights that ship with the package
SHIP_HALF = {"tinygpt-m"}  # stored as float16 (loading casts back to the model's dtype)


def shipped_path(name: str) -> Path:
    return SHIPPED / f"{name}-pydoc.safetensors"


def _shipped_key(model_cfg: Any, train_cfg: TrainConfig) -> dict[str, Any]:
    return {"model": asdict(model_cfg), "train": asdict(train_cfg), "corpus": corpus_sha256()}


def load_shipped(name: str, model, train_cfg: TrainConfig) -> dict[str, Any] | None:
    """Fill ``model`` with the weights shipped in the package when they are exactly what
    was asked for (same shape, training recipe and corpus); None otherwise.

    Shipped weights make every machine measure the same model: seeded CPU training is not
    bit-reproducible from run to run (three trainings landed 0.05 bits/byte apart), so
    weights trained on each machine would differ."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    path = shipped_path(name)
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    if json.loads(meta["key"]) != _shipped_key(model.config, train_cfg):
        return None
    load_model(model, str(path))
    return {**json.loads(meta["record"]), "cached": True, "shipped": True, "path": str(path)}


def ship(name: str, model, train_cfg: TrainConfig, progress=None) -> dict[str, Any]:
    """The recipe of the shipped weights: train ``model`` on the CPU and write it (with its
    key and training record) to ``shipped_path(name)``. Run by
    ``python -m bench.models.train tinygpt-s``."""
    import torch
    from safetensors.torch import save_model

    record = train(model.cpu(), train_cfg, progress)
    if name in SHIP_HALF:
        # Rounded to float16 in place before scoring, so the record describes the very
        # weights that ship (half the bytes in the repository: 22 MB for tinygpt-m).
        model.half().float()
        record["held_out_bits_per_byte"] = held_out_nats_per_byte(model, train_cfg.seq_len) / (
            math.log(2)
        )
        model.half()
    meta = {
        "key": json.dumps(_shipped_key(model.config, train_cfg), sort_keys=True),
        "record": json.dumps({**record, "trained_on": "cpu", "torch": torch.__version__}),
    }
    with atomic_path(shipped_path(name)) as tmp:
        save_model(model, str(tmp), metadata=meta)
    model.float()
    return record


def load_or_train(
    name: str, model, train_cfg: TrainConfig, progress=None, device: str = "cpu"
) -> dict[str, Any]:
    """Fill ``model`` with trained weights: the shipped ones when they fit, else cached
    ones, else train (and cache) them on ``device``. Returns the training record;
    ``cached`` says whether it trained, ``shipped`` whether the weights came with bench."""
    from safetensors import safe_open
    from safetensors.torch import load_model, save_model

    shipped = load_shipped(name, model, train_cfg)
    if shipped is not None:
        return shipped
    path = cache_path(name, model.config, train_cfg, device)
    if path.exists():
        load_model(model, str(path))
        with safe_open(str(path), framework="pt") as f:
            record = json.loads(f.metadata()["record"])
        return {**record, "cached": True, "path": str(path)}
    record = train(model.to(device), train_cfg, progress)
    model.cpu()
    with atomic_path(path) as tmp:
        save_model(model, str(tmp), metadata={"record": json.dumps(record)})
    return {**record, "cached": False, "path": str(path)}


if __name__ == "__main__":
    import sys

    import torch

    from bench.models import TINYGPT_SIZES, TinyGPTOverrides, tinygpt_config
    from bench.models.tinygpt import GPT

    for arg in sys.argv[1:] or ["tinygpt-s"]:
        torch.manual_seed(0)
        size = arg.removeprefix("tinygpt-")
        assert size in TINYGPT_SIZES, arg
        net = GPT(tinygpt_config(size, TinyGPTOverrides(weights="pydoc")))
        rec = ship(
            arg,
            net,
            recipe(arg),
            lambda i, n, bits: print(i, n, f"{bits:.3f}", flush=True) if i % 50 == 0 else None,
        )
        print(f"{arg}: {rec['held_out_bits_per_byte']:.4f} bits/byte -> {shipped_path(arg)}")
