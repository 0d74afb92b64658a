"""The CUDA paths, on CPU: each with a fake that behaves like the library it stands for
(NVML's per-process list, torch's caching allocator, CUDA's fork rule, transformers'
forward signatures, inductor's CUDA-graph skips)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from bench.telemetry import cuda_probe
from bench.telemetry import nvml as nvml_mod
from bench.telemetry.memory import MemoryMonitor
from bench.telemetry.nvml import Nvml
from tests.fake_nvml import FakeNVML

# --- CUDA is asked about without initialising it -------------------------------------------


@pytest.fixture
def cuda_build(monkeypatch):
    """A CUDA build of torch on a machine with one GPU, where initialising CUDA (what
    ``torch.cuda.is_available`` does) is an error: a forked child could not use it."""

    def poisons_fork(*_):
        raise AssertionError("initialised CUDA in a process that forks")

    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", poisons_fork)
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", poisons_fork, raising=False)
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: 1)
    cuda_probe._count_without_init.cache_clear()
    yield monkeypatch
    cuda_probe._count_without_init.cache_clear()


def test_cuda_is_probed_through_nvml_without_initialising_it(cuda_build):
    assert cuda_probe.cuda_available() and cuda_probe.cuda_device_count() == 1


def test_without_nvml_a_spawned_child_asks_cuda(cuda_build):
    cuda_build.setattr(torch.cuda, "_device_count_nvml", lambda: -1)  # NVML cannot answer
    cuda_build.setattr(cuda_probe, "_count_in_child", lambda: 2)
    assert cuda_probe.cuda_device_count() == 2


def test_a_child_forked_after_cuda_was_initialised_has_none(cuda_build):
    cuda_build.setattr(torch.cuda, "_is_in_bad_fork", lambda: True)
    assert cuda_probe.cuda_device_count() == 0


def test_a_cpu_build_has_no_cuda_and_asks_nothing(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: 1 / 0)
    assert not cuda_probe.cuda_available()


def test_a_cuda_case_reaches_its_ranks_without_initialising_cuda(cuda_build, tmp_path):
    """device = "cuda" with gloo ranks: the case process asks about CUDA (without
    initialising it), and its ranks are spawned, never forked."""
    from bench.run import case as case_mod
    from bench.run import distributed, ranks
    from bench.spec.suite import parse_suite

    suite = parse_suite(
        'name = "t"\n[run]\ndevice = "cuda"\n[[models]]\nname = "tinygpt-s"\n'
        '[[workloads]]\nname = "train"\nsteps = 2\nbaseline = false\n'
        '[[techniques]]\nname = "parallel"\nmode = "ddp"\nworld_size = 2\nbackend = "gloo"\n'
    )
    (case,) = [c for c in suite.cases if c.techniques[0].name == "parallel"]
    configs = []

    def elastic_launch(config, entry):
        raise RuntimeError("stop before starting ranks")

    # torch's own LaunchConfig asks is_available (for NUMA defaults) as the ranks start:
    # harmless once they are spawned; recorded here instead.
    api = "torch.distributed.launcher.api"
    cuda_build.setattr(f"{api}.LaunchConfig", lambda **kw: configs.append(SimpleNamespace(**kw)))
    cuda_build.setattr(f"{api}.elastic_launch", elastic_launch)
    result = case_mod.execute(case, 0, None, {"run_dir": str(tmp_path)})
    assert "stop before starting ranks" in result.error
    assert [c.start_method for c in configs] == ["spawn"]
    placement = distributed.Placement(world_size=2, backend="gloo", device="cpu")
    assert not placement.uses_cuda and ranks.placement_of(case, {})[0].uses_cuda


# --- per-process GPU memory, each phase its own ---------------------------------------------


@pytest.fixture
def gpu(monkeypatch):
    fake = FakeNVML()
    monkeypatch.setattr(nvml_mod, "_module", fake)
    with Nvml() as n:
        yield n.gpu(0), fake


def test_gpu_memory_is_this_process_not_the_device(gpu):
    g, fake = gpu
    pid = os.getpid()
    fake.memory_used = 40 << 30  # the device: this process and another one's 38 GiB
    fake.processes = {pid + 1: 38 << 30}  # this process has no CUDA context yet
    mon = MemoryMonitor("cpu", g)

    def first_sync():  # what makes the context: the first phase's sync
        fake.processes.setdefault(pid, 600 << 20)

    with mon.phase("load", first_sync):
        fake.processes[pid] = 2 << 30
    got = {m.name: m for m in mon.metrics}
    assert got["memory_load_gpu_process"].value == 2 << 30
    assert got["memory_load_gpu_process_over_start"].value == (2 << 30) - (600 << 20)
    assert got["memory_load_gpu_process"].method == "nvml_compute_process_used_at_phase_end"
    assert not any("device" in n for n in got) and mon.absent == {}


def test_a_pid_nvml_does_not_list_falls_back_to_the_device_labelled_so(gpu):
    g, fake = gpu
    fake.processes = {1: 1 << 30}  # in a container NVML lists host pids, not ours
    fake.memory_used = 3 << 30
    mon = MemoryMonitor("cpu", g)
    with mon.phase("load"):
        fake.memory_used = 5 << 30
    got = {m.name: m for m in mon.metrics}
    assert got["memory_load_gpu_device"].value == 5 << 30
    assert got["memory_load_gpu_device_over_start"].value == 2 << 30
    assert "not listed" in got["memory_load_gpu_device"].method
    assert "pid namespace" in mon.absent["memory_load_gpu_process"]


class FakeAllocator:
    """torch's caching allocator: freed blocks stay reserved until ``empty_cache``, and a
    peak reset starts the peaks from what is held now."""

    def __init__(self):
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0

    def alloc(self, n):
        self.allocated += n
        self.reserved = max(self.reserved, self.allocated)
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def free(self, n):
        self.allocated -= n

    def empty_cache(self):
        self.reserved = self.allocated

    def reset_peak_memory_stats(self):
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved


def test_torch_peaks_are_each_phases_own(monkeypatch):
    a = FakeAllocator()
    monkeypatch.setattr(torch.cuda, "empty_cache", a.empty_cache)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", a.reset_peak_memory_stats)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: a.peak_allocated)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: a.peak_reserved)
    mon = MemoryMonitor("cuda")
    with mon.phase("prefill"):
        a.alloc(100)
        a.free(100)
    with mon.phase("decode"):
        a.alloc(30)
    got = {m.name: m.value for m in mon.metrics}
    assert got["memory_prefill_cuda_max_reserved"] == 100
    # without emptying the cache, the decode phase would report prefill's 100 reserved
    assert got["memory_decode_cuda_max_reserved"] == 30
    assert got["memory_decode_cuda_max_allocated"] == 30


# --- the KV cache goes where the model's forward takes it ------------------------------------


def _llama(forward):
    """The tiny llama shape with ``forward`` in place of transformers' own."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from bench.models.hf import SHAPES

    torch.manual_seed(0)
    cls = type("Llama", (LlamaForCausalLM,), {"forward": forward})
    return cls(LlamaConfig(**SHAPES["llama-tiny"][1])).eval()


def _old_name(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
    return LlamaBase.forward(self, input_ids=input_ids, cache=past_key_values, use_cache=use_cache)


def _swallows(self, input_ids=None, use_cache=None, **kwargs):
    return LlamaBase.forward(self, input_ids=input_ids, use_cache=use_cache)


def _ignores(self, input_ids=None, cache=None, use_cache=None, **kwargs):
    return LlamaBase.forward(self, input_ids=input_ids, use_cache=False)


LlamaBase = pytest.importorskip("transformers").LlamaForCausalLM


def _decode(model, runtime: str):
    from bench.workloads.decoding import NoClock, StaticDecoder, greedy_generate

    prompt = torch.randint(0, 512, (1, 8), generator=torch.Generator().manual_seed(1))
    decoder = StaticDecoder(model, 1, 16, "cpu", compiled=False) if runtime == "static" else None
    with torch.inference_mode():
        return greedy_generate(model, prompt, 8, NoClock(), decoder=decoder)[0]


def test_the_cache_keyword_comes_from_the_forward_signature():
    from bench.models.causal_lm import CausalLM

    plain, renamed = CausalLM(_llama(LlamaBase.forward)), CausalLM(_llama(_old_name))
    assert plain.keywords["cache"] == "cache" and renamed.keywords["cache"] == "past_key_values"
    for runtime in ("eager", "static"):
        assert torch.equal(_decode(plain, runtime), _decode(renamed, runtime))


def test_a_forward_that_names_no_cache_is_refused():
    from bench.models.causal_lm import CausalLM

    with pytest.raises(RuntimeError, match="names no KV cache argument"):
        CausalLM(_llama(_swallows))


@pytest.mark.parametrize("runtime", ["eager", "static"])
def test_a_cache_left_empty_fails_on_every_runtime(runtime):
    from bench.models.causal_lm import CausalLM

    model = CausalLM(_llama(_ignores))
    with pytest.raises(RuntimeError, match="KV cache was not filled"):
        _decode(model, runtime)


# --- CUDA graphs skipped are recorded ---------------------------------------------------------


def test_a_skipped_cuda_graph_is_counted_with_its_reason():
    from torch._inductor.cudagraph_utils import log_cudagraph_skip_and_bump_counter

    from bench.telemetry.cudagraphs import CudaGraphWatch

    with CudaGraphWatch() as quiet:
        pass
    assert quiet.ran and quiet.to_json() == {"skipped": 0, "partitions": 0, "reasons": []}
    with CudaGraphWatch() as w:
        log_cudagraph_skip_and_bump_counter("skipping cudagraphs due to mutated inputs (1)")
    assert not w.ran and w.skips == 1
    assert w.reasons == ["skipping cudagraphs due to mutated inputs (1)"]


def test_a_case_whose_cuda_graphs_were_skipped_counts_them_beside_its_figures():
    from torch._inductor.cudagraph_utils import log_cudagraph_skip_and_bump_counter

    from bench.results.schema import CaseResult
    from bench.run import case as case_mod
    from bench.spec.suite import parse_suite

    suite = parse_suite(
        'name = "t"\n[run]\ndevice = "cuda"\n[[models]]\nname = "tinygpt-s"\n'
        '[[workloads]]\nname = "generate"\nruntime = "compiled"\nbaseline = false\n'
        '[[workloads]]\nname = "forward"\nbaseline = false\n'
        '[[techniques]]\nname = "compile"\nmode = "reduce-overhead"\n'
        '[[techniques]]\nname = "compile"\n'
    )
    seen = {}
    for case in suite.cases:
        result = CaseResult(case.to_json(), case.id, case.hash, 0, "ok", "", "", 0.0)
        with case_mod._cuda_graph_watch(case) as w:
            if case.workload.name == "generate" or "reduce" in case.id:
                log_cudagraph_skip_and_bump_counter("skipping cudagraphs due to cpu device")
        metrics = case_mod._cuda_graph_metrics(w, result)
        assert result.case == case.to_json()  # labels stay the suite's: it meets its baseline
        seen[case.id] = ({m.name: m.value for m in metrics}, result.info.get("cuda_graphs"))
    promised = {i for i in seen if "compiled" in i or "reduce-overhead" in i}
    # generate-compiled (any technique) and compile-reduce-overhead (any workload) promised
    # graphs; a forward under the default compile mode promised none and is not watched
    assert promised and all(seen[i][0] == {"cuda_graph_skips": 1.0} for i in promised)
    assert all(seen[i] == ({}, None) for i in set(seen) - promised)
    info = seen[next(iter(promised))][1]
    assert info == {
        "skipped": 1,
        "partitions": 0,
        "reasons": ["skipping cudagraphs due to cpu device"],
    }


def test_the_console_says_when_cuda_graphs_were_skipped():
    from rich.console import Console

    from bench.run.suite_driver import _print_line

    console = Console(record=True, width=200)
    result = {"status": "ok", "repeat": 0, "wall_s": 3.0, "case_id": "m/generate-compiled"}
    _print_line(console, result, 1)
    graphs = {"skipped": 2, "reasons": ["skipping cudagraphs due to mutated inputs (2)"]}
    _print_line(console, {**result, "info": {"cuda_graphs": graphs}}, 1)
    lines = console.export_text().splitlines()
    assert len(lines) == 3
    assert lines[2].strip() == "no CUDA graphs: skipping cudagraphs due to mutated inputs (2)"
