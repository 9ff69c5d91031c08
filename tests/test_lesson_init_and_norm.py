"""aicourse.lessons.init_and_norm (notebook 09) against torch, without running the notebook."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from aicourse.checks import rel_error
from aicourse.lessons.init_and_norm import (batchnorm_backward, batchnorm_forward, calculate_gain,
                                            deep_relu_bn_statistics, deep_relu_statistics, fan_in_and_fan_out,
                                            he_std, uniform_bound, xavier_std)

TOL = 1e-10  # float64 NumPy vs float64 torch on the CPU


def rel(a, b):
    """The course's relative error (aicourse.checks.rel_error), shapes required to match."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return rel_error(a, b)


def torch_bn(C, ndim, gamma, beta, momentum, eps):
    layer = (nn.BatchNorm1d if ndim == 2 else nn.BatchNorm2d)(C, momentum=momentum, eps=eps).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(gamma)); layer.bias.copy_(torch.tensor(beta))
    return layer


@pytest.mark.parametrize("shape", [(8, 3), (2, 3), (3, 4, 5, 2), (1, 2, 3, 3)])
@pytest.mark.parametrize("momentum,eps", [(0.1, 1e-5), (0.3, 1e-3), (1.0, 1e-5)])
def test_train_steps_buffers_and_eval_vs_torch(shape, momentum, eps):
    rng = np.random.default_rng(0)
    C = shape[1]
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    layer = torch_bn(C, len(shape), gamma, beta, momentum, eps)
    r_mean, r_var = np.zeros(C), np.ones(C)
    for _ in range(3):
        x = rng.standard_normal(shape) * 2.5 + 1.5
        before_mean, before_var = r_mean.copy(), r_var.copy()
        out, _, new_mean, new_var = batchnorm_forward(x, gamma, beta, r_mean, r_var, True, momentum, eps)
        assert np.array_equal(r_mean, before_mean) and np.array_equal(r_var, before_var)  # not in place
        r_mean, r_var = new_mean, new_var
        assert rel(out, layer.train()(torch.tensor(x)).detach()) < TOL
        assert rel(r_mean, layer.running_mean) < TOL
        assert rel(r_var, layer.running_var) < TOL
    x = rng.standard_normal(shape)
    out, _, m_same, v_same = batchnorm_forward(x, gamma, beta, r_mean, r_var, False, momentum, eps)
    assert rel(out, layer.eval()(torch.tensor(x)).detach()) < TOL
    assert np.array_equal(m_same, r_mean) and np.array_equal(v_same, r_var)


@pytest.mark.parametrize("shape", [(8, 3), (2, 4), (3, 4, 5, 2)])
@pytest.mark.parametrize("train", [True, False])
def test_backward_vs_autograd(shape, train):
    rng = np.random.default_rng(1)
    C = shape[1]
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    r_mean, r_var = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    x, dout = rng.standard_normal(shape) * 3 - 1, rng.standard_normal(shape)
    _, cache, _, _ = batchnorm_forward(x, gamma, beta, r_mean, r_var, train=train)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    layer = torch_bn(C, len(shape), gamma, beta, 0.1, 1e-5)
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor(r_mean)); layer.running_var.copy_(torch.tensor(r_var))
    layer.train(train)
    xt = torch.tensor(x, requires_grad=True)
    layer(xt).backward(torch.tensor(dout))
    assert rel(dx, xt.grad) < TOL
    assert rel(dgamma, layer.weight.grad) < TOL
    assert rel(dbeta, layer.bias.grad) < TOL


def test_one_value_per_channel_and_bad_rank_raise():
    with pytest.raises(ValueError):
        batchnorm_forward(np.ones((1, 3)), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError):
        batchnorm_forward(np.ones((2, 3, 4)), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    # eval mode with one example is fine (running statistics)
    out, _, _, _ = batchnorm_forward(np.ones((1, 3)), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), train=False)
    assert out.shape == (1, 3)


@pytest.mark.parametrize("shape", [(7, 3), (3, 7), (8, 4, 3, 2), (2, 5, 1, 1), (4, 2, 3)])
def test_fans_vs_torch(shape):
    assert fan_in_and_fan_out(shape) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("name", ["linear", "conv2d", "sigmoid", "tanh", "relu"])
def test_gains_vs_torch(name):
    assert abs(calculate_gain(name) - nn.init.calculate_gain(name)) < 1e-15


def _spread(init, shape, **kw):
    torch.manual_seed(0)
    return init(torch.empty(shape, dtype=torch.float64), **kw).numpy()


@pytest.mark.parametrize("shape", [(256, 1024), (1024, 256), (64, 128, 3, 3)])
def test_init_spread_vs_torch(shape):
    """The std of torch's samples within 2 % of the derived one: a wrong gain or swapped fan is off by >= 25 %."""
    n_in, n_out = fan_in_and_fan_out(shape)
    w = _spread(nn.init.xavier_normal_, shape, gain=5 / 3)
    assert abs(w.std() / xavier_std(n_in, n_out, 5 / 3) - 1) < 0.02
    w = _spread(nn.init.xavier_uniform_, shape)
    assert abs(w.std() / xavier_std(n_in, n_out) - 1) < 0.02
    assert 0.99 * uniform_bound(xavier_std(n_in, n_out)) < np.abs(w).max() <= uniform_bound(xavier_std(n_in, n_out))
    w = _spread(nn.init.kaiming_normal_, shape, nonlinearity="relu")
    assert abs(w.std() / he_std(n_in) - 1) < 0.02
    w = _spread(nn.init.kaiming_uniform_, shape, mode="fan_out", nonlinearity="relu")
    assert abs(w.std() / he_std(n_out) - 1) < 0.02


def test_deep_relu_statistics_vs_autograd():
    rng = np.random.default_rng(2)
    x, top = rng.standard_normal((5, 6)), rng.standard_normal((5, 4))
    weights = [rng.standard_normal((6, 6)), rng.standard_normal((3, 6)), rng.standard_normal((4, 3))]
    zs, deltas, dWs = deep_relu_statistics(x, weights, top)
    Wt = [torch.tensor(W, requires_grad=True) for W in weights]
    h, zt = torch.tensor(x), []
    for l, W in enumerate(Wt):
        zt.append(h @ W.T); zt[-1].retain_grad()
        h = torch.relu(zt[-1]) if l < len(Wt) - 1 else zt[-1]
    h.backward(torch.tensor(top))
    for l in range(len(weights)):
        assert rel(zs[l], zt[l].detach()) < TOL
        assert rel(deltas[l], zt[l].grad) < TOL
        assert rel(dWs[l], Wt[l].grad) < TOL


@pytest.mark.parametrize("scale", [0.01, 1.0])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_deep_relu_bn_statistics_vs_torch(scale, eps):
    """Linear -> BatchNorm1d (train, gamma 1, beta 0) -> ReLU per layer, the last layer linear only, vs autograd."""
    rng = np.random.default_rng(3)
    x, top = rng.standard_normal((9, 6)) * 2 + 1, rng.standard_normal((9, 4))
    weights = [rng.standard_normal((5, 6)) * scale, rng.standard_normal((7, 5)) * scale, rng.standard_normal((4, 7))]
    zs, deltas, dWs = deep_relu_bn_statistics(x, weights, top, eps=eps)
    Wt = [torch.tensor(W, requires_grad=True) for W in weights]
    h, zt = torch.tensor(x), []
    for l, W in enumerate(Wt):
        zt.append(h @ W.T); zt[-1].retain_grad()
        if l < len(Wt) - 1:
            bn = nn.BatchNorm1d(W.shape[0], eps=eps).double().train()
            h = torch.relu(bn(zt[-1]))
    zt[-1].backward(torch.tensor(top))
    for l in range(len(weights)):
        assert rel(zs[l], zt[l].detach()) < TOL
        assert rel(deltas[l], zt[l].grad) < TOL
        assert rel(dWs[l], Wt[l].grad) < TOL


def test_deep_relu_bn_statistics_does_not_see_the_weights_scale():
    """Below the last layer batch norm removes the scale of W: scaling every hidden W by 100 leaves the top
    layer's input, and so z_L, unchanged (to eps), unlike the stack without batch norm."""
    rng = np.random.default_rng(4)
    x, top = rng.standard_normal((16, 5)), rng.standard_normal((16, 3))
    weights = [rng.standard_normal((5, 5)), rng.standard_normal((5, 5)), rng.standard_normal((3, 5))]
    scaled = [100 * W for W in weights[:-1]] + [weights[-1]]
    z_bn = deep_relu_bn_statistics(x, weights, top, eps=0.0)[0][-1]
    assert rel(deep_relu_bn_statistics(x, scaled, top, eps=0.0)[0][-1], z_bn) < TOL
    assert rel(deep_relu_statistics(x, scaled, top)[0][-1], deep_relu_statistics(x, weights, top)[0][-1]) > 0.5
