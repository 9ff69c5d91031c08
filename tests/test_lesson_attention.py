"""aicourse.lessons.attention (notebook 16) against torch, forward and backward, masks included."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from aicourse.lessons.attention import (additive_attention_backward, additive_attention_forward, causal_mask,
                                        masked_softmax, multi_head_attention_backward,
                                        multi_head_attention_forward, scaled_dot_product_attention,
                                        scaled_dot_product_attention_backward)

TOL = 1e-10


def t(x, grad=False):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=grad)


def close(ours, ref, tol=TOL):
    a, b = np.asarray(ours, dtype=np.float64), ref.detach().numpy()
    assert a.shape == b.shape
    assert np.max(np.abs(a - b)) <= tol * max(1e-8, np.abs(a).max() + np.abs(b).max())


def _mask(kind, rng, N, H, L, S):
    """(numpy mask for our SDPA, torch kwargs for F.scaled_dot_product_attention)."""
    if kind == "none":
        return {}, {}
    if kind == "padding":
        m = np.ones((N, 1, 1, S), dtype=bool)
        m[0, ..., -1] = False
        return {"mask": m}, {"attn_mask": torch.as_tensor(m)}
    if kind == "float":
        m = rng.standard_normal((L, S))
        m[0, 1] = -np.inf
        return {"mask": m}, {"attn_mask": t(m)}
    return {"is_causal": True}, {"is_causal": True}


@pytest.mark.parametrize("shape", [(1, 1, 3, 3, 4, 2), (2, 3, 4, 5, 6, 3), (2, 2, 7, 7, 8, 8)])
@pytest.mark.parametrize("kind", ["none", "padding", "float", "causal"])
def test_sdpa_matches_torch(shape, kind):
    N, H, L, S, dk, dv = shape
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((N, H, L, dk)), rng.standard_normal((N, H, S, dk)), rng.standard_normal((N, H, S, dv))
    dout = rng.standard_normal((N, H, L, dv))
    ours_kw, torch_kw = _mask(kind, rng, N, H, L, S)
    out, attn, cache = scaled_dot_product_attention(q, k, v, **ours_kw)
    dq, dk_, dv_ = scaled_dot_product_attention_backward(dout, cache)
    qt, kt, vt = t(q, True), t(k, True), t(v, True)
    ot = F.scaled_dot_product_attention(qt, kt, vt, **torch_kw)
    ot.backward(t(dout))
    close(out, ot)
    close(dq, qt.grad)
    close(dk_, kt.grad)
    close(dv_, vt.grad)
    np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-12)


def test_sdpa_fully_masked_row_is_zero_like_torch():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((1, 4, 3))
    m = np.ones((4, 4), dtype=bool)
    m[2] = False
    out, attn, cache = scaled_dot_product_attention(q, q, q, mask=m)
    assert np.all(attn[0, 2] == 0) and np.all(out[0, 2] == 0)
    close(out, F.scaled_dot_product_attention(t(q), t(q), t(q), attn_mask=torch.as_tensor(m)))


def test_wrong_formulas_rejected():
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((1, 5, 16)) for _ in range(3))
    ref = F.scaled_dot_product_attention(t(q), t(k), t(v), is_causal=True).numpy()
    unscaled = scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)[0]        # mistake 12
    wrong_polarity = scaled_dot_product_attention(q, k, v, mask=~causal_mask(5))[0]        # mistake 13
    assert np.abs(unscaled - ref).max() > 1e-3
    assert np.abs(np.nan_to_num(wrong_polarity) - ref).max() > 1e-3
    # and the softmax backward without its row-sum term is caught
    out, attn, cache = scaled_dot_product_attention(q, k, v)
    dout = rng.standard_normal(out.shape)
    qt = t(q, True)
    F.scaled_dot_product_attention(qt, t(k), t(v)).backward(t(dout))
    dattn = dout @ v.transpose(0, 2, 1)
    dq_wrong = (attn * dattn) @ k / 4.0
    assert np.abs(dq_wrong - qt.grad.numpy()).max() > 1e-3


def test_masked_softmax_polarity_and_float():
    s = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(masked_softmax(s, np.array([[True, False, True]]))[0, 1], 0.0)
    np.testing.assert_allclose(masked_softmax(s, np.array([[0.0, -np.inf, 0.0]])),
                               masked_softmax(s, np.array([[True, False, True]])))


@pytest.mark.parametrize("N,L,S,dq,dk,dv,h", [(1, 2, 3, 2, 3, 2, 4), (2, 3, 5, 4, 6, 3, 7)])
def test_additive_attention_matches_autograd(N, L, S, dq, dk, dv, h):
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s) for s in ((N, L, dq), (N, S, dk), (N, S, dv), (h, dq), (h, dk), (h,))]
    mask = np.ones((N, 1, S), dtype=bool)
    mask[-1, :, -1] = False
    dout = rng.standard_normal((N, L, dv))
    out, alpha, cache = additive_attention_forward(*arrays, mask=mask)
    grads = additive_attention_backward(dout, cache)
    ts = [t(a, True) for a in arrays]
    q, k, v, W_q, W_k, w_v = ts
    e = torch.tanh((q @ W_q.T)[..., :, None, :] + (k @ W_k.T)[..., None, :, :]) @ w_v
    a = torch.softmax(e.masked_fill(~torch.as_tensor(mask), float("-inf")), -1)
    (a @ v).backward(t(dout))
    close(out, a @ v)
    close(alpha, a)
    for g, x in zip(grads, ts):
        close(g, x.grad)


def _mha_case(rng, E, H, N, L, S, bias, masks):
    ref = nn.MultiheadAttention(E, H, bias=bias, dtype=torch.float64)
    params = {n: p.detach().numpy().copy() for n, p in ref.named_parameters()}
    kw = {}
    if "padding" in masks:
        kpm = np.zeros((N, S), dtype=bool)
        kpm[0, -1] = True
        # with a float attn_mask, torch wants a float key_padding_mask too (mixing is deprecated)
        kw["key_padding_mask"] = np.where(kpm, -np.inf, 0.0) if "float" in masks else kpm
    if "causal" in masks:
        kw["attn_mask"] = ~causal_mask(L, S)
    if "float" in masks:
        kw["attn_mask"] = rng.standard_normal((N * H, L, S))
    return params, kw


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("E,H,N,L,S,bias,masks", [
    (4, 1, 1, 3, 3, True, ()),
    (8, 2, 3, 4, 5, True, ("padding", "causal")),
    (6, 3, 2, 5, 4, False, ("float",)),
    (8, 4, 2, 3, 6, True, ("padding", "float")),
])
def test_mha_matches_nn_multiheadattention(batch_first, E, H, N, L, S, bias, masks):
    rng = np.random.default_rng(4)
    torch.manual_seed(0)
    params, kw = _mha_case(rng, E, H, N, L, S, bias, masks)
    xq, xk, xv = rng.standard_normal((N, L, E)), rng.standard_normal((N, S, E)), rng.standard_normal((N, S, E))
    dout = rng.standard_normal((N, L, E))
    tr = (lambda a: a) if batch_first else (lambda a: np.swapaxes(a, 0, 1))
    out, w, cache = multi_head_attention_forward(tr(xq), tr(xk), tr(xv), params, H, batch_first=batch_first, **kw)
    dq, dk, dv, grads = multi_head_attention_backward(tr(dout), cache)
    mha = nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first, dtype=torch.float64)
    mha.load_state_dict({n: t(p) for n, p in params.items()})
    qt, kt, vt = t(tr(xq), True), t(tr(xk), True), t(tr(xv), True)
    tkw = {n: (torch.as_tensor(m) if m.dtype == bool else t(m)) for n, m in kw.items()}
    ot, wt = mha(qt, kt, vt, **tkw)
    ot.backward(t(tr(dout)))
    close(out, ot)
    close(w, wt)
    close(dq, qt.grad)
    close(dk, kt.grad)
    close(dv, vt.grad)
    for name, p in mha.named_parameters():
        close(grads[name], p.grad)
    if not bias:
        assert grads["in_proj_bias"] is None and grads["out_proj.bias"] is None


def test_mha_per_head_weights_and_sdpa_polarity():
    """average_attn_weights=False gives per-head maps; SDPA's mask handed to MHA is rejected."""
    rng = np.random.default_rng(5)
    torch.manual_seed(1)
    E, H, L = 8, 2, 4
    ref = nn.MultiheadAttention(E, H, batch_first=True, dtype=torch.float64)
    params = {n: p.detach().numpy().copy() for n, p in ref.named_parameters()}
    x = rng.standard_normal((2, L, E))
    out, w, _ = multi_head_attention_forward(x, x, x, params, H, attn_mask=~causal_mask(L), batch_first=True,
                                             average_attn_weights=False)
    ot, wt = ref(t(x), t(x), t(x), attn_mask=torch.as_tensor(~causal_mask(L)), average_attn_weights=False)
    close(out, ot)
    close(w, wt)
    wrong, _, _ = multi_head_attention_forward(x, x, x, params, H, attn_mask=causal_mask(L), batch_first=True)
    assert np.abs(wrong - ot.detach().numpy()).max() > 1e-3
