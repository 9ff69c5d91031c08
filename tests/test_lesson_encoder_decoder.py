"""aicourse.lessons.encoder_decoder (notebook 20) against torch: cross-attention, the decoder layer (post-norm and
pre-norm, every mask), the whole nn.Transformer forward and backward, label smoothing with ignore_index, and the
dates data of 19."""

import datetime
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from lesson_tools import TOL, rel, t

from aicourse.lessons.encoder_decoder import (DATE_FORMATS, SRC_CHARS, T_OUT, T_SRC, TGT_CHARS,
                                              cross_attention_backward, cross_attention_forward, date_days,
                                              decoder_layer_backward, decoder_layer_forward,
                                              label_smoothed_cross_entropy, make_dates, transformer_backward,
                                              transformer_forward)

N, L, S, E, H, F_FF = 3, 5, 6, 8, 2, 16


def params(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def jitter(module):
    with torch.no_grad():
        for name, prm in module.named_parameters():
            if "norm" in name:
                prm.add_(0.5 * torch.randn(prm.shape, dtype=prm.dtype))
    return module


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    pad = np.zeros((N, S), dtype=bool)
    pad[1, 4:] = True
    pad[2, 2:] = True
    tpad = np.zeros((N, L), dtype=bool)
    tpad[0, 3:] = True
    causal = np.triu(np.ones((L, L), dtype=bool), 1)
    return dict(x=rng.standard_normal((N, L, E)), mem=rng.standard_normal((N, S, E)),
                dy=rng.standard_normal((N, L, E)), pad=pad, tpad=tpad, causal=causal)


def test_cross_attention_matches_multihead_attention(data):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, H, batch_first=True).double()
    y, w, cache = cross_attention_forward(data["x"], data["mem"], params(mha), H, memory_key_padding_mask=data["pad"])
    dx, dmem, g = cross_attention_backward(data["dy"], cache)
    xt, mt = t(data["x"], True), t(data["mem"], True)
    yt, wt = mha(xt, mt, mt, key_padding_mask=torch.tensor(data["pad"]), average_attn_weights=False)
    (yt * t(data["dy"])).sum().backward()
    assert rel(y, yt) < TOL and rel(w, wt) < TOL
    assert rel(dx, xt.grad) < TOL and rel(dmem, mt.grad) < TOL
    for name, prm in mha.named_parameters():
        assert rel(g[name], prm.grad) < TOL, name
    assert np.all(w[np.broadcast_to(data["pad"][:, None, None, :], w.shape)] == 0)
    assert np.all(dmem[data["pad"]] == 0)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_decoder_layer_matches_torch(data, norm_first, activation):
    torch.manual_seed(1)
    layer = jitter(nn.TransformerDecoderLayer(E, H, F_FF, dropout=0.0, activation=activation, batch_first=True,
                                              norm_first=norm_first).double())
    masks = dict(tgt_mask=data["causal"], tgt_key_padding_mask=data["tpad"], memory_key_padding_mask=data["pad"])
    y, cache = decoder_layer_forward(data["x"], data["mem"], params(layer), H, norm_first, activation, **masks)
    dx, dmem, g = decoder_layer_backward(data["dy"], cache)
    xt, mt = t(data["x"], True), t(data["mem"], True)
    yt = layer(xt, mt, **{k: torch.tensor(v) for k, v in masks.items()})
    (yt * t(data["dy"])).sum().backward()
    assert rel(y, yt) < TOL
    assert rel(dx, xt.grad) < TOL and rel(dmem, mt.grad) < TOL
    assert set(g) == {n for n, _ in layer.named_parameters()}
    for name, prm in layer.named_parameters():
        assert rel(g[name], prm.grad) < TOL, name


def test_decoder_layer_rejects_unknown_activation(data):
    layer = nn.TransformerDecoderLayer(E, H, F_FF, dropout=0.0, batch_first=True).double()
    with pytest.raises(ValueError, match="activation"):
        decoder_layer_forward(data["x"], data["mem"], params(layer), H, activation="tanh")


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_matches_nn_transformer(data, norm_first):
    torch.manual_seed(2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
        model = jitter(nn.Transformer(E, H, 2, 3, F_FF, dropout=0.0, batch_first=True, norm_first=norm_first).double())
    src = np.random.default_rng(3).standard_normal((N, S, E))
    masks = dict(src_key_padding_mask=data["pad"], tgt_mask=data["causal"], tgt_key_padding_mask=data["tpad"],
                 memory_key_padding_mask=data["pad"])
    y, cache = transformer_forward(src, data["x"], params(model), H, norm_first, **masks)
    dsrc, dtgt, g = transformer_backward(data["dy"], cache)
    st, xt = t(src, True), t(data["x"], True)
    yt = model(st, xt, **{k: torch.tensor(v) for k, v in masks.items()})
    (yt * t(data["dy"])).sum().backward()
    assert rel(y, yt) < TOL
    assert rel(dsrc, st.grad) < TOL and rel(dtgt, xt.grad) < TOL
    assert set(g) == {n for n, _ in model.named_parameters()}
    for name, prm in model.named_parameters():
        assert rel(g[name], prm.grad) < TOL, name
    with torch.no_grad():
        memory = model.encoder(t(src), src_key_padding_mask=torch.tensor(data["pad"]))
    assert rel(cache["memory"], memory) < TOL


@pytest.mark.parametrize("s", [0.0, 0.1, 0.4])
@pytest.mark.parametrize("ignore", [None, 0])
def test_label_smoothed_cross_entropy(s, ignore):
    rng = np.random.default_rng(4)
    z = 2 * rng.standard_normal((4, 6, 7))
    y = rng.integers(0, 7, (4, 6))
    y[0, :3] = 0
    loss, dz = label_smoothed_cross_entropy(z, y, s, ignore_index=ignore)
    zt = t(z, True)
    kw = {} if ignore is None else {"ignore_index": ignore}
    lt = F.cross_entropy(zt.reshape(-1, 7), torch.tensor(y).reshape(-1), label_smoothing=s, **kw)
    lt.backward()
    assert rel(loss, lt) < TOL and rel(dz, zt.grad) < TOL
    if ignore is not None:
        assert np.all(dz[y == ignore] == 0)


def test_label_smoothing_is_not_the_wrong_classes_convention():
    z, y, s = np.array([[2.0, 0.5, -1.0, 0.3]]), np.array([0]), 0.2
    t_wrong = np.full(4, s / 3)
    t_wrong[0] = 1 - s
    logp = z[0] - np.log(np.exp(z[0]).sum())
    assert abs(label_smoothed_cross_entropy(z, y, s)[0] - (-(t_wrong * logp).sum())) > 1e-3


def test_make_dates_round_trip():
    train, test = date_days(0)
    assert len(np.intersect1d(train, test)) == 0 and 0.08 < len(test) / (len(train) + len(test)) < 0.12
    src, tgt, texts, fmts = make_dates(50, np.random.default_rng(0), test)
    assert src.shape == (50, T_SRC) and tgt.shape == (50, T_OUT) and fmts.max() < len(DATE_FORMATS)
    test_set = set(test.tolist())
    for s_row, t_row, text in zip(src, tgt, texts):
        assert "".join(SRC_CHARS[i] for i in s_row).rstrip("_") == text
        iso = "".join(TGT_CHARS[i] for i in t_row)
        assert datetime.date.fromisoformat(iso).toordinal() in test_set
    again = make_dates(50, np.random.default_rng(0), test)
    assert np.array_equal(again[0], src) and np.array_equal(again[1], tgt)
