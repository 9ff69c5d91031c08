"""Unit tests of aicourse.lessons.backpropagation against torch (no notebook needed)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse.lessons.backpropagation import linear_backward, linear_forward


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("shape_x,d_out,bias", [
    ((5,), 3, True),          # a single vector
    ((7, 4), 2, True),        # a batch
    ((2, 3, 6), 5, True),     # extra leading dimensions
    ((4, 1), 1, True),        # degenerate widths
    ((3, 4), 6, False),       # no bias
])
def test_linear_matches_torch(shape_x, d_out, bias):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape_x)
    W = rng.standard_normal((d_out, shape_x[-1]))
    b = rng.standard_normal(d_out) if bias else None
    dy = rng.standard_normal(shape_x[:-1] + (d_out,))
    y, cache = linear_forward(x, W, b)
    dx, dW, db = linear_backward(dy, cache)

    xt, Wt = _t(x), _t(W)
    bt = _t(b) if bias else None
    yt = F.linear(xt, Wt, bt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, Wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert dx.shape == x.shape and dW.shape == W.shape
    if bias:
        np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-12, atol=1e-12)
        assert db.shape == b.shape
    else:
        assert db is None


def test_wrong_linear_backward_is_rejected():
    """dW = x^T dy (transposed) has the wrong shape; dW = dy^T x without the batch sum is wrong too."""
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((6, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    dy = rng.standard_normal((6, 3))
    _, dW, _ = linear_backward(dy, linear_forward(x, W, b)[1])
    assert (x.T @ dy).shape != dW.shape
    wrong_mean = dy.T @ x / len(x)
    assert not np.allclose(wrong_mean, dW)
