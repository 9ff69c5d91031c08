"""aicourse.lessons.mlp_training against torch: init, forward and backward of an MLP of any depth."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse.lessons.losses import cross_entropy
from aicourse.lessons.mlp_training import accuracy, init_mlp, mlp_backward, mlp_forward
from initcheck import assert_torch_init


def torch_model(params):
    layers = []
    for W in params[0::2]:
        layers += [torch.nn.Linear(W.shape[1], W.shape[0]).double(), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    with torch.no_grad():
        for p_t, p in zip(model.parameters(), params):
            p_t.copy_(torch.from_numpy(p))
    return model


@pytest.mark.parametrize("sizes,batch", [([5, 3], 4), ([8, 16, 4], 7), ([6, 5, 7, 3], 1), ([64, 32, 16, 10], 20)])
def test_forward_backward_match_torch(sizes, batch):
    rng = np.random.default_rng(0)
    params = init_mlp(sizes, rng)
    x = rng.standard_normal((batch, sizes[0]))
    y = rng.integers(0, sizes[-1], batch)
    logits, caches = mlp_forward(x, params)
    loss, dlogits = cross_entropy(logits, y)
    grads = mlp_backward(dlogits, caches)
    model = torch_model(params)
    logits_t = model(torch.from_numpy(x))
    loss_t = F.cross_entropy(logits_t, torch.from_numpy(y))
    loss_t.backward()
    np.testing.assert_allclose(logits, logits_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(loss, loss_t.item(), rtol=1e-12)
    assert len(grads) == len(params)
    for g, p, p_t in zip(grads, params, model.parameters()):
        assert g.shape == p.shape
        np.testing.assert_allclose(g, p_t.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_init_like_torch_linear():
    sizes = [400, 50, 3]
    params = init_mlp(sizes, np.random.default_rng(1))
    assert [p.shape for p in params] == [(50, 400), (50,), (3, 50), (3,)]
    for p, fan_in in zip(params, [400, 400, 50, 50]):
        assert np.abs(p).max() <= 1 / np.sqrt(fan_in)


@pytest.mark.parametrize("sizes", [[30, 3000, 2000], [200, 4000, 1500]])
def test_init_spread_of_weights_and_biases_matches_torch(sizes):
    params = init_mlp(sizes, np.random.default_rng(2))
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W, b = params[2 * layer], params[2 * layer + 1]
        assert_torch_init(W, fan_in, f"W{layer + 1}")
        assert_torch_init(b, fan_in, f"b{layer + 1}")
        # and the same spread as torch's own nn.Linear of that size
        torch.manual_seed(layer)
        ref = torch.nn.Linear(fan_in, fan_out)
        assert_torch_init(ref.weight.detach().numpy(), fan_in, f"torch W{layer + 1}")
        assert_torch_init(ref.bias.detach().numpy(), fan_in, f"torch b{layer + 1}")
        np.testing.assert_allclose(W.std(), ref.weight.detach().numpy().std(), rtol=0.05)
        np.testing.assert_allclose(b.std(), ref.bias.detach().numpy().std(), rtol=0.05)


@pytest.mark.parametrize("mistake", ["zero biases", "halved bound", "fan_out instead of fan_in", "normal weights"])
def test_init_spread_check_rejects_wrong_initialisers(mistake):
    # the check above must fail for the initialisers people write by mistake
    rng = np.random.default_rng(3)
    fan_in, fan_out = 300, 2000
    bound = 1 / np.sqrt(fan_in)
    W, b = rng.uniform(-bound, bound, (fan_out, fan_in)), rng.uniform(-bound, bound, fan_out)
    if mistake == "zero biases":
        b = np.zeros(fan_out)
    elif mistake == "halved bound":
        W, b = W / 2, b / 2
    elif mistake == "fan_out instead of fan_in":
        W, b = W * np.sqrt(fan_in / fan_out), b * np.sqrt(fan_in / fan_out)
    else:
        W = rng.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in)
    with pytest.raises(AssertionError):
        assert_torch_init(W, fan_in, "W")
        assert_torch_init(b, fan_in, "b")


def test_relu_mask_uses_preactivation():
    # a wrong backward that masks by the upstream gradient instead of z > 0 must differ from torch
    rng = np.random.default_rng(3)
    params = init_mlp([4, 6, 3], rng)
    x = rng.standard_normal((5, 4))
    logits, caches = mlp_forward(x, params)
    dlogits = rng.standard_normal(logits.shape)
    right = mlp_backward(dlogits, caches)
    (cache1, z1), (cache2, _) = caches
    from aicourse.lessons.backpropagation import linear_backward
    dh, _, _ = linear_backward(dlogits, cache2)
    wrong_dW1 = linear_backward(dh * (dh > 0), cache1)[1]
    assert np.abs(wrong_dW1 - right[0]).max() > 1e-3


def test_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0]])
    assert accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
