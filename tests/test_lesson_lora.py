"""aicourse.lessons.lora (notebook 30) against peft and torch: the scaling, peft's initialisation of A, the LoRA linear
layer forward and backward, the merge, LoRA on 22's GPT, and the trainable-parameter count."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from aicourse.lessons.gpt import TorchGPT, lm_loss
from aicourse.lessons.lora import (GPT_TARGETS, kaiming_uniform_bound, lora_delta, lora_gpt_backward, lora_gpt_forward,
                                   lora_gpt_params, lora_grads_from_weight_grad, lora_init, lora_linear_backward,
                                   lora_linear_forward, lora_merge, lora_scaling, lora_target_names,
                                   lora_trainable_count)

peft = pytest.importorskip("peft")
from lesson_tools import TOL, rel, t


class OneLinear(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out, dtype=torch.float64)

    def forward(self, x):
        return self.fc(x)


def wrapped(W, b, A, B, r, alpha, **cfg):
    base = OneLinear(W.shape[1], W.shape[0])
    with torch.no_grad():
        base.fc.weight.copy_(t(W)); base.fc.bias.copy_(t(b))
    model = peft.get_peft_model(base, peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=["fc"], **cfg))
    layer = model.base_model.model.fc
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(t(A)); layer.lora_B["default"].weight.copy_(t(B))
    return model, layer


def test_scaling():
    assert lora_scaling(16, 4) == 4.0
    with pytest.raises(ValueError):
        lora_scaling(8, 0)


@pytest.mark.parametrize("fan_in", [3, 16, 100])
@pytest.mark.parametrize("a", [0.0, 1.0, math.sqrt(5)])
def test_kaiming_bound_matches_torch(fan_in, a):
    torch.manual_seed(0)
    ref = nn.init.kaiming_uniform_(torch.empty(5, fan_in, dtype=torch.float64), a=a)
    torch.manual_seed(0)
    b = kaiming_uniform_bound(fan_in, a)
    assert rel(torch.empty(5, fan_in, dtype=torch.float64).uniform_(-b, b).numpy(), ref) <= TOL
    assert math.isclose(kaiming_uniform_bound(fan_in), 1 / math.sqrt(fan_in))


def test_init_is_peft_default():
    A, B = lora_init(64, 10, 300, np.random.default_rng(0))
    assert A.shape == (300, 64) and B.shape == (10, 300) and not B.any()
    assert 0.99 <= np.abs(A).max() * 8 <= 1.0
    model, layer = wrapped(np.zeros((10, 64)), np.zeros(10), A[:3], B[:, :3], 3, 8)
    torch.manual_seed(1)
    layer.reset_lora_parameters("default", True)
    torch.manual_seed(1)
    b = kaiming_uniform_bound(64)
    assert rel(torch.empty(3, 64, dtype=torch.float64).uniform_(-b, b).numpy(), layer.lora_A["default"].weight) <= TOL
    assert not layer.lora_B["default"].weight.any()


@pytest.mark.parametrize("r,alpha", [(1, 1), (4, 8), (6, 3)])
def test_linear_matches_peft(r, alpha):
    rng = np.random.default_rng(r)
    W, b = rng.standard_normal((7, 5)), rng.standard_normal(7)
    A, B = rng.standard_normal((r, 5)), rng.standard_normal((7, r))
    x, dy = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 3, 7))
    s = lora_scaling(alpha, r)
    y, cache = lora_linear_forward(x, W, b, A, B, s)
    dx, dA, dB = lora_linear_backward(dy, cache)
    model, layer = wrapped(W, b, A, B, r, alpha)
    xt = t(x, True)
    yt = model(xt)
    yt.backward(t(dy))
    assert rel(y, yt) <= TOL and rel(dx, xt.grad) <= TOL
    assert rel(dA, layer.lora_A["default"].weight.grad) <= TOL
    assert rel(dB, layer.lora_B["default"].weight.grad) <= TOL
    assert layer.base_layer.weight.grad is None and not layer.base_layer.weight.requires_grad
    dW = dy.reshape(-1, 7).T @ x.reshape(-1, 5)
    gA, gB = lora_grads_from_weight_grad(dW, A, B, s)
    assert rel(gA, dA) <= TOL and rel(gB, dB) <= TOL
    merged = model.merge_and_unload().fc.weight
    assert rel(lora_merge(W, A, B, s), merged) <= TOL
    assert rel(lora_delta(A, B, s), merged - t(W)) <= TOL


def test_linear_without_bias_and_zero_B():
    rng = np.random.default_rng(0)
    W, (A, B), x = rng.standard_normal((4, 6)), lora_init(6, 4, 2, rng), rng.standard_normal((5, 6))
    y, cache = lora_linear_forward(x, W, None, A, B, 2.0)
    assert np.array_equal(y, x @ W.T)
    _, dA, dB = lora_linear_backward(rng.standard_normal((5, 4)), cache)
    assert not dA.any() and dB.any()                     # B = 0: only B gets a gradient


def test_gpt_matches_peft_and_count():
    rng = np.random.default_rng(0)
    V, C, E, L, H, r, alpha = 11, 8, 12, 2, 3, 3, 6.0
    twin = TorchGPT(V, C, E, L, H, dtype=torch.float64)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.2 * torch.randn(p.shape, dtype=torch.float64))
    params = {k: v.detach().numpy().copy() for k, v in twin.state_dict().items()}
    names = lora_target_names(params)
    assert len(names) == 4 * L
    lora = {n: (rng.standard_normal((r, params[n + ".weight"].shape[1])) / 3,
                rng.standard_normal((params[n + ".weight"].shape[0], r)) / 3) for n in names}
    s = lora_scaling(alpha, r)
    idx, y = rng.integers(0, V, (2, C)), rng.integers(0, V, (2, C))
    logits, cache = lora_gpt_forward(idx, params, lora, H, s)
    g = lora_gpt_backward(lm_loss(logits, y)[1], cache)
    model = peft.get_peft_model(twin, peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=list(GPT_TARGETS)))
    wrapped_names = sorted(n[len("base_model.model."):] for n, m in model.named_modules()
                           if isinstance(m, peft.tuners.lora.LoraLayer))
    assert wrapped_names == sorted(names)
    with torch.no_grad():
        for n, (A, B) in lora.items():
            layer = model.base_model.model.get_submodule(n)
            layer.lora_A["default"].weight.copy_(t(A)); layer.lora_B["default"].weight.copy_(t(B))
    z = model(torch.as_tensor(idx))
    torch.nn.functional.cross_entropy(z.reshape(-1, V), torch.as_tensor(y).reshape(-1)).backward()
    assert rel(logits, z) <= TOL
    for n in names:
        layer = model.base_model.model.get_submodule(n)
        assert rel(g[n][0], layer.lora_A["default"].weight.grad) <= TOL
        assert rel(g[n][1], layer.lora_B["default"].weight.grad) <= TOL
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)
    shapes = [params[n + ".weight"].shape for n in names]
    assert lora_trainable_count(shapes, r) == model.get_nb_trainable_parameters()[0]
    merged = model.merge_and_unload()
    for n, w in lora_gpt_params(params, lora, s).items():
        assert rel(w, merged.state_dict()[n]) <= TOL
