"""aicourse.lessons.sequence_models (notebook 15): the adding problem and the LSTM regressor's gradient vs torch."""

import numpy as np
import pytest
import torch

from aicourse.lessons.losses import mse_loss
from aicourse.lessons.rnn import params_from_torch
from aicourse.lessons.sequence_models import adding_problem, lstm_regressor_backward, lstm_regressor_forward


@pytest.mark.parametrize("T", [2, 7, 30])
def test_adding_problem(T):
    x, y = adding_problem(500, T, np.random.default_rng(T))
    assert x.shape == (500, T, 2) and y.shape == (500,)
    marks = x[:, :, 1]
    assert np.all(marks.sum(axis=1) == 2)
    assert np.all(marks[:, : T // 2].sum(axis=1) == 1)
    np.testing.assert_allclose(y, (x[:, :, 0] * marks).sum(axis=1))
    with pytest.raises(ValueError):
        adding_problem(3, 1, np.random.default_rng(0))


@pytest.mark.parametrize("L, T, N, H", [(1, 5, 4, 3), (2, 3, 2, 6)])
def test_regressor_gradient_matches_torch(L, T, N, H):
    torch.manual_seed(L)
    lstm = torch.nn.LSTM(2, H, num_layers=L, batch_first=True).double()
    head = torch.nn.Linear(H, 1).double()
    x, y = adding_problem(N, T, np.random.default_rng(L))
    W_out, b_out = head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()
    y_hat, cache = lstm_regressor_forward(x, params_from_torch(lstm), W_out, b_out)
    loss, dy_hat = mse_loss(y_hat, y)
    grads, dW_out, db_out = lstm_regressor_backward(dy_hat, cache)

    _, (h_n, _) = lstm(torch.tensor(x))
    loss_t = torch.nn.functional.mse_loss(head(h_n[-1]).squeeze(1), torch.tensor(y))
    loss_t.backward()
    assert abs(loss - loss_t.item()) < 1e-12
    np.testing.assert_allclose(dW_out, head.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(db_out, head.bias.grad.numpy(), rtol=1e-9, atol=1e-12)
    for l in range(L):
        for g, kind in zip(grads[l], ("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
            np.testing.assert_allclose(g, getattr(lstm, f"{kind}_l{l}").grad.numpy(), rtol=1e-9, atol=1e-12)
