"""aicourse.lessons.activations against torch autograd, without running the notebook."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse import check, grad_check
from aicourse.lessons import activations as A

SHAPES = [(7,), (4, 5), (2, 3, 6)]


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    x.flat[0] = 0.0                       # ReLU's kink: torch's subgradient convention
    if x.size > 2:
        x.flat[1], x.flat[2] = 50.0, -50.0  # saturation
    return x, rng.standard_normal(shape)


def _torch(fn, x, dout):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = fn(xt)
    yt.backward(torch.tensor(dout))
    return yt, xt.grad


# name: (forward, backward from (dout, x), torch function)
CASES = {
    "sigmoid": (A.sigmoid, lambda d, x: A.sigmoid_backward(d, A.sigmoid(x)), torch.sigmoid),
    "tanh": (A.tanh, lambda d, x: A.tanh_backward(d, A.tanh(x)), torch.tanh),
    "relu": (A.relu, A.relu_backward, F.relu),
    "leaky_relu": (A.leaky_relu, A.leaky_relu_backward, F.leaky_relu),
    "leaky_relu_0.2": (lambda x: A.leaky_relu(x, 0.2), lambda d, x: A.leaky_relu_backward(d, x, 0.2),
                       lambda t: F.leaky_relu(t, 0.2)),
    "gelu": (A.gelu, A.gelu_backward, F.gelu),
    "gelu_tanh": (lambda x: A.gelu(x, "tanh"), lambda d, x: A.gelu_backward(d, x, "tanh"),
                  lambda t: F.gelu(t, approximate="tanh")),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(CASES))
def test_elementwise_forward_backward_match_torch(name, shape):
    f, f_backward, torch_f = CASES[name]
    x, dout = _inputs(shape)
    yt, gt = _torch(torch_f, x, dout)
    check(f"{name} forward", f(x), yt)
    check(f"{name} backward", f_backward(dout, x), gt)


@pytest.mark.parametrize("name", list(CASES))
def test_elementwise_backward_finite_differences(name):
    f, f_backward, _ = CASES[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4))
    x[np.abs(x) < 0.05] = 0.5  # away from the kink
    dout = rng.standard_normal(x.shape)
    grad_check(f"{name} backward vs finite differences", f, x, f_backward(dout, x), dout)


def test_sigmoid_is_finite_at_extremes():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow (underflow to 0 is fine)
        y = A.sigmoid(x)
    check("sigmoid at extremes", y, torch.sigmoid(torch.tensor(x)))


@pytest.mark.parametrize("shape,axis", [((6,), -1), ((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1)])
def test_softmax_backward_matches_torch(shape, axis):
    x, dout = _inputs(shape, seed=2)
    s = A.softmax(x, axis=axis)
    yt, gt = _torch(lambda t: torch.softmax(t, dim=axis), x, dout)
    check("softmax forward", s, yt)
    check("softmax backward", A.softmax_backward(dout, s, axis=axis), gt)


def test_softmax_backward_is_the_jacobian_product():
    rng = np.random.default_rng(3)
    z, g = rng.standard_normal(6), rng.standard_normal(6)
    s = A.softmax(z)
    J = np.diag(s) - np.outer(s, s)
    check("softmax VJP = J^T g", A.softmax_backward(g, s), J.T @ g)
    x = rng.standard_normal((3, 4)); dout = rng.standard_normal((3, 4))
    grad_check("softmax backward vs finite differences", A.softmax, x,
               A.softmax_backward(dout, A.softmax(x)), dout)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError):
        A.gelu(np.zeros(2), approximate="erf")
    with pytest.raises(ValueError):
        A.gelu_backward(np.ones(2), np.zeros(2), approximate="fast")


def test_wrong_tanh_derivative_is_rejected():
    """Common mistake 1: tanh' = (1 - tanh^2) / (1 + tanh^2) must fail the check."""
    x, dout = _inputs((4, 5))
    _, gt = _torch(torch.tanh, x, dout)
    y = A.tanh(x)
    with pytest.raises(AssertionError):
        check("wrong tanh'", dout * (1 - y ** 2) / (1 + y ** 2), gt)
