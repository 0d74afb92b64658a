"""Parallel cases end to end on gloo at world size 2: DDP training and tensor-parallel
inference through torch's launcher from the case process, a rank that raises, a rank that
hangs past the case's timeout. One run for the module: each launch costs seconds."""

from __future__ import annotations

import pytest

from bench.errors import UserError
from bench.results import store
from bench.run.suite_driver import RunOptions, run_suite
from bench.spec.suite import load_suite
from tests.conftest import TINY_MODEL, assert_dies_soon

SUITE = f"""
name = "parallel-test"
[run]
threads = 1
warmup = 1
iterations = 3
repeats = 1
idle_s = 0
quality = true
timeout_s = 6
{TINY_MODEL}
[[workloads]]
name = "train"
steps = 4
batch = 2
seq_len = 32
heldout_windows = 2
baseline = false
[[workloads]]
name = "forward"
batch = 1
seq_len = 32
[[workloads]]
name = "selftest"
mode = "raise"
rank = 1
baseline = false
[[workloads]]
name = "selftest"
mode = "spawn"
seconds = 120
rank = 1
baseline = false
[[techniques]]
name = "baseline"
[[techniques]]
name = "parallel"
mode = "ddp"
world_size = 2
[[techniques]]
name = "parallel"
mode = "tp"
world_size = 2
[matrix]
exclude = [
  {{ workload = "train", "parallel.mode" = "tp" }},
  {{ workload = "forward", "parallel.mode" = "ddp" }},
  {{ workload = "selftest", "parallel.mode" = "tp" }},
  {{ workload = "selftest", technique = "baseline" }},
  {{ workload = "train", technique = "baseline" }},
]
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "parallel.toml"
    path.write_text(SUITE)
    out = run_suite(load_suite(path), RunOptions(results=tmp_path_factory.mktemp("results")))
    return out, {r["case_id"].split("/", 1)[1]: r for r in out.results}


def metric(result, name):
    return next(m for m in result["metrics"] if m["name"] == name)


def test_ddp_ranks_train_their_own_data_and_their_throughput_adds_up(run):
    _, by = run
    r = by["train-b2-s32-n4/ddp-w2-t1"]
    assert r["status"] == "ok", r["error"]
    assert r["info"]["placement"]["world_size"] == 2 and r["info"]["placement"]["data_parallel"]
    ranks = r["samples"]["ranks"]["values"]
    assert set(ranks) == {"0", "1"} and len(set(r["samples"]["ranks"]["pids"].values())) == 2
    total = metric(r, "throughput_tokens")
    assert total["method"].startswith("sum of 2 ranks")
    assert total["value"] == pytest.approx(sum(v["throughput_tokens"] for v in ranks.values()))
    step = metric(r, "step_median")
    assert step["value"] == max(v["step_median"] for v in ranks.values())
    # one loss for the group: the ranks trained on different batches, yet hold one model
    assert metric(r, "heldout_bits_per_byte")["value"] == ranks["1"]["heldout_bits_per_byte"]
    assert metric(r, "launch_startup")["value"] > 0
    assert "launched ranks" in r["info"]["absent"]["energy"]


def test_tensor_parallel_matches_the_unsharded_model_and_halves_its_weights(run):
    _, by = run
    tp, base = by["forward-b1-s32/tp-w2-t1"], by["forward-b1-s32/baseline"]
    assert tp["status"] == "ok", tp["error"]
    assert metric(tp, "logit_max_abs_error")["value"] < 1e-4
    assert metric(tp, "top1_agreement")["value"] == 1.0
    assert metric(tp, "throughput_tokens")["method"].startswith("min of 2 ranks")
    shard = metric(tp, "state_dict_bytes_per_rank")["value"]  # a share: never ranked as a model
    assert shard < 0.75 * metric(base, "state_dict_bytes")["value"]  # attention and MLP split
    assert metric(tp, "params_nonzero_fraction")["value"] == 1.0  # zeros counted per shard


def test_a_failing_rank_is_the_cases_outcome_with_every_exit_code(run):
    _, by = run
    r = by["selftest-raise-rank1/ddp-w2-t1"]
    assert r["status"] == "failed"
    assert r["info"]["failed_rank"] == 1
    assert r["info"]["rank_exit_codes"] == {"0": "stopped", "1": 1}
    assert "selftest: raised on purpose" in r["error"]
    assert by["forward-b1-s32/tp-w2-t1"]["status"] == "ok"  # the run went on


def test_a_hanging_rank_times_out_and_every_rank_dies_with_the_case(run):
    out, by = run
    r = by["selftest-spawn120s-rank1/ddp-w2-t1"]
    assert r["status"] == "timeout"
    (log,) = (out.run_dir / store.LOGS).glob("*selftest-spawn*.log")
    assert_dies_soon(int(log.read_text().split("worker pid ")[1].split()[0]), "rank 1's worker")


@pytest.mark.parametrize(
    ("technique", "message"),
    [
        ('mode = "tp"\nworld_size = 3', "its 2 attention heads do not split over world_size 3"),
        ('mode = "ddp"\nbackend = "nccl"\nworld_size = 2', "backend 'nccl' needs GPUs"),
        ('mode = "threads"', "needs 'threads'"),
        ('mode = "ddp"\nworld_size = 0', "world_size"),
    ],
)
def test_a_parallel_case_that_cannot_be_placed_is_refused_at_load(write_suite, technique, message):
    workload = "train" if "ddp" in technique else "forward"
    text = f'name = "bad"\n{TINY_MODEL}\n[[workloads]]\nname = "{workload}"\n'
    path = write_suite(f'{text}[[techniques]]\nname = "parallel"\n{technique}\n')
    with pytest.raises(UserError, match=message):
        load_suite(path)


@pytest.mark.slow
def test_one_parallel_case_across_two_nodes_each_writing_its_ranks(tmp_path):
    """Two `bench run` processes as two nodes of one rendezvous (node 0 hosts it): the node
    that holds rank 0 writes the case's result over both ranks, each node its ranks' files."""
    import socket
    import subprocess
    import sys

    from tests.test_runs import ROOT

    suite = tmp_path / "nodes.toml"
    # The nodes start apart (each probes its memory bandwidth first): a long timeout.
    head = SUITE.split("[[workloads]]")[0].replace("quality = true", "")
    suite.write_text(
        head.replace("timeout_s = 6", "timeout_s = 120")
        + """
[[workloads]]
name = "train"
steps = 3
batch = 2
seq_len = 32
heldout_windows = 1
baseline = false
[[techniques]]
name = "parallel"
mode = "ddp"
world_size = 2
"""
    )
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench",
                "run",
                str(suite),
                "--results",
                str(tmp_path / f"node{k}"),
                "--no-report",
                "--nnodes",
                "2",
                "--node-rank",
                str(k),
                "--rdzv-endpoint",
                f"localhost:{port}",
                "--inline",  # the case in the bench process: no fork server to start
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in (0, 1)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # torch's rendezvous orders nodes by host and process id: either may hold rank 0
    runs = [next((tmp_path / f"node{k}").iterdir()) for k in (0, 1)]
    results = [store.read_json(next((r / store.CASES).glob("*.json"))) for r in runs]
    (whole,) = [r for r in results if "ranks" in r["samples"]]
    (other,) = [r for r in results if r is not whole]
    assert whole["status"] == "ok" and set(whole["samples"]["ranks"]["values"]) == {"0", "1"}
    assert whole["info"]["placement"]["nnodes"] == 2
    assert len(other["info"]["ranks_here"]) == 1 and not other["metrics"]
    written = sorted(f.name.split(".")[-2] for r in runs for f in (r / store.RANKS).glob("*"))
    assert written == ["rank0", "rank1", "rank1"] or written == ["rank0", "rank0", "rank1"]
