"""aicourse.lessons.rnn (notebook 13) against nn.RNN / nn.RNNCell / clip_grad_norm_, forward and backward."""

import numpy as np
import pytest
import torch

from aicourse.lessons.rnn import (clip_grad_norm, params_from_torch, params_to_torch, rnn_backward, rnn_forward,
                                  rnn_step_backward, rnn_step_forward)

TOL = 1e-10


def close(ours, ref):
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    scale = max(1e-8, np.max(np.abs(ours)) + np.max(np.abs(ref)))
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) / scale < TOL


def torch_run(module, x, h0, dout, dh_n):
    xt = torch.tensor(x, requires_grad=True)
    h0t = None if h0 is None else torch.tensor(h0, requires_grad=True)
    out, h_n = module(xt, h0t)
    torch.autograd.backward([out, h_n], [torch.tensor(dout), torch.tensor(dh_n)])
    return out, h_n, xt.grad, None if h0 is None else h0t.grad


@pytest.mark.parametrize("L, nl, batch_first, with_h0, T, N, I, H", [
    (1, "tanh", False, False, 4, 3, 2, 5),
    (1, "relu", True, True, 1, 1, 3, 2),
    (2, "tanh", True, True, 6, 2, 4, 3),
    (3, "relu", False, True, 5, 4, 3, 6),
    (3, "tanh", False, False, 3, 2, 5, 4),
])
def test_rnn_matches_torch(L, nl, batch_first, with_h0, T, N, I, H):
    torch.manual_seed(L * 100 + T)
    rng = np.random.default_rng(T + 10 * L)
    m = torch.nn.RNN(I, H, num_layers=L, nonlinearity=nl, batch_first=batch_first).double()
    params = params_from_torch(m)
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I))
    h0 = rng.standard_normal((L, N, H)) if with_h0 else None
    out, h_n, cache = rnn_forward(x, params, h0, nl, batch_first)
    dout, dh_n = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    dx, dh0, grads = rnn_backward(dout, dh_n, cache)
    out_t, h_n_t, dx_t, dh0_t = torch_run(m, x, h0, dout, dh_n)
    close(out, out_t)
    close(h_n, h_n_t)
    close(dx, dx_t)
    if with_h0:
        close(dh0, dh0_t)
    for l in range(L):
        for g, kind in zip(grads[l], ("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
            close(g, getattr(m, f"{kind}_l{l}").grad)


@pytest.mark.parametrize("nl", ["tanh", "relu"])
def test_step_matches_rnncell(nl):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    cell = torch.nn.RNNCell(3, 4, nonlinearity=nl).double()
    W = [p.detach().numpy().copy() for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    x, h, dh = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    out, cache = rnn_step_forward(x, h, *W, nonlinearity=nl)
    dx, dh_prev, dW_ih, dW_hh, db_ih, db_hh = rnn_step_backward(dh, cache)
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
    out_t = cell(xt, ht)
    out_t.backward(torch.tensor(dh))
    close(out, out_t)
    for ours, ref in [(dx, xt.grad), (dh_prev, ht.grad), (dW_ih, cell.weight_ih.grad), (dW_hh, cell.weight_hh.grad),
                      (db_ih, cell.bias_ih.grad), (db_hh, cell.bias_hh.grad)]:
        close(ours, ref)


def test_params_round_trip():
    m = torch.nn.RNN(3, 4, num_layers=2).double()
    params = params_from_torch(m)
    m2 = params_to_torch(torch.nn.RNN(3, 4, num_layers=2).double(), params)
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.3, 1e4])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    rng = np.random.default_rng(0)
    raw = [rng.standard_normal(s) for s in [(3, 4), (4,), (2, 2, 2)]]
    ours = [g.copy() for g in raw]
    total = clip_grad_norm(ours, max_norm, norm_type)
    ps = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in raw]
    for p, g in zip(ps, raw):
        p.grad = torch.tensor(g)
    total_t = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
    close(np.array(total), total_t)
    for g, p in zip(ours, ps):
        close(g, p.grad)


def test_bptt_without_recurrent_path_is_rejected():
    """A backward that drops dh_next (the recurrent path) must not pass the comparison."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    m = torch.nn.RNN(3, 4).double()
    params = params_from_torch(m)
    x = rng.standard_normal((5, 2, 3))
    out, h_n, cache = rnn_forward(x, params)
    dout = rng.standard_normal(out.shape)
    wrong_dW_hh = sum(rnn_step_backward(dout[t], cache[0][0][t])[3] for t in range(5))
    torch_run(m, x, None, dout, np.zeros_like(h_n))
    with pytest.raises(AssertionError):
        close(wrong_dW_hh, m.weight_hh_l0.grad)


def test_missing_batch_axis_is_an_error():
    params = params_from_torch(torch.nn.RNN(3, 4))
    with pytest.raises(ValueError):
        rnn_forward(np.zeros((5, 3)), params)
    with pytest.raises(ValueError):
        rnn_forward(np.zeros((5, 2, 7)), params)
