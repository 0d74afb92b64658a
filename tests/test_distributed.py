"""Parallel launches through torch's own launcher at world size 2 on gloo (issue 15's
base): results gathered by rank, a failing rank reported with every exit code, no hang."""

from __future__ import annotations

import time

import pytest

from bench.run.distributed import Placement, RankFailed, launch


def all_reduce_rank(fail_rank: int | None = None):
    import torch
    import torch.distributed as dist

    rank = dist.get_rank()
    if rank == fail_rank:
        raise RuntimeError(f"rank {rank} fails on purpose")
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)  # the other rank waits here when one has failed
    return {"rank": rank, "world": dist.get_world_size(), "sum": float(t),
            "threads": torch.get_num_threads()}  # fmt: skip


def test_ranks_run_in_one_process_group_and_their_results_come_back_by_rank():
    got = launch(all_reduce_rank, (), Placement(world_size=2))
    assert sorted(got) == [0, 1]
    assert all(r["world"] == 2 and r["sum"] == 3.0 and r["threads"] == 1 for r in got.values())
    assert [got[i]["rank"] for i in (0, 1)] == [0, 1]


def test_a_failing_rank_ends_the_launch_with_every_exit_code_and_its_error():
    t = time.perf_counter()
    with pytest.raises(RankFailed) as info:
        launch(all_reduce_rank, (1,), Placement(world_size=2))
    assert info.value.rank == 1 and info.value.exit_codes[1] == 1
    assert "rank 1 fails on purpose" in info.value.error
    assert time.perf_counter() - t < 60  # rank 0, left in a collective, was stopped


def test_more_threads_than_cores_is_said():
    assert "exceed the 2 cores" in Placement(2, threads_per_rank=2).oversubscribed(cores=2)
    assert Placement(2, threads_per_rank=1).oversubscribed(cores=2) is None
    with pytest.raises(ValueError, match="does not split"):
        launch(all_reduce_rank, (), Placement(world_size=3, nnodes=2))
