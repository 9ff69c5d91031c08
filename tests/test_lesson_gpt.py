"""aicourse.lessons.gpt (notebook 22) against torch: the GPT decoder block, the whole model, the KV cache,
label-smoothed loss, sampling distribution."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse.lessons.gpt import (BLOCK_PARAMS, TorchBlock, TorchGPT, block_params, causal_mask_with_past, generate,
                                  gpt_backward, gpt_block_backward, gpt_block_forward, gpt_forward, lm_loss,
                                  next_token_probs, sample)

from lesson_tools import TOL, rel, t


def close(ours, ref, tol=TOL):
    assert rel(ours, ref) <= tol


def _randomise(module, seed, scale=0.3):
    """Weights big enough that attention is far from uniform and layer norms' gamma/beta matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            base = 1.0 if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight" else 0.0
            p.copy_(base + scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("gelu", ["tanh", "erf"])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
@pytest.mark.parametrize("padding", [False, True])
def test_block_matches_torch(gelu, eps, padding):
    rng = np.random.default_rng(0)
    N, T, E, H = 2, 5, 8, 2
    block = TorchBlock(E, H, 12, gelu=gelu, eps=eps, dtype=torch.float64)
    p = _randomise(block, 1)
    assert set(p) == set(BLOCK_PARAMS)
    x, dout = rng.standard_normal((N, T, E)), rng.standard_normal((N, T, E))
    am = np.ones((N, T), dtype=int)
    if padding:
        am[1, 3:] = 0                                   # right padding of the second sequence
    out, cache = gpt_block_forward(x, p, H, gelu=gelu, eps=eps, attention_mask=am if padding else None)
    dx, g = gpt_block_backward(dout, cache)
    xt = t(x, True)
    ref = block(xt, t(am) if padding else None)
    ref.backward(t(dout))
    close(out, ref)
    close(dx, xt.grad)
    for name, param in block.named_parameters():
        close(g[name], param.grad)


def test_block_mistakes_rejected():
    rng = np.random.default_rng(2)
    block = TorchBlock(8, 2, dtype=torch.float64)
    p = _randomise(block, 3)
    x = rng.standard_normal((1, 6, 8))
    ref = block(t(x)).detach()
    assert rel(gpt_block_forward(x, p, 2, gelu="erf")[0], ref) > 1e-6            # wrong GELU variant
    assert rel(gpt_block_forward(x, p, 4)[0], ref) > 1e-6                         # wrong number of heads
    # causal: changing token 2 by a random vector (a constant would vanish in the layer norm) moves outputs 2..
    # and no earlier one; with the mask dropped the earlier outputs move too
    x2 = x.copy(); x2[0, 2] += rng.standard_normal(8)
    for causal in (True, False):
        moved = np.abs(gpt_block_forward(x2, p, 2, causal=causal)[0] - gpt_block_forward(x, p, 2, causal=causal)[0])
        moved = moved[0].max(axis=-1)
        assert np.all(moved[2:] > 1e-3)
        assert np.array_equal(moved[:2], np.zeros(2)) == causal
    assert causal_mask_with_past(3, 2).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


def _model(seed=0, V=11, C=8, E=8, L=2, H=2, gelu="tanh"):
    torch.manual_seed(seed)
    m = TorchGPT(V, C, E, L, H, gelu=gelu, dtype=torch.float64)
    return m, _randomise(m, seed + 1)


@pytest.mark.parametrize("gelu", ["tanh", "erf"])
def test_model_matches_torch_forward_backward(gelu):
    m, p = _model(gelu=gelu)
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 11, (3, 7))
    y = rng.integers(0, 11, (3, 7))
    logits, cache = gpt_forward(idx, p, 2, gelu=gelu)
    loss, dlogits = lm_loss(logits, y, label_smoothing=0.1)
    g = gpt_backward(dlogits, cache)
    zt = m(torch.tensor(idx))
    lt = F.cross_entropy(zt.reshape(-1, 11), torch.tensor(y).reshape(-1), label_smoothing=0.1)
    lt.backward()
    close(logits, zt)
    close(loss, lt)
    assert set(g) == set(dict(m.named_parameters()))
    for name, param in m.named_parameters():
        close(g[name], param.grad)
    # weight tying: the output layer's gradient alone is not wte's gradient
    V, E = p["wte.weight"].shape
    out_only = dlogits.reshape(-1, V).T @ cache["hf"].reshape(-1, E)
    assert rel(out_only, m.wte.weight.grad) > 1e-3


@pytest.mark.parametrize("s", [0.0, 0.1, 0.5])
def test_lm_loss_label_smoothing(s):
    rng = np.random.default_rng(5)
    z, y = rng.standard_normal((4, 3, 6)) * 3, rng.integers(0, 6, (4, 3))
    loss, dz = lm_loss(z, y, s)
    zt = t(z, True)
    lt = F.cross_entropy(zt.reshape(-1, 6), torch.tensor(y).reshape(-1), label_smoothing=s)
    lt.backward()
    close(loss, lt)
    close(dz, zt.grad)
    if s:
        wrong = F.cross_entropy(zt.reshape(-1, 6), torch.tensor(y).reshape(-1)).item()
        assert abs(loss - wrong) > 1e-3


def test_kv_cache_equals_full_recomputation():
    _, p = _model(L=2)
    rng = np.random.default_rng(6)
    idx = rng.integers(0, 11, (2, 8))
    full, _ = gpt_forward(idx, p, 2)
    logits, cache = gpt_forward(idx[:, :3], p, 2)
    steps = [logits]
    for i in range(3, 8):
        logits, cache = gpt_forward(idx[:, i:i + 1], p, 2, past=cache["present"])
        steps.append(logits)
    close(np.concatenate(steps, axis=1), full)
    # a cache used with top-left causal alignment (causal_mask(T) cropped) would let the new token see nothing
    assert causal_mask_with_past(1, 4).all()


def test_padding_mask_matches_unpadded():
    _, p = _model()
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 11, (1, 5))
    padded = np.concatenate([idx, [[0, 0]]], axis=1)
    am = np.array([[1, 1, 1, 1, 1, 0, 0]])
    close(gpt_forward(padded, p, 2, attention_mask=am)[0][:, :5], gpt_forward(idx, p, 2)[0])


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.5, 3), (2.0, 1)])
def test_next_token_probs(temperature, top_k):
    rng = np.random.default_rng(8)
    z = rng.standard_normal((4, 9))
    probs = next_token_probs(z, temperature, top_k)
    zt = t(z) / temperature
    if top_k:
        vals, _ = torch.topk(zt, top_k)
        zt = zt.masked_fill(zt < vals[:, -1:], float("-inf"))
    close(probs, torch.softmax(zt, -1))
    ids = sample(probs, np.random.default_rng(0))
    assert np.all(probs[np.arange(4), ids] > 0)


class _FixedDraw:
    """Stands in for a NumPy Generator whose random() always returns u."""

    def __init__(self, u):
        self.u = u

    def random(self, shape):
        return np.full(shape, self.u)


def test_sample_never_returns_a_token_of_probability_zero():
    z = np.random.default_rng(9).standard_normal((2000, 8))
    z[:, [0, -1]] = -10.0                               # the first and the last token are outside every top-5
    probs = next_token_probs(z, 1.0, 5)
    u_max = np.nextafter(1.0, 0.0)                      # the largest draw rng.random() can return
    assert (np.cumsum(probs, axis=-1)[:, -1] < u_max).sum() > 10   # rows whose rounded total is below it
    for u in (0.0, 0.5, u_max):
        ids = sample(probs, _FixedDraw(u))
        assert np.all(probs[np.arange(len(ids)), ids] > 0), u


def test_sample_frequencies_chi_squared():
    from scipy.stats import chisquare
    probs = next_token_probs(np.array([[2.0, 0.5, -1.0, 1.0, 0.0, 3.0]]), 1.0, 4)[0]
    kept, n = probs > 0, 50_000
    counts = np.bincount(sample(np.broadcast_to(probs, (n, 6)), np.random.default_rng(10)), minlength=6)
    assert counts[~kept].sum() == 0
    assert chisquare(counts[kept], n * probs[kept]).pvalue > 1e-4
    # the test can fail: the same number of draws spread evenly over the kept tokens is rejected
    even = np.bincount(np.random.default_rng(10).choice(np.flatnonzero(kept), n), minlength=6)
    assert chisquare(even[kept], n * probs[kept]).pvalue < 1e-10


def test_generate_cache_and_no_cache_agree():
    _, p = _model(C=12)
    idx = np.array([[1, 2, 3], [4, 5, 6]])
    a = generate(p, idx, 6, 2, temperature=0.8, top_k=4, rng=np.random.default_rng(1), use_cache=True)
    b = generate(p, idx, 6, 2, temperature=0.8, top_k=4, rng=np.random.default_rng(1), use_cache=False)
    assert a.shape == (2, 9) and np.array_equal(a, b)
    a = generate(p, idx, 14, 2, rng=np.random.default_rng(2), use_cache=True)      # past the context of 12
    b = generate(p, idx, 14, 2, rng=np.random.default_rng(2), use_cache=False)
    assert a.shape == (2, 17) and np.array_equal(a, b)
