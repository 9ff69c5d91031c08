"""aicourse.lessons.distributed (notebook 29): shard gradients, the ring all-reduce, and the process launcher.

The launcher tests start real processes (forked from a fork server, gloo on the CPU): a few seconds, mostly
torch's import in the fork server, which the first launch starts and the later ones reuse.
"""
import multiprocessing
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse.lessons.distributed import (all_gather, all_gather_send, all_reduce_worker, average_gradients,
                                          ddp_worker, flatten, launch, local_gradients, reduce_scatter,
                                          reduce_scatter_send, ring_all_reduce, shard_bounds, shards, torch_mlp,
                                          train_adam_one_process, train_one_process, unflatten, zero_adam,
                                          zero_bytes, zero_worker)
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


def test_zero_bytes_is_the_papers_table():
    """ZeRO paper, Figure 1: 7.5B parameters, N = 64, K = 12: 120, 31.4, 16.6, 1.9 GB (rounded)."""
    gb = [zero_bytes(7.5e9, 64, stage) / 1e9 for stage in range(4)]
    assert gb == pytest.approx([120, 31.40625, 16.640625, 1.875], rel=1e-12)
    assert [round(g, 1) for g in gb] == [120, 31.4, 16.6, 1.9]
    assert zero_bytes(1000, 1, 3) == zero_bytes(1000, 1, 0) == 16_000     # one worker: nothing to shard
    assert zero_bytes(1000, 4, 1, k=16) == 4000 + 16 * 1000 / 4
    with pytest.raises(ValueError):
        zero_bytes(10, 2, 4)


@pytest.mark.parametrize("p", range(1, 8))
def test_reduce_scatter_then_all_gather_is_the_ring_all_reduce(p):
    rng = np.random.default_rng(10 + p)
    for n in (p, 4 * p + 3, 50):
        xs = rng.standard_normal((p, n))
        b = shard_bounds(n, p)
        assert b[0] == 0 and b[-1] == n and (np.diff(b) >= 0).all()
        mine, sent_rs = reduce_scatter(list(xs))
        for r in range(p):                                     # worker r holds the complete chunk r: its shard
            assert mine[r].shape == (b[r + 1] - b[r],)
            assert rel(mine[r], xs.sum(axis=0)[b[r]:b[r + 1]]) <= TOL
        full, sent_ag = all_gather(mine)
        ring, sent_ring = ring_all_reduce(list(xs))
        for r in range(p):
            assert rel(full[r], ring[r]) <= TOL
        assert sent_rs.sum() + sent_ag.sum() == sent_ring.sum() == 2 * (p - 1) * n
        if n % p == 0:
            assert (sent_rs == (p - 1) * n // p).all() and (sent_ag == (p - 1) * n // p).all()


def test_zero_adam_equals_one_process_adam_and_the_mistakes_do_not():
    rng = np.random.default_rng(5)
    X, y = digits_like(rng, n=60)
    params0 = init_mlp([12, 9, 5], rng)
    schedule = [rng.permutation(len(X))[:12] for _ in range(4)]
    ref = train_adam_one_process(params0, X, y, schedule, 0.05)
    n = sum(q.size for q in params0)
    for stage in (1, 2):
        for p in (1, 2, 3):
            out = zero_adam(params0, X, y, schedule, p, stage, lr=0.05)
            assert len(out["params"]) == len(schedule) and out["replica_gap"] == 0.0
            for ps, qs in zip(out["params"], ref):
                for a, b in zip(ps, qs):
                    assert a.shape == b.shape and rel(a, b) <= TOL
            assert out["state"] == list(2 * np.diff(shard_bounds(n, p)))
            assert out["grad"] == ([n] * p if stage == 1 else list(np.diff(shard_bounds(n, p))))
            assert out["sent"].sum() == (3 if stage == 1 else 2) * (p - 1) * n   # ZeRO-1 adds an all-gather
    wrong = zero_adam(params0, X, y, schedule[:1], 3, 2, lr=0.05, mistake="averaged gather")
    assert rel(flatten(wrong["params"][0]), flatten(ref[0]) / 3) <= TOL
    twice = zero_adam(params0, X, y, schedule, 2, 2, lr=0.05, mistake="divided twice")
    assert max(rel(a, b) for a, b in zip(twice["params"][-1], ref[-1])) > 1e-8
    with pytest.raises(ValueError):
        zero_adam(params0, X, y, schedule, 2, 3)


def test_zero_train_script_with_one_process_equals_adam():
    """aicourse.zero_train's training loop in this process, a gloo group of one (torchrun's run: the notebook)."""
    import tempfile

    import torch.distributed as dist

    from aicourse.zero_train import problem, train
    problem_ = problem(seed=3, batch=16, steps=3)
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=0, world_size=1)
        try:
            final = train(*problem_, 0.01, 0, 1)
        finally:
            dist.destroy_process_group()
    for a, b in zip(final, train_adam_one_process(*problem_, 0.01)[-1]):
        assert rel(a, b) <= TOL


def test_flatten_unflatten_round_trip():
    arrays = [np.arange(6.0).reshape(2, 3), np.arange(2.0), np.ones((1, 4))]
    back = unflatten(flatten(arrays), arrays)
    assert all(a.shape == b.shape and (a == b).all() for a, b in zip(arrays, back))


# ------------------------------------------------------------------ real processes (fork server, gloo)
def _both(rank, world_size, xs, ddp_args, zero_args):
    """One launch for the collectives, DDP and ZeRO (starting the processes is the slow part)."""
    return (all_reduce_worker(rank, world_size, xs), ddp_worker(rank, world_size, *ddp_args),
            zero_worker(rank, world_size, *zero_args))


def _fail(rank, world_size):
    if rank == 1:
        raise ValueError("boom on purpose")
    return rank


def _hang(rank, world_size):
    if rank == 1:
        time.sleep(600)
    return rank


def test_all_reduce_ddp_zero_and_the_hook_in_one_launch():
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((2, 7))
    X, y = digits_like(rng, n=64)
    params0 = init_mlp([12, 9, 5], rng)
    schedule = [rng.permutation(len(X))[:16] for _ in range(4)]
    runs = [("ok", torch.float64, None), ("tiny", torch.float64, None, 1e-5), ("same", torch.float64, "same shard"),
            ("sum", torch.float64, "sum")]
    results, seconds = launch(_both, 2, xs, (params0, X, y, schedule, 0.2, 0.9, runs),
                              (params0, X, y, schedule, 0.05), timeout_s=120)
    assert set(seconds) == {"spawn", "rendezvous", "work", "total"}
    one = train_one_process(params0, X, y, schedule, 0.2, 0.9)
    adam = train_adam_one_process(params0, X, y, schedule, 0.05)
    n = sum(q.size for q in params0)
    assert sum(zero["zero"]["exp_avg"] for _, _, zero in results) == n                # ZeRO-1: state split
    assert sorted(q for _, _, zero in results for q in zero["zero"]["owns"]) == sorted(["W1", "b1", "W2", "b2"])
    for _, _, zero in results:
        assert 0 < zero["zero"]["exp_avg"] < n
        runs_done = ["zero"] + (["fsdp"] if "error" not in zero["fsdp"] else [])
        if "error" in zero["fsdp"]:
            assert zero["fsdp"]["error"] and "\n" not in zero["fsdp"]["error"]
        else:
            assert zero["fsdp"]["exp_avg"] == zero["fsdp"]["local"] == zero["fsdp"]["grad"] < n
            assert zero["fsdp"]["state"] == 2 * zero["fsdp"]["local"]
        assert zero["zero"]["state"] == 2 * zero["zero"]["exp_avg"]
        for run in runs_done:                                  # = one process's Adam, every parameter and step
            for ps, qs in zip(zero[run]["params"], adam):
                for a, b in zip(ps, qs):
                    assert rel(a, b) <= TOL
    results = [(summed, ddp) for summed, ddp, _ in results]
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
    # The communication hook, in the same launch (starting processes is slow). Default buckets: the MLP's
    # gradients in one bucket, launched after the last gradient. A 10-byte cap: one bucket per parameter, each
    # launched as soon as its gradient is ready. DDP's first step uses one bucket.
    names = {"W1", "b1", "W2", "b2"}
    for _, out in results:
        for run, buckets in (("ok", 1), ("tiny", 4)):
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


def test_zero_train_outside_torchrun_is_one_sentence(monkeypatch):
    from aicourse.zero_train import main

    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(SystemExit, match="runs under torchrun, which sets RANK and WORLD_SIZE"):
        main([])


def test_zero_train_does_not_overwrite_a_file(monkeypatch, tmp_path):
    from aicourse.zero_train import main

    kept = tmp_path / "mine.npz"
    kept.write_bytes(b"a learner's file")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(SystemExit, match="exists and is not overwritten"):
        main(["--out", str(kept)])
    assert kept.read_bytes() == b"a learner's file"
