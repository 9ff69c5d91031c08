"""aicourse.lessons.lstm_gru (notebook 14) against nn.LSTM / nn.GRU and their cells, forward and backward."""

import numpy as np
import pytest
import torch

from aicourse.lessons.lstm_gru import (gru_backward, gru_forward, gru_step_backward, gru_step_forward, lstm_backward,
                                       lstm_forward, lstm_step_backward, lstm_step_forward, params_from_torch)

TOL = 1e-10


def close(ours, ref):
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert ours.shape == ref.shape
    scale = max(1e-8, np.max(np.abs(ours)) + np.max(np.abs(ref)))
    assert np.max(np.abs(ours - ref)) / scale < TOL


def layer_grads(m, l):
    return [getattr(m, f"{k}_l{l}").grad for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


SHAPES = [  # layers, batch_first, initial state given, T, N, I, H
    (1, False, False, 4, 3, 2, 5),
    (1, True, True, 1, 1, 3, 2),
    (2, True, True, 5, 2, 4, 3),
    (3, False, True, 3, 4, 3, 4),
    (2, False, False, 6, 2, 5, 6),
]


@pytest.mark.parametrize("L, batch_first, with_state, T, N, I, H", SHAPES)
def test_lstm_matches_torch(L, batch_first, with_state, T, N, I, H):
    torch.manual_seed(T + 7 * L)
    rng = np.random.default_rng(T * L)
    m = torch.nn.LSTM(I, H, num_layers=L, batch_first=batch_first).double()
    params = params_from_torch(m)
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I))
    hx = (rng.standard_normal((L, N, H)), rng.standard_normal((L, N, H))) if with_state else None
    out, (h_n, c_n), cache = lstm_forward(x, params, hx, batch_first)
    dout, dh_n, dc_n = (rng.standard_normal(a.shape) for a in (out, h_n, c_n))
    dx, dh0, dc0, grads = lstm_backward(dout, dh_n, dc_n, cache)

    xt = torch.tensor(x, requires_grad=True)
    hxt = None if hx is None else tuple(torch.tensor(s, requires_grad=True) for s in hx)
    out_t, (h_n_t, c_n_t) = m(xt, hxt)
    torch.autograd.backward([out_t, h_n_t, c_n_t], [torch.tensor(a) for a in (dout, dh_n, dc_n)])
    close(out, out_t)
    close(h_n, h_n_t)
    close(c_n, c_n_t)
    close(dx, xt.grad)
    if with_state:
        close(dh0, hxt[0].grad)
        close(dc0, hxt[1].grad)
    for l in range(L):
        for ours, ref in zip(grads[l], layer_grads(m, l)):
            close(ours, ref)


@pytest.mark.parametrize("L, batch_first, with_state, T, N, I, H", SHAPES)
def test_gru_matches_torch(L, batch_first, with_state, T, N, I, H):
    torch.manual_seed(T + 11 * L)
    rng = np.random.default_rng(T * L + 1)
    m = torch.nn.GRU(I, H, num_layers=L, batch_first=batch_first).double()
    params = params_from_torch(m)
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I))
    h0 = rng.standard_normal((L, N, H)) if with_state else None
    out, h_n, cache = gru_forward(x, params, h0, batch_first)
    dout, dh_n = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    dx, dh0, grads = gru_backward(dout, dh_n, cache)

    xt = torch.tensor(x, requires_grad=True)
    h0t = None if h0 is None else torch.tensor(h0, requires_grad=True)
    out_t, h_n_t = m(xt, h0t)
    torch.autograd.backward([out_t, h_n_t], [torch.tensor(dout), torch.tensor(dh_n)])
    close(out, out_t)
    close(h_n, h_n_t)
    close(dx, xt.grad)
    if with_state:
        close(dh0, h0t.grad)
    for l in range(L):
        for ours, ref in zip(grads[l], layer_grads(m, l)):
            close(ours, ref)


def test_cells_match_torch():
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    dh, dc = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))

    lc = torch.nn.LSTMCell(3, 4).double()
    W = [p.detach().numpy().copy() for p in (lc.weight_ih, lc.weight_hh, lc.bias_ih, lc.bias_hh)]
    h1, c1, cache = lstm_step_forward(x, h, c, *W)
    grads = lstm_step_backward(dh, dc, cache)
    xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    h1t, c1t = lc(xt, (ht, ct))
    torch.autograd.backward([h1t, c1t], [torch.tensor(dh), torch.tensor(dc)])
    close(h1, h1t)
    close(c1, c1t)
    for ours, ref in zip(grads, [xt.grad, ht.grad, ct.grad, lc.weight_ih.grad, lc.weight_hh.grad, lc.bias_ih.grad,
                                 lc.bias_hh.grad]):
        close(ours, ref)

    gc = torch.nn.GRUCell(3, 4).double()
    W = [p.detach().numpy().copy() for p in (gc.weight_ih, gc.weight_hh, gc.bias_ih, gc.bias_hh)]
    h1, cache = gru_step_forward(x, h, *W)
    grads = gru_step_backward(dh, cache)
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
    h1t = gc(xt, ht)
    h1t.backward(torch.tensor(dh))
    close(h1, h1t)
    for ours, ref in zip(grads, [xt.grad, ht.grad, gc.weight_ih.grad, gc.weight_hh.grad, gc.bias_ih.grad,
                                 gc.bias_hh.grad]):
        close(ours, ref)


def test_wrong_gate_order_is_rejected():
    """torch's weights read with the gate order i, f, o, g must not match nn.LSTM."""
    torch.manual_seed(0)
    m = torch.nn.LSTM(3, 4).double()
    params = params_from_torch(m)
    W_ih, W_hh, b_ih, b_hh = params[0]
    perm = np.r_[0:8, 12:16, 8:12]  # swap the g and o blocks
    wrong = [(W_ih[perm], W_hh[perm], b_ih[perm], b_hh[perm])]
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    out_wrong, _, _ = lstm_forward(x, wrong)
    with pytest.raises(AssertionError):
        close(out_wrong, m(torch.tensor(x))[0])


def test_textbook_gru_is_rejected():
    """The reset gate applied before W_hn (Cho et al.) is not nn.GRU."""
    torch.manual_seed(0)
    m = torch.nn.GRUCell(3, 4).double()
    W_ih, W_hh, b_ih, b_hh = (p.detach().numpy() for p in (m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh))
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    gi, gh = x @ W_ih.T + b_ih, h @ W_hh.T + b_hh
    r, z = 1 / (1 + np.exp(-(gi[:, :4] + gh[:, :4]))), 1 / (1 + np.exp(-(gi[:, 4:8] + gh[:, 4:8])))
    n = np.tanh(gi[:, 8:] + (r * h) @ W_hh[8:].T + b_hh[8:])
    with pytest.raises(AssertionError):
        close((1 - z) * n + z * h, m(torch.tensor(x), torch.tensor(h)))
    close(gru_step_forward(x, h, W_ih, W_hh, b_ih, b_hh)[0], m(torch.tensor(x), torch.tensor(h)))


def test_shape_errors():
    params = params_from_torch(torch.nn.LSTM(3, 4))
    with pytest.raises(ValueError):
        lstm_forward(np.zeros((2, 3)), params)  # no time axis
    with pytest.raises(ValueError):
        lstm_forward(np.zeros((5, 2, 3)), params, (np.zeros((1, 2, 4)), np.zeros((1, 3, 4))))
    with pytest.raises(ValueError):
        gru_forward(np.zeros((5, 2, 6)), params_from_torch(torch.nn.GRU(3, 4)))
