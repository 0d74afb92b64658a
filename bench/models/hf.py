"""transformers architectures built from config: random weights, seeded, no download;
and local transformers checkpoints (config.json + safetensors, never a pickle).

transformers is imported only when such a model is validated or built. Nothing is ever
fetched from a model hub, and the importing process's environment is left alone: configs
are built here, and every load from disk passes ``local_files_only=True`` (case processes
also run with the hub switched off: ``bench.run.offline``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from bench.models.finite import check_weights_finite, too_large_to_scan
from bench.models.quiet import quiet
from bench.spec.registry import Params, register_model

# family -> transformers config class; each named shape is a family plus config values.
FAMILIES = {"gpt2": "GPT2Config", "llama": "LlamaConfig"}
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    # CPU-sized, for tests and smoke checks.
    "gpt2-tiny": ("gpt2", dict(n_layer=2, n_head=4, n_embd=128, n_positions=256, vocab_size=512)),
    "llama-tiny": (
        "llama",
        dict(
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            hidden_size=128,
            intermediate_size=352,
            vocab_size=512,
            max_position_embeddings=256,
        ),
    ),
    # CPU-sized but wide enough to be worth splitting over ranks (suites/parallel.toml).
    "llama-12m-shape": (
        "llama",
        dict(
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=4,
            hidden_size=512,
            intermediate_size=1408,
            vocab_size=512,
            max_position_embeddings=256,
        ),
    ),
    # The deployed shapes, for GPUs: GPT-2 small, a 1.1B Llama (TinyLlama), Llama-3-8B.
    "gpt2-small-shape": ("gpt2", dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024)),
    "llama-1b-shape": (
        "llama",
        dict(
            num_hidden_layers=22,
            num_attention_heads=32,
            num_key_value_heads=4,
            hidden_size=2048,
            intermediate_size=5632,
            vocab_size=32000,
            max_position_embeddings=2048,
        ),
    ),
    "llama-8b-shape": (
        "llama",
        dict(
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            hidden_size=4096,
            intermediate_size=14336,
            vocab_size=128256,
            max_position_embeddings=8192,
            rope_theta=500000.0,
        ),
    ),
}


def _config_class(family: str):
    import transformers

    return getattr(transformers, FAMILIES[family])


class ConfigOverrides(Params):
    """``config = { n_layer = 4 }``: values for the transformers config, checked by name."""

    config: dict[str, int | float | bool | str] = Field(default_factory=dict)


def _check_keys(family: str, keys) -> None:
    with quiet():  # validation imports transformers: its imports' chatter goes to the log
        known = set(_config_class(family)().to_dict())
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{FAMILIES[family]} has no key {key!r}{hint}")


def _register_shape(name: str, family: str, values: dict[str, Any]) -> None:
    class Shape(ConfigOverrides):
        @field_validator("config")
        @classmethod
        def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
            _check_keys(family, v)
            return v

    def build(params: ConfigOverrides, ctx: Any):
        import torch
        from transformers import AutoModelForCausalLM

        from bench.models.causal_lm import CausalLM

        torch.manual_seed(ctx.seed)
        config = _config_class(family)(**{**values, **params.config})
        return CausalLM(AutoModelForCausalLM.from_config(config))

    def attention_heads(params: ConfigOverrides) -> tuple[str, dict[str, int]]:
        """(tensor-parallel layout, head counts a split must divide), from the config keys
        alone: no transformers import at load time."""
        c = {**values, **params.config}
        heads = c.get("num_attention_heads", c.get("n_head"))
        counts = {"attention heads": heads, "key/value heads": c.get("num_key_value_heads")}
        return family, {k: v for k, v in counts.items() if v is not None}

    build.__doc__ = f"transformers {FAMILIES[family]} with random weights: {values}"
    register_model(
        name,
        params=Shape,
        label=lambda p: "-".join([name, *(f"{k}{v}" for k, v in sorted(p.config.items()))]),
        preload=("transformers",),
        attention_heads=attention_heads,
    )(build)


for _name, (_family, _values) in SHAPES.items():
    _register_shape(_name, _family, _values)


# --- local checkpoints --------------------------------------------------------------------


class LocalCheckpoint(Params):
    path: str  # a transformers-format folder: config.json plus *.safetensors

    @field_validator("path")
    @classmethod
    def _safe_checkpoint(cls, v: str) -> str:
        check_checkpoint_dir(Path(v))
        return v


def check_checkpoint_dir(path: Path) -> None:
    """Refuse, before anything is loaded, what bench cannot load safely."""
    if not path.exists():
        raise ValueError(f"no such checkpoint folder: {path}")
    if not path.is_dir():
        raise ValueError(
            f"{path} is a file; a transformers checkpoint is a folder with config.json"
        )
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json")
    if not list(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(
            p.name for p in path.glob("*.pt")
        )
        what = (
            f"only pickle weights ({', '.join(pickles)})" if pickles else "no *.safetensors weights"
        )
        raise ValueError(f"{path} has {what}; bench never unpickles: convert to safetensors")
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                shapes.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})  # noqa: SIM118
        except Exception as e:  # corrupt or not safetensors at all
            raise ValueError(f"{file} is not a readable safetensors file ({e})") from None
    check_checkpoint_fits(path, shapes)
    check_weights_finite(files)  # a NaN weight: refused here, naming the tensor


CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")


# Sizes a config names that no weight can be smaller than: a config larger than its
# weights in any of them does not describe them, and building it would take as long (and,
# through the initialisers transformers runs, as much memory) as the model it claims.
SIZE_KEYS = ("num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size",
             "num_attention_heads", "num_key_value_heads", "head_dim")  # fmt: skip


def _sizes_fit(path: Path, config: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    largest = max((d for shape in shapes.values() for d in shape), default=0)
    for key in SIZE_KEYS:
        value = getattr(config, key, None)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{path}/config.json: {key} = {value!r}: expected a positive integer")
        bound = len(shapes) if key == "num_hidden_layers" else largest
        if value > bound:
            raise ValueError(
                f"{path}/config.json: {key} = {value} is larger than the weights allow "
                f"({len(shapes)} tensors, largest dimension {largest}): the config does not "
                "describe these weights"
            )


def _expected_shapes(path: Path, shapes: dict[str, tuple[int, ...]]):
    """The config, and each parameter the architecture needs as a group of names that
    share one tensor (tied weights) with its shape, from a model built on the meta device
    (no memory, no random init)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as e:  # unknown model_type, malformed JSON
        raise ValueError(f"{path}/config.json cannot be read by transformers ({e})") from None
    archs = getattr(config, "architectures", None) or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ValueError(f"{path}/config.json: architectures: expected a list of class names")
    if archs and not any(a.endswith(CAUSAL_LM_SUFFIXES) for a in archs):
        raise ValueError(
            f"{path} holds a {', '.join(archs)}, not a causal language model; bench's "
            "workloads drive next-token prediction (an encoder would get a random LM head)"
        )
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"{path} is an encoder-decoder model; bench drives decoder-only LMs")
    _sizes_fit(path, config, shapes)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except ValueError as e:
        raise ValueError(f"{path}: {config.model_type} is not a causal LM ({e})") from None
    except Exception as e:  # a config.json's values reach code that trusts them
        raise ValueError(
            f"{path}/config.json: transformers cannot build a {config.model_type} from it "
            f"({type(e).__name__}: {e})"
        ) from None
    groups: dict[int, list[str]] = {}
    shape_of: dict[int, tuple[int, ...]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
        shape_of[id(p)] = tuple(p.shape)
    return config, [(names, shape_of[i]) for i, names in groups.items()]


def check_checkpoint_fits(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse weights that do not cover their architecture (a missing tensor would be
    randomly initialised and pose as the checkpoint) or do not match its shapes, and a
    tokenizer whose ids the model has no embeddings for."""
    with quiet():  # the first import of transformers' modeling code: torchao's chatter
        config, expected = _expected_shapes(path, shapes)
    if (path / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        vocab = Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab_size()
        if vocab > config.vocab_size:
            raise ValueError(
                f"{path}/tokenizer.json has {vocab} tokens; the model embeds {config.vocab_size}"
            )
    missing, wrong = [], []
    for names, shape in expected:
        present = [n for n in names if n in shapes]
        if not present:
            missing.append(names[0])
        elif shapes[present[0]] != shape:
            wrong.append(f"{present[0]} {list(shapes[present[0]])} (config: {list(shape)})")
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ValueError(
            f"{path} lacks {len(missing)} tensor(s) the architecture needs "
            f"({', '.join(missing[:3])}{more}); they would be random, not the checkpoint"
        )
    if wrong:
        raise ValueError(f"{path}: the config does not match the weights' shapes: {wrong[0]}")


def unused_tensors(path: Path, model) -> list[str]:
    """Tensors of the checkpoint that the loaded model does not hold (kept in case info)."""
    from safetensors import safe_open

    known = set(model.state_dict())
    found = []
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            found += [k for k in f.keys() if k not in known]  # noqa: SIM118
    return found


@register_model(
    "hf-local",
    params=LocalCheckpoint,
    label=lambda p: f"hf-local-{Path(p.path).name}",
    preload=("transformers",),
)
def build_local(params: LocalCheckpoint, ctx: Any):
    """A local transformers checkpoint folder, weights from safetensors only, offline."""
    from transformers import AutoModelForCausalLM

    from bench.models.causal_lm import CausalLM

    if not Path(params.path).is_dir():
        # transformers would take the path for a hub repository id and call the hub (even
        # with local_files_only, huggingface_hub asks it for its user-agent registry).
        raise ValueError(f"no such checkpoint folder: {params.path}")
    hf = AutoModelForCausalLM.from_pretrained(
        params.path, local_files_only=True, use_safetensors=True
    )
    model = CausalLM(hf)
    tokenizer = Path(params.path) / "tokenizer.json"
    # Held-out quality then scores the held-out text through the checkpoint's tokenizer.
    model.tokenizer_file = str(tokenizer) if tokenizer.is_file() else None
    # Too large for validation's scan of the weights: the case checks the outputs instead.
    skipped = too_large_to_scan(Path(params.path).glob("*.safetensors"))
    model.unscanned_weights = skipped
    model.bench_info = {
        "checkpoint": params.path,
        "tokenizer": model.tokenizer_file,
        "unused_tensors": unused_tensors(Path(params.path), hf),
        "weights_scan": f"skipped: {skipped}" if skipped else "no NaN or infinite values",
    }
    return model
