"""transformers architectures from config, and local checkpoints that are never unpickled."""

import json
import pickle

import pytest
import torch

from bench.errors import UserError
from bench.run.case import execute
from bench.run.context import CaseContext
from bench.spec import registry
from bench.spec.suite import parse_suite
from tests.conftest import TINY_MODEL

CTX = CaseContext("cpu", "float32", 0, 1, 2)


def build(name: str, **params):
    entry = registry.models.get(name)
    if name.startswith("tinygpt"):
        params = {"weights": "random", **params}
    return entry.fn(entry.params.model_validate(params), CTX).eval()


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_kv_cache_decoding_matches_the_full_forward(name):
    model = build(name)
    x = torch.randint(
        0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache(2)
        parts = [
            model(x[:, :7], cache, 0),
            *(model(x[:, i : i + 1], cache, i) for i in range(7, 12)),
        ]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-4)


def test_same_seed_same_random_weights():
    a, b = build("llama-tiny"), build("llama-tiny")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_gpt2_conv1d_layers_are_pruned_not_silently_skipped():
    model = build("gpt2-tiny")
    tech = registry.techniques.get("prune")
    model, info = tech.fn(model, tech.params(amount=0.5), CTX)
    assert info["modules_touched_by_type"] == {"Conv1D": 8}
    assert info["modules_skipped"] == {"hf.lm_head": "weight tied to an embedding"}
    c_attn = model.hf.transformer.h[0].attn.c_attn.weight
    assert (c_attn == 0).float().mean().item() == pytest.approx(0.5, abs=1e-3)


def test_config_overrides_are_checked_by_name():
    base = 'name = "t"\n[[workloads]]\nname = "forward"\n[[models]]\nname = "gpt2-tiny"\n'
    suite = parse_suite(base + "config = { n_layer = 3 }\n")
    assert suite.cases[0].model.label == "gpt2-tiny-n_layer3"
    with pytest.raises(UserError) as info:
        parse_suite(base + "config = { n_layr = 3 }\n", where="s.toml")
    assert str(info.value).startswith("s.toml: models[0].config: ")
    assert "GPT2Config has no key 'n_layr' (did you mean 'n_layer'?)" in str(info.value)


def test_local_transformers_checkpoint_loads_from_safetensors(tmp_path):
    model = build("llama-tiny")
    model.hf.save_pretrained(tmp_path / "ckpt", safe_serialization=True)
    loaded = build("hf-local", path=str(tmp_path / "ckpt"))
    x = torch.randint(0, 512, (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_builtin_model_from_a_safetensors_file(tmp_path):
    from safetensors.torch import save_model

    model = build("tinygpt-s", n_layer=1, n_embd=32, n_head=2, block_size=64)
    save_model(model, str(tmp_path / "mine.safetensors"))
    text = f"""
name = "t"
[run]
iterations = 2
energy = false
{TINY_MODEL}checkpoint = "{tmp_path / "mine.safetensors"}"
[[workloads]]
name = "forward"
seq_len = 8
"""
    case = parse_suite(text).cases[0]
    assert case.model.label == "tinygpt-s-L1-H2-E32-T64-ckpt-mine"
    r = execute(case)
    assert r.status == "ok", r.traceback


class Payload:
    """Unpickling this would create a file: the proof that something ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def pickle_with_payload(path, marker):
    path.write_bytes(pickle.dumps({"weight": Payload(marker)}))


def bad_suite(model_table: str) -> str:
    return f'name = "t"\n[[workloads]]\nname = "forward"\n[[models]]\n{model_table}\n'


def test_a_pickle_checkpoint_with_a_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    pickle_with_payload(folder / "pytorch_model.bin", marker)
    with pytest.raises(UserError) as info:
        parse_suite(bad_suite(f'name = "hf-local"\npath = "{folder}"'), where="s.toml")
    assert "has only pickle weights (pytorch_model.bin); bench never unpickles" in str(info.value)
    pickle_with_payload(tmp_path / "evil.safetensors", marker)
    with pytest.raises(UserError) as info:
        parse_suite(
            bad_suite(f'name = "tinygpt-s"\ncheckpoint = "{tmp_path / "evil.safetensors"}"'),
            where="s.toml",
        )
    assert str(info.value).startswith("s.toml: models[0].checkpoint: ")
    assert "is not a readable safetensors file" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('name = "hf-local"\npath = "/nope"', "no such checkpoint folder: /nope"),
        (
            'name = "tinygpt-s"\ncheckpoint = "/nope.safetensors"',
            "no such checkpoint file: /nope.safetensors",
        ),
    ],
)
def test_missing_checkpoints_are_one_line_user_errors(table, expected):
    with pytest.raises(UserError) as info:
        parse_suite(bad_suite(table), where="s.toml")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_corrupt_safetensors_folder_is_refused(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserError, match="is not a readable safetensors file"):
        parse_suite(bad_suite(f'name = "hf-local"\npath = "{folder}"'), where="s.toml")


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_static_cache_decoding_generates_what_the_dynamic_cache_does(name):
    from bench.telemetry.timer import PerfCounterClock
    from bench.workloads.generate import StaticDecoder, greedy_generate

    model = build(name)
    prompt = torch.randint(0, 512, (2, 6), generator=torch.Generator().manual_seed(4))
    decoder = StaticDecoder(model, 2, 6 + 8, "cpu", compiled=False)
    with torch.inference_mode():
        eager, _ = greedy_generate(model, prompt, 8, PerfCounterClock())
        for _ in range(2):  # the StaticCache is reset and reused
            out, _ = greedy_generate(model, prompt, 8, PerfCounterClock(), decoder=decoder)
            assert torch.equal(out, eager)


def test_gpt2_conv1d_layers_are_quantized_as_linears():
    model = build("gpt2-tiny")
    x = torch.randint(0, 512, (2, 8), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        ref = model(x)
    tech = registry.techniques.get("quantize")
    model, info = tech.fn(model, tech.params(scheme="int8_weight_only"), CTX)
    assert info["conv1d_as_linear"] == 8 and info["modules_touched"] == 8
    assert info["bytes_after"] < 0.5 * info["bytes_before"]
    assert type(model.hf.transformer.h[0].mlp.c_fc).__name__ == "Linear"
    with torch.inference_mode():
        torch.testing.assert_close(model(x), ref, rtol=0.05, atol=0.05)


@pytest.fixture(scope="module")
def gpt2_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "gpt2"
    build("gpt2-tiny").hf.save_pretrained(folder, safe_serialization=True)
    return folder


def _copy_with(src, dst, drop=(), add=None, config=None):
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    (file,) = dst.glob("*.safetensors")
    tensors = {k: v for k, v in load_file(str(file)).items() if k not in drop}
    tensors.update(add or {})
    save_file(tensors, str(file), metadata={"format": "pt"})
    if config:
        cfg = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps({**cfg, **config}))
    return dst


def _refused(folder) -> str:
    with pytest.raises(UserError) as info:
        parse_suite(bad_suite(f'name = "hf-local"\npath = "{folder}"'), where="s.toml")
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_checkpoint_missing_tensors_is_refused_not_randomly_filled(gpt2_ckpt, tmp_path):
    holes = _copy_with(gpt2_ckpt, tmp_path / "holes", drop=("transformer.h.0.mlp.c_fc.weight",
                                                           "transformer.ln_f.bias"))  # fmt: skip
    msg = _refused(holes)
    assert "lacks 2 tensor(s) the architecture needs" in msg and "ln_f.bias" in msg


def test_a_config_that_does_not_match_the_weights_is_refused(gpt2_ckpt, tmp_path):
    bigger = _copy_with(gpt2_ckpt, tmp_path / "bigger", config={"n_inner": 999})
    assert "the config does not match the weights' shapes" in _refused(bigger)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"n_layer": 10**7}, "num_hidden_layers = 10000000 is larger than the weights allow"),
        ({"n_embd": 0}, "hidden_size = 0: expected a positive integer"),
        ({"architectures": True}, "architectures: expected a list of class names"),
        ({"architectures": [["GPT2LMHeadModel"]]}, "architectures: expected a list of class"),
    ],
)
def test_a_config_of_impossible_sizes_is_refused_before_building(gpt2_ckpt, tmp_path, config,
                                                                  expected):  # fmt: skip
    """Found by benchmarks/fuzz.py: ten million layers took minutes and gigabytes to build
    on the meta device; the others raised from inside transformers."""
    assert expected in _refused(_copy_with(gpt2_ckpt, tmp_path / "c", config=config))


def test_an_encoder_only_checkpoint_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=37)  # fmt: skip
    BertModel(cfg).save_pretrained(tmp_path / "enc", safe_serialization=True)
    assert "holds a BertModel, not a causal language model" in _refused(tmp_path / "enc")


def test_unused_tensors_are_recorded_in_the_case_info(gpt2_ckpt, tmp_path):
    extra = _copy_with(gpt2_ckpt, tmp_path / "extra", add={"score.weight": torch.zeros(2, 2)})
    model = build("hf-local", path=str(extra))
    assert model.bench_info["unused_tensors"] == ["score.weight"]


def _tokenizer(vocab: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from bench.models.corpus import corpus_split

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["[UNK]"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator([corpus_split()[0][:50_000].decode(errors="replace")], trainer)
    return tok


def test_a_checkpoint_with_a_tokenizer_scores_held_out_text_in_bits_per_byte(gpt2_ckpt, tmp_path):
    import shutil

    from bench.workloads.quality import quality_metrics

    folder = tmp_path / "with-tok"
    shutil.copytree(gpt2_ckpt, folder)
    _tokenizer(400).save(str(folder / "tokenizer.json"))
    suite = parse_suite(bad_suite(f'name = "hf-local"\npath = "{folder}"'), where="s.toml")
    model = build("hf-local", path=str(folder))
    metrics, _ = quality_metrics(model, suite.cases[0], lambda: model, tmp_path / "refs")
    m = {x.name: x for x in metrics}
    # Random weights over 512 ids: about log2(512) = 9 bits per token, and a BPE token of
    # this tokenizer covers a few bytes, so a few bits per byte; not seeded random ids.
    assert 1.0 < m["heldout_bits_per_byte"].value < 9.0
    assert "own_tokenizer" in m["heldout_bits_per_byte"].method
    assert m["kl_to_baseline"].value == pytest.approx(0.0, abs=1e-6)  # itself, same text
    _tokenizer(600).save(str(folder / "tokenizer.json"))
    assert "has 600 tokens; the model embeds 512" in _refused(folder)


# --- non-finite weights (issue 29) --------------------------------------------------------


def _poisoned(tensor: torch.Tensor, at: dict[tuple[int, int], float]) -> torch.Tensor:
    t = tensor.clone()
    for index, value in at.items():
        t[index] = value
    return t


@pytest.fixture(autouse=True)
def scan_cache(tmp_path, monkeypatch):
    """Checkpoint scans' verdicts cached in a folder of each test's own, not the user's."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


UP = "transformer.h.0.mlp.c_fc.weight"


@pytest.mark.parametrize(
    ("values", "holds"),
    [
        ({(3, 5): float("nan")}, "holds 1 NaN value"),
        ({(0, 0): float("inf"), (7, 1): float("-inf")}, "holds 2 infinite values"),
    ],
)
def test_a_checkpoint_with_non_finite_weights_is_refused_naming_the_tensor(
    gpt2_ckpt, tmp_path, capsys, values, holds
):
    from safetensors.torch import load_file

    from bench.cli import main

    (file,) = gpt2_ckpt.glob("*.safetensors")
    up = load_file(str(file))[UP]
    bad = _copy_with(gpt2_ckpt, tmp_path / "bad", add={UP: _poisoned(up, values)})
    suite = tmp_path / "s.toml"
    suite.write_text(bad_suite(f'name = "hf-local"\npath = "{bad}"'))
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"bench: error: {suite}: models[0].path: {bad / file.name}: tensor '{UP}' {holds}\n"
    )
    assert main(["validate", str(suite)]) == 2  # again: the cached verdict, same line
    assert capsys.readouterr().err == err


def test_a_builtin_model_checkpoint_file_with_a_nan_is_refused(tmp_path):
    from safetensors.torch import save_model

    model = build("tinygpt-s", n_layer=1, n_embd=32, n_head=2, block_size=64)
    with torch.no_grad():
        model.lm_head.weight[2, 3] = float("nan")
    save_model(model, str(tmp_path / "mine.safetensors"))
    with pytest.raises(UserError) as info:
        parse_suite(
            bad_suite(f'name = "tinygpt-s"\ncheckpoint = "{tmp_path / "mine.safetensors"}"'),
            where="s.toml",
        )
    assert str(info.value).endswith("holds 1 NaN value") and "\n" not in str(info.value)
    assert "mine.safetensors: tensor '" in str(info.value)


def test_a_scan_verdict_is_cached_per_file_path_size_and_mtime(tmp_path, monkeypatch):
    import os

    from safetensors.torch import save_file

    from bench.models import finite

    monkeypatch.setattr(finite, "_DISK_CACHE_MIN_BYTES", 0)  # cache on disk even a tiny file
    monkeypatch.setattr(finite, "_scanned", {})
    file = tmp_path / "w.safetensors"
    save_file({"w": torch.tensor([1.0, float("nan")])}, str(file))
    assert finite.nonfinite_problem(file) == "tensor 'w' holds 1 NaN value"
    scan = finite._scan
    monkeypatch.setattr(finite, "_scanned", {})  # a new process: the verdict comes from disk
    monkeypatch.setattr(finite, "_scan", lambda f: pytest.fail("scanned again"))
    assert finite.nonfinite_problem(file) == "tensor 'w' holds 1 NaN value"
    monkeypatch.setattr(finite, "_scan", scan)
    save_file({"w": torch.tensor([1.0, 2.0])}, str(file))  # same size, new contents
    os.utime(file, ns=(1, 1))  # and a modification time no scan has seen
    assert finite.nonfinite_problem(file) is None


def test_a_checkpoint_too_large_to_scan_fails_its_case_on_non_finite_outputs(
    gpt2_ckpt, tmp_path, monkeypatch
):
    from safetensors.torch import load_file

    from bench.models import finite

    (file,) = gpt2_ckpt.glob("*.safetensors")
    up = load_file(str(file))[UP]
    bad = _copy_with(gpt2_ckpt, tmp_path / "bad", add={UP: _poisoned(up, {(3, 5): float("nan")})})
    monkeypatch.setattr(finite, "SCAN_LIMIT_BYTES", 0)  # every checkpoint is "too large"
    text = f"""
name = "t"
[run]
iterations = 2
energy = false
quality = false
[[models]]
name = "hf-local"
path = "{bad}"
[[workloads]]
name = "forward"
seq_len = 8
"""
    case = parse_suite(text).cases[0]  # validation skipped the scan
    r = execute(case)
    assert r.status == "failed" and r.metrics == []
    assert r.error.startswith("NonFiniteOutputs: model outputs are not finite: ")
    assert "check the checkpoint's weights" in r.error and "over the 0 GiB" in r.error
    ok = execute(parse_suite(text.replace(str(bad), str(gpt2_ckpt))).cases[0])
    assert ok.status == "ok", ok.traceback  # finite weights pass the same probe
    assert ok.info["model"]["weights_scan"].startswith("skipped: ")


# --- a quiet console (issue 29) -----------------------------------------------------------

NOISE = ("torchao", "_pytree", "Failed to load", "Enum subclass")


def test_validating_a_local_checkpoint_keeps_library_chatter_off_the_console(gpt2_ckpt, tmp_path):
    """A fresh interpreter: the first import of transformers' modeling code (which imports
    torchao) happens while the checkpoint is checked against its architecture."""
    import subprocess
    import sys

    suite = tmp_path / "s.toml"
    suite.write_text(bad_suite(f'name = "hf-local"\npath = "{gpt2_ckpt}"'))
    code = (
        "import sys; from bench.cli import main; from bench.models import quiet; "
        f"rc = main(['validate', {str(suite)!r}]); "
        "open(sys.argv[1], 'w').write('\\n'.join(quiet.kept)); sys.exit(rc)"
    )
    kept = tmp_path / "kept.txt"
    env = {**__import__("os").environ, "BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code, str(kept)], capture_output=True,
                          text=True, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{suite}: ok, 1 cases x 3 repeats\n"
    # (transformers' own notes on the checkpoint's config stay: they are about the user's files)
    assert not any(word in proc.stderr for word in NOISE), proc.stderr
    # Here torchao's optional kernels do not load and torch deprecates its Enum registrations:
    # what would have been printed was kept for the log.
    assert any(word in kept.read_text() for word in NOISE)


def test_kept_chatter_goes_to_the_run_log_and_to_validate_verbose(
    tmp_path, capfd, monkeypatch, write_suite
):
    import logging
    import warnings

    from bench import cli
    from bench.cli import run as cli_run
    from bench.models import quiet

    monkeypatch.setattr(quiet, "kept", [])
    torchao = logging.getLogger("torchao")
    before = (torchao.propagate, list(torchao.handlers))
    with quiet.quiet():
        logging.getLogger("torchao.kernel").warning("Failed to load _C_test.so")
        logging.getLogger("torch.utils._pytree").warning("Enum subclass is deprecated")
        warnings.warn("a library's deprecation", FutureWarning, stacklevel=1)
    assert (torchao.propagate, list(torchao.handlers)) == before  # restored
    out, err = capfd.readouterr()
    assert not any(word in out + err for word in (*NOISE, "deprecation"))
    cli_run._keep_log(tmp_path / "run")
    log = (tmp_path / "run" / "logs" / "bench.log").read_text()
    assert "WARNING torchao.kernel: Failed to load _C_test.so" in log
    assert "torch.utils._pytree: Enum subclass" in log and "FutureWarning" in log
    assert quiet.kept == []  # written once: the next run's log does not repeat it
    with quiet.quiet():
        logging.getLogger("torchao.kernel").warning("Failed to load _C_test.so")
    suite = write_suite('name = "t"\n[[workloads]]\nname = "forward"\n' + TINY_MODEL)
    assert cli.main(["validate", "-v", str(suite)]) == 0
    assert "Failed to load _C_test.so" in capfd.readouterr().err
