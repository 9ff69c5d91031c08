"""aicourse.lessons.distributed (notebook 29): shard gradients, the ring all-reduce, and the process launcher.

The launcher tests start real processes (spawn, gloo on the CPU): a few seconds each, mostly torch's import.
"""
import multiprocessing
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse.lessons.distributed import (all_gather_send, all_reduce_worker, average_gradients, ddp_worker, flatten,
                                          launch, local_gradients, reduce_scatter_send, ring_all_reduce, shards,
                                          torch_mlp, train_one_process, unflatten)
from aicourse.lessons.mlp_training import init_mlp

TOL = 1e-10


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.max(np.abs(a - b)) / max(1e-8, np.abs(a).max() + np.abs(b).max())


def digits_like(rng, n=48, d=12, c=5):
    return rng.standard_normal((n, d)), rng.integers(0, c, n)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 6])
def test_mean_of_shard_gradients_is_the_full_batch_gradient(p):
    rng = np.random.default_rng(p)
    X, y = digits_like(rng)
    params = init_mlp([12, 7, 5], rng)
    idx = rng.permutation(len(X))[:12 * p // p * p]  # a multiple of p
    grads = average_gradients([local_gradients(X[s], y[s], params)[0] for s in shards(idx, p)])
    model = torch_mlp(params)
    F.cross_entropy(model(torch.as_tensor(X[idx])), torch.as_tensor(y[idx])).backward()
    for g, q in zip(grads, model.parameters()):
        assert g.shape == tuple(q.shape)
        assert rel(g, q.grad) <= TOL


def test_shards_are_equal_contiguous_pieces():
    parts = shards(np.arange(10), 3)
    assert [list(s) for s in parts] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize("p", range(1, 10))
def test_ring_all_reduce_sums_and_sends_2_p_minus_1_over_p_n(p):
    rng = np.random.default_rng(p)
    for n in (p, 5 * p, 5 * p + 2, 101):
        xs = rng.standard_normal((p, n))
        trace = []
        outs, sent = ring_all_reduce(list(xs), trace=trace)
        assert len(outs) == p and len(trace) == 2 * (p - 1)
        for out in outs:
            assert rel(out, xs.sum(axis=0)) <= TOL
        assert sent.sum() == 2 * (p - 1) * n
        if n % p == 0:
            assert (sent == 2 * (p - 1) * n // p).all()
        if p > 1:  # after the reduce-scatter worker r holds the complete chunk (r + 1) % p
            after_rs = trace[p - 2]
            assert all(after_rs[r, (r + 1) % p] == p for r in range(p))
            assert (trace[-1] == p).all()


def test_ring_schedule_and_a_wrong_one():
    p = 5
    assert [reduce_scatter_send(r, 0, p) for r in range(p)] == list(range(p))        # step 0: own chunk
    assert [all_gather_send(r, 0, p) for r in range(p)] == [(r + 1) % p for r in range(p)]
    xs = np.random.default_rng(0).standard_normal((p, 10))
    wrong, _ = ring_all_reduce(list(xs), rs_send=lambda r, t, q: (r + t) % q)
    assert rel(wrong[0], xs.sum(axis=0)) > 1e-3


def test_flatten_unflatten_round_trip():
    arrays = [np.arange(6.0).reshape(2, 3), np.arange(2.0), np.ones((1, 4))]
    back = unflatten(flatten(arrays), arrays)
    assert all(a.shape == b.shape and (a == b).all() for a, b in zip(arrays, back))


# ------------------------------------------------------------------------ real processes (spawn, gloo)
def _both(rank, world_size, xs, ddp_args):
    """One launch for both collectives (spawning is the slow part)."""
    return all_reduce_worker(rank, world_size, xs), ddp_worker(rank, world_size, *ddp_args)


def _fail(rank, world_size):
    if rank == 1:
        raise ValueError("boom on purpose")
    return rank


def _hang(rank, world_size):
    if rank == 1:
        time.sleep(600)
    return rank


def test_all_reduce_and_ddp_equal_sum_and_one_process():
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((2, 7))
    X, y = digits_like(rng, n=64)
    params0 = init_mlp([12, 9, 5], rng)
    schedule = [rng.permutation(len(X))[:16] for _ in range(4)]
    runs = [("ok", torch.float64, None), ("tiny", torch.float64, None, 1e-5), ("same", torch.float64, "same shard"),
            ("sum", torch.float64, "sum")]
    results, seconds = launch(_both, 2, xs, (params0, X, y, schedule, 0.2, 0.9, runs), timeout_s=120)
    assert set(seconds) == {"spawn", "rendezvous", "work", "total"}
    one = train_one_process(params0, X, y, schedule, 0.2, 0.9)
    for summed, ddp in results:
        assert rel(summed["float64"], xs.sum(axis=0)) <= TOL
        assert rel(summed["float32"], xs.sum(axis=0)) <= 1e-6
        for run in ("ok", "tiny"):                             # bucket size does not change the result
            assert len(ddp[run]["params"]) == len(schedule) == len(ddp[run]["events"])
            for ps, qs in zip(ddp[run]["params"], one):        # every parameter after every step
                for a, b in zip(ps, qs):
                    assert rel(a, b) <= TOL
        for mistake in ("same", "sum"):                        # the mistakes leave the reference
            assert max(rel(a, b) for a, b in zip(ddp[mistake]["params"][0], one[0])) > 1e-4
    for ps, qs in zip(results[0][1]["ok"]["params"], results[1][1]["ok"]["params"]):   # identical replicas
        assert all((a == b).all() for a, b in zip(ps, qs))
    assert not multiprocessing.active_children()


def test_the_communication_hook_sees_one_all_reduce_per_bucket():
    """Default buckets: the MLP's gradients in one bucket, launched after the last gradient. A 10-byte cap: one
    bucket per parameter, each launched as soon as its gradient is ready. DDP's first step uses one bucket."""
    rng = np.random.default_rng(4)
    X, y = digits_like(rng, n=32)
    params0 = init_mlp([12, 9, 5], rng)
    schedule = [rng.permutation(len(X))[:8] for _ in range(3)]
    runs = [("default", torch.float64, None), ("tiny", torch.float64, None, 1e-5)]
    results, _ = launch(ddp_worker, 2, params0, X, y, schedule, 0.1, 0.0, runs, timeout_s=120)
    names = {"W1", "b1", "W2", "b2"}
    for out in results:
        for run, buckets in (("default", 1), ("tiny", 4)):
            for t, events in enumerate(out[run]["events"]):
                reduced = [e[3:-1].split() for e in events if e.startswith("AR(")]
                grads = [e.split()[1] for e in events if e.startswith("grad ")]
                assert sorted(q for b in reduced for q in b) == sorted(names) == sorted(grads)
                if t > 0:
                    assert len(reduced) == buckets
                    last_grad = max(i for i, e in enumerate(events) if e.startswith("grad "))
                    assert sum(e.startswith("AR(") for e in events[:last_grad]) == buckets - 1
    assert not multiprocessing.active_children()


def test_a_failing_rank_is_one_readable_error_and_no_process_is_left():
    with pytest.raises(RuntimeError, match=r"rank 1 of 2 failed in _fail: ValueError: boom on purpose"):
        launch(_fail, 2, timeout_s=120)
    assert not multiprocessing.active_children()


def test_a_stuck_rank_is_killed_after_the_timeout():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="still running after"):
        launch(_hang, 2, timeout_s=3)
    assert time.monotonic() - start < 3 + 20
    assert not multiprocessing.active_children()
