"""aicourse.lessons.transformer (notebook 17) against torch: layer norm, positional encoding, encoder layer."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from aicourse.lessons.attention import causal_mask
from aicourse.lessons.transformer import (encoder_layer_backward, encoder_layer_forward, layer_norm_backward,
                                          layer_norm_forward, sinusoidal_positional_encoding)

TOL = 1e-10


def t(x, grad=False):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=grad)


def close(ours, ref, tol=TOL):
    a = np.asarray(ours, dtype=np.float64)
    b = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref, dtype=np.float64)
    assert a.shape == b.shape
    if a.size == 0:
        return
    assert np.max(np.abs(a - b)) <= tol * max(1e-8, np.abs(a).max() + np.abs(b).max())


@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 4, 6), (2, 3, 1, 16)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_layer_norm_matches_torch(shape, affine, eps):
    rng = np.random.default_rng(0)
    D = shape[-1]
    x = rng.standard_normal(shape) * 3 + 1
    dy = rng.standard_normal(shape)
    gamma, beta = (rng.standard_normal(D), rng.standard_normal(D)) if affine else (None, None)
    y, cache = layer_norm_forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = layer_norm_backward(dy, cache)
    xt = t(x, True)
    gt, bt = (t(gamma, True), t(beta, True)) if affine else (None, None)
    yt = F.layer_norm(xt, (D,), gt, bt, eps)
    yt.backward(t(dy))
    close(y, yt)
    close(dx, xt.grad)
    if affine:
        close(dgamma, gt.grad)
        close(dbeta, bt.grad)
    else:
        assert dgamma is None and dbeta is None


def test_layer_norm_wrong_formulas_rejected():
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    ref = F.layer_norm(t(x), (5,)).numpy()
    unbiased = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, ddof=1, keepdims=True) + 1e-5)
    assert np.abs(unbiased - ref).max() > 1e-3
    _, cache = layer_norm_forward(x)
    xt = t(x, True)
    F.layer_norm(xt, (5,)).backward(t(dy))
    assert np.abs(dy * cache[1] - xt.grad.numpy()).max() > 1e-3     # mean/variance treated as constants


@pytest.mark.parametrize("length,d_model", [(1, 2), (10, 8), (50, 64)])
def test_positional_encoding(length, d_model):
    pe = sinusoidal_positional_encoding(length, d_model)
    assert pe.shape == (length, d_model)
    pos = np.arange(length)[:, None]
    i = np.arange(d_model // 2)[None, :]
    close(pe[:, 0::2], np.sin(pos / 10000 ** (2 * i / d_model)))
    close(pe[:, 1::2], np.cos(pos / 10000 ** (2 * i / d_model)))
    G = pe @ pe.T                                   # depends only on p - q
    close(G[1:, 1:], G[:-1, :-1])
    with pytest.raises(ValueError):
        sinusoidal_positional_encoding(4, 5)


def _layer_case(E, H, Fd, norm_first, activation, batch_first, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ref = nn.TransformerEncoderLayer(E, H, Fd, dropout=0.0, activation=activation, norm_first=norm_first,
                                     batch_first=batch_first, dtype=torch.float64)
    params = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    for name in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"):
        params[name] = params[name] + 0.3 * rng.standard_normal(E)
    ref.load_state_dict({k: t(v) for k, v in params.items()})
    return ref.train(), params, rng


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("activation,masks", [("relu", ()), ("gelu", ("padding", "causal")),
                                              ("relu", ("float",))])
def test_encoder_layer_matches_torch(norm_first, batch_first, activation, masks):
    E, H, Fd, N, L = 8, 2, 12, 3, 5
    ref, params, rng = _layer_case(E, H, Fd, norm_first, activation, batch_first, seed=2)
    x, dout = rng.standard_normal((N, L, E)), rng.standard_normal((N, L, E))
    kw = {}
    if "padding" in masks:
        kpm = np.zeros((N, L), dtype=bool)
        kpm[1, -2:] = True
        kw["src_key_padding_mask"] = kpm
    if "causal" in masks:
        kw["src_mask"] = ~causal_mask(L)
    if "float" in masks:
        kw["src_mask"] = rng.standard_normal((L, L))
    tr = (lambda a: a) if batch_first else (lambda a: np.swapaxes(a, 0, 1))
    out, cache = encoder_layer_forward(tr(x), params, H, norm_first=norm_first, activation=activation,
                                       batch_first=batch_first, **kw)
    dx, grads = encoder_layer_backward(tr(dout), cache)
    xt = t(tr(x), True)
    tkw = {k: (torch.as_tensor(m) if m.dtype == bool else t(m)) for k, m in kw.items()}
    ot = ref(xt, **tkw)
    ot.backward(t(tr(dout)))
    close(out, ot)
    close(dx, xt.grad)
    names = [n for n, _ in ref.named_parameters()]
    assert sorted(names) == sorted(grads)
    for name, p in ref.named_parameters():
        close(grads[name], p.grad)


def test_encoder_layer_eval_fast_path_and_norm_confusion():
    """torch's eval fast path gives the same output; post-norm math for a pre-norm layer is rejected."""
    ref, params, rng = _layer_case(8, 4, 16, True, "relu", True, seed=3)
    x = rng.standard_normal((2, 6, 8))
    with torch.no_grad():
        ot = ref.eval()(t(x))
    close(encoder_layer_forward(x, params, 4, norm_first=True)[0], ot)
    wrong = encoder_layer_forward(x, params, 4, norm_first=False)[0]
    assert np.abs(wrong - ot.numpy()).max() > 1e-3
    with pytest.raises(ValueError):
        encoder_layer_forward(x, params, 4, activation="tanh")


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_passes_eps_on(norm_first):
    """layer_norm_eps=1e-2 (where eps matters): our layer with eps=1e-2 matches, with the default eps it does not."""
    E, H, Fd = 8, 2, 12
    torch.manual_seed(4)
    rng = np.random.default_rng(4)
    ref = nn.TransformerEncoderLayer(E, H, Fd, dropout=0.0, norm_first=norm_first, batch_first=True,
                                     layer_norm_eps=1e-2, dtype=torch.float64).train()
    params = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    x, dout = rng.standard_normal((2, 5, E)), rng.standard_normal((2, 5, E))
    x[0, 1] *= 0.05                                   # a token with a small variance
    out, cache = encoder_layer_forward(x, params, H, norm_first=norm_first, eps=1e-2)
    dx, grads = encoder_layer_backward(dout, cache)
    xt = t(x, True)
    ot = ref(xt)
    ot.backward(t(dout))
    close(out, ot)
    close(dx, xt.grad)
    for name, p in ref.named_parameters():
        close(grads[name], p.grad)
    default_eps = encoder_layer_forward(x, params, H, norm_first=norm_first)[0]
    assert np.abs(default_eps - ot.detach().numpy()).max() > 1e-4
