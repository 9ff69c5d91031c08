"""aicourse.lessons.losses against torch.nn.functional, without running the notebook."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse import check, grad_check
from aicourse.lessons import losses as L

REDUCTIONS = ["mean", "sum", "none"]


def _torch_loss(fn, x, *args, **kw):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    lt = fn(xt, *args, **kw)
    lt.sum().backward()  # for reduction="none": the gradient of the sum, as our functions return
    return lt, xt.grad


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_matches_torch(shape, reduction):
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, dpred = L.mse_loss(pred, target, reduction)
    lt, gt = _torch_loss(F.mse_loss, pred, torch.tensor(target), reduction=reduction)
    check(f"mse {reduction} loss", loss, lt)
    check(f"mse {reduction} dpred", dpred, gt)


@pytest.mark.parametrize("shape", [(6,), (4, 3), (2, 3, 2)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_matches_torch_including_extremes(shape, reduction):
    rng = np.random.default_rng(1)
    z = rng.standard_normal(shape) * 4
    z.flat[0], z.flat[1] = 1000.0, -1000.0
    t = rng.random(shape)
    t.flat[0], t.flat[1] = 0.0, 1.0   # confidently wrong on both sides
    loss, dz = L.bce_with_logits(z, t, reduction)
    lt, gt = _torch_loss(F.binary_cross_entropy_with_logits, z, torch.tensor(t), reduction=reduction)
    assert np.all(np.isfinite(loss))
    check(f"bce {reduction} loss", loss, lt)
    check(f"bce {reduction} dz", dz, gt)


@pytest.mark.parametrize("n,c", [(1, 2), (5, 3), (8, 10)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["indices", "probabilities"])
def test_cross_entropy_matches_torch_including_extremes(n, c, reduction, kind):
    rng = np.random.default_rng(2)
    z = rng.standard_normal((n, c)) * 3
    z[0, 0], z[0, 1] = 1000.0, -1000.0
    if kind == "indices":
        target = rng.integers(0, c, size=n)
        target[0] = 1                   # confidently wrong
        tt = torch.tensor(target)
    else:
        target = rng.random((n, c)); target /= target.sum(axis=1, keepdims=True)
        tt = torch.tensor(target)
    loss, dz = L.cross_entropy(z, target, reduction)
    lt, gt = _torch_loss(F.cross_entropy, z, tt, reduction=reduction)
    assert np.all(np.isfinite(loss))
    check(f"cross_entropy {reduction} {kind} loss", loss, lt)
    check(f"cross_entropy {reduction} {kind} dlogits", dz, gt)


def test_cross_entropy_unnormalised_probability_targets():
    """torch allows targets that do not sum to 1; the gradient is softmax * sum(t) - t."""
    rng = np.random.default_rng(3)
    z, t = rng.standard_normal((4, 5)), rng.random((4, 5)) * 2
    loss, dz = L.cross_entropy(z, t)
    lt, gt = _torch_loss(F.cross_entropy, z, torch.tensor(t))
    check("cross_entropy unnormalised targets loss", loss, lt)
    check("cross_entropy unnormalised targets dlogits", dz, gt)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradients_vs_finite_differences(reduction):
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    grad_check("mse", lambda p: L.mse_loss(p, t, reduction)[0], x, L.mse_loss(x, t, reduction)[1])
    tb = rng.random((3, 4))
    grad_check("bce", lambda p: L.bce_with_logits(p, tb, reduction)[0], x, L.bce_with_logits(x, tb, reduction)[1])
    y = np.array([0, 3, 2])
    grad_check("cross_entropy", lambda p: L.cross_entropy(p, y, reduction)[0], x, L.cross_entropy(x, y, reduction)[1])


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        L.mse_loss(np.zeros(3), np.zeros(3), reduction="avg")
    with pytest.raises(ValueError):
        L.cross_entropy(np.zeros(3), np.array([0]))          # logits must be (N, C)
    with pytest.raises(ValueError):
        L.cross_entropy(np.zeros((2, 3)), np.zeros((2, 4)))  # probability targets of the wrong shape


def test_mse_half_convention_is_rejected():
    """Common mistake 9: 1/(2n) sum (y - t)^2 is not F.mse_loss; its gradient is off by a factor 2."""
    rng = np.random.default_rng(5)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    lt, gt = _torch_loss(F.mse_loss, pred, torch.tensor(target))
    with pytest.raises(AssertionError):
        check("mse 1/2 convention, gradient", (pred - target) / pred.size, gt)
    check("ours", L.mse_loss(pred, target)[1], gt)


def test_naive_cross_entropy_at_extreme_logits_is_rejected():
    z = np.array([[1000.0, -1000.0, 0.0]])
    with np.errstate(all="ignore"):
        e = np.exp(z); naive = -np.log(e[0, 1] / e.sum())
    lt, _ = _torch_loss(F.cross_entropy, z, torch.tensor([1]))
    with pytest.raises(AssertionError):
        check("naive cross-entropy", naive, lt)
    check("stable cross-entropy", L.cross_entropy(z, np.array([1]))[0], lt)
