"""aicourse.lessons.convolution (notebook 10) against torch, without running the notebook."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse.checks import rel_error
from aicourse.lessons.convolution import (avg_pool2d_backward, avg_pool2d_forward, col2im, conv2d_backward,
                                          conv2d_backward_naive, conv2d_forward, conv2d_forward_naive,
                                          conv_output_size, im2col, max_pool2d_backward, max_pool2d_forward)

TOL = 1e-10  # float64 NumPy vs float64 torch on the CPU


def rel(a, b):
    """The course's relative error (aicourse.checks.rel_error), shapes required to match."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return rel_error(a, b)


def torch_conv(x, W, b, dout, **kw):
    xt = torch.tensor(x, requires_grad=True)
    Wt = torch.tensor(W, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    y = F.conv2d(xt, Wt, bt, **kw)
    y.backward(torch.tensor(dout))
    return y.detach().numpy(), xt.grad.numpy(), Wt.grad.numpy(), None if b is None else bt.grad.numpy()


# stride, padding, dilation, groups: every combination, plus per-axis pairs
CONV_CASES = list(itertools.product([1, 2], [0, 1], [1, 2], [1, 2, 4])) + [
    ((1, 3), (2, 0), (1, 2), 1), ((2, 1), 1, (2, 1), 2), (3, (0, 1), 1, 4), ((1, 2), (1, 2), 2, 1)]


@pytest.mark.parametrize("stride,padding,dilation,groups", CONV_CASES)
def test_conv2d_vectorised_vs_torch(stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 8))
    W = rng.standard_normal((8, 4 // groups, 3, 2))
    b = rng.standard_normal(8)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y, cache = conv2d_forward(x, W, b, **kw)
    dout = rng.standard_normal(y.shape)
    dx, dW, db = conv2d_backward(dout, cache)
    y_t, dx_t, dW_t, db_t = torch_conv(x, W, b, dout, **kw)
    assert rel(y, y_t) < TOL
    assert rel(dx, dx_t) < TOL
    assert rel(dW, dW_t) < TOL
    assert rel(db, db_t) < TOL


@pytest.mark.parametrize("stride,padding,dilation,groups",
                         [(1, 0, 1, 1), (2, 1, 1, 1), ((2, 1), (1, 2), 2, 2), (1, 1, 1, 4), (3, 0, (2, 1), 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_naive_vs_torch(stride, padding, dilation, groups, bias):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 7, 8))
    W = rng.standard_normal((4, 4 // groups, 3, 3))
    b = rng.standard_normal(4) if bias else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y, cache = conv2d_forward_naive(x, W, b, **kw)
    dout = rng.standard_normal(y.shape)
    dx, dW, db = conv2d_backward_naive(dout, cache)
    y_t, dx_t, dW_t, db_t = torch_conv(x, W, b, dout, **kw)
    assert rel(y, y_t) < TOL and rel(dx, dx_t) < TOL and rel(dW, dW_t) < TOL
    assert (db is None) if not bias else rel(db, db_t) < TOL
    y_v, cache_v = conv2d_forward(x, W, b, **kw)
    assert rel(y, y_v) < TOL
    assert all(rel(a, c) < TOL for a, c in zip((dx, dW), conv2d_backward(dout, cache_v)[:2]))


def test_depthwise_and_float32_input():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 10, 10))
    W = rng.standard_normal((12, 1, 5, 5))                  # depthwise, multiplier 2
    y, _ = conv2d_forward(x, W, None, padding=2, groups=6)
    y_t = F.conv2d(torch.tensor(x), torch.tensor(W), padding=2, groups=6).numpy()
    assert rel(y, y_t) < TOL
    y32, _ = conv2d_forward(x.astype(np.float32), W.astype(np.float32), None, padding=2, groups=6)
    assert y32.dtype == np.float32 and rel(y32, y_t) < 1e-5


def test_output_size_matches_torch():
    for n, k, s, p, d in itertools.product([4, 7, 12], [1, 2, 3, 4], [1, 2, 3], [0, 1, 2], [1, 3]):
        if n + 2 * p < d * (k - 1) + 1:
            with pytest.raises(ValueError):
                conv_output_size(n, k, s, p, d)
            continue
        shape = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d).shape
        assert conv_output_size(n, k, s, p, d) == shape[2], (n, k, s, p, d)


def test_im2col_col2im_are_adjoint():
    # <im2col(x), c> == <x, col2im(c)> for the padded input: col2im is the exact transpose
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 7))
    cols = im2col(x, (3, 2), stride=(2, 1), padding=0, dilation=(1, 2))
    c = rng.standard_normal(cols.shape)
    N, C = x.shape[:2]
    Ho, Wo = conv_output_size(6, 3, 2, 0, 1), conv_output_size(7, 2, 1, 0, 2)
    dwin = c.reshape(C, 3, 2, N, Ho, Wo).transpose(3, 0, 1, 2, 4, 5)
    back = col2im(dwin, x.shape, stride=(2, 1), dilation=(1, 2))
    assert abs(np.sum(cols * c) - np.sum(x * back)) < 1e-10 * np.sum(np.abs(cols * c))


def test_wrong_conv_formula_is_rejected():
    # mistake 4: a 3-D convolution (kernel flipped in channels and space) is not F.conv2d
    rng = np.random.default_rng(3)
    x, W = rng.standard_normal((1, 3, 6, 6)), rng.standard_normal((2, 3, 3, 3))
    y_t = F.conv2d(torch.tensor(x), torch.tensor(W)).numpy()
    assert rel(conv2d_forward(x, W)[0], y_t) < TOL
    assert rel(conv2d_forward(x, W[:, ::-1, ::-1, ::-1].copy())[0], y_t) > 1e-2


def test_groups_mismatch_raises():
    with pytest.raises(ValueError):
        conv2d_forward(np.zeros((1, 4, 5, 5)), np.zeros((3, 2, 3, 3)), groups=2)   # 3 filters, 2 groups


POOL_CASES = [(2, None, 0), (3, 2, 1), (3, 1, 1), ((3, 2), (1, 2), (1, 0)), (2, 1, 0), ((2, 4), (2, 3), (1, 2))]


@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
def test_max_pool_vs_torch(kernel, stride, padding):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 8, 9))
    xt = torch.tensor(x, requires_grad=True)
    y_t = F.max_pool2d(xt, kernel, stride, padding)
    dout = rng.standard_normal(y_t.shape)
    y_t.backward(torch.tensor(dout))
    y, cache = max_pool2d_forward(x, kernel, stride, padding)
    assert rel(y, y_t.detach().numpy()) < TOL
    assert rel(max_pool2d_backward(dout, cache), xt.grad.numpy()) < TOL


@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_vs_torch(kernel, stride, padding, count_include_pad):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 8, 9))
    xt = torch.tensor(x, requires_grad=True)
    y_t = F.avg_pool2d(xt, kernel, stride, padding, count_include_pad=count_include_pad)
    dout = rng.standard_normal(y_t.shape)
    y_t.backward(torch.tensor(dout))
    y, cache = avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)
    assert rel(y, y_t.detach().numpy()) < TOL
    assert rel(avg_pool2d_backward(dout, cache), xt.grad.numpy()) < TOL


def test_max_pool_ties_route_to_first_max_like_torch():
    x = np.zeros((1, 2, 4, 6))
    x[0, 1, 0, :2] = 1.0                                    # a two-way tie
    xt = torch.tensor(x, requires_grad=True)
    F.max_pool2d(xt, 2).backward(torch.ones(1, 2, 2, 3, dtype=torch.float64))
    y, cache = max_pool2d_forward(x, 2)
    assert np.array_equal(max_pool2d_backward(np.ones(y.shape), cache), xt.grad.numpy())


def test_wrong_max_pool_gradient_is_rejected():
    # spreading the gradient over the window (as if it were average pooling) is not max pooling's
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 1, 4, 4))
    xt = torch.tensor(x, requires_grad=True)
    F.max_pool2d(xt, 2).backward(torch.ones(1, 1, 2, 2, dtype=torch.float64))
    _, cache = avg_pool2d_forward(x, 2)
    assert rel(avg_pool2d_backward(np.ones((1, 1, 2, 2)), cache), xt.grad.numpy()) > 1e-2
