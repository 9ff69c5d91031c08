"""aicourse.lessons.flash_attention (notebook 25) against torch's flash kernel, forward and backward."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from aicourse.lessons.flash_attention import (attention_traffic_naive, attention_traffic_tiled,
                                              flash_attention_backward, flash_attention_forward,
                                              online_logsumexp, online_softmax)

TOL = 1e-10


def t(x, grad=False):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=grad)


def close(ours, ref, tol=TOL):
    a, b = np.asarray(ours, dtype=np.float64), ref.detach().numpy()
    assert a.shape == b.shape
    assert np.array_equal(np.isneginf(a), np.isneginf(b))
    a, b = np.where(np.isneginf(a), 0.0, a), np.where(np.isneginf(b), 0.0, b)
    assert np.max(np.abs(a - b)) <= tol * max(1e-8, np.abs(a).max() + np.abs(b).max())


@pytest.mark.parametrize("block", [1, 3, 7, 23, 40])
def test_online_softmax_matches_torch(block):
    rng = np.random.default_rng(block)
    x = 40 * rng.standard_normal((4, 23))
    x[1, :9] = -np.inf
    x[2] += 800
    m, l = online_logsumexp(x, block)
    close(m + np.log(l), torch.logsumexp(t(x), dim=-1))
    close(online_softmax(x, block), torch.softmax(t(x), dim=-1))


def test_online_logsumexp_of_a_masked_row():
    m, l = online_logsumexp(np.full((1, 5), -np.inf), 2)
    assert np.isneginf(m).all() and (l == 0).all()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths,blocks", [((37, 37), (16, 16)), ((13, 29), (5, 7)), ((29, 13), (1, 1)),
                                            ((8, 8), (64, 64))])
def test_flash_attention_matches_torch_flash_kernel(causal, lengths, blocks):
    (Lq, Lk), (bq, bk) = lengths, blocks
    rng = np.random.default_rng(Lq * Lk)
    q, k, v = rng.standard_normal((2, 3, Lq, 8)), rng.standard_normal((2, 3, Lk, 8)), rng.standard_normal((2, 3, Lk, 8))
    dout = rng.standard_normal((2, 3, Lq, 8))
    out, lse, cache = flash_attention_forward(q, k, v, causal, block_q=bq, block_k=bk)
    dq, dk, dv = flash_attention_backward(dout, cache)
    qt, kt, vt = t(q, True), t(k, True), t(v, True)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        ot = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
    assert "Flash" in type(ot.grad_fn).__name__
    ot.backward(t(dout))
    s = qt.detach() @ kt.detach().transpose(-2, -1) / np.sqrt(8)
    if causal:
        s = s.masked_fill(~torch.ones(Lq, Lk, dtype=torch.bool).tril(), float("-inf"))
    close(out, ot)
    close(lse, torch.logsumexp(s, dim=-1))
    close(dq, qt.grad)
    close(dk, kt.grad)
    close(dv, vt.grad)


def test_causal_kernel_skips_tiles_above_the_diagonal():
    x = np.random.default_rng(0).standard_normal((64, 4))
    assert flash_attention_forward(x, x, x, block_q=16, block_k=16)[2][-1] == 16
    assert flash_attention_forward(x, x, x, True, block_q=16, block_k=16)[2][-1] == 10
    assert flash_attention_forward(x, x, x, True, block_q=16, block_k=8)[2][-1] == 20


def test_traffic_formulas():
    assert attention_traffic_naive(10, 4, itemsize=1) == 4 * 10 * 4 + 4 * 100
    for N, bq in [(64, 16), (100, 16), (37, 5), (50, 64)]:
        x, counted = np.random.default_rng(N).standard_normal((N, 8)), {}
        flash_attention_forward(x, x, x, block_q=bq, block_k=7, traffic=counted)
        assert counted["bytes"] == attention_traffic_tiled(N, 8, bq, itemsize=8)
