"""aicourse.lessons.generalization against torch and scipy: L2 penalty and decoupled weight decay, early stopping,
inverted dropout (forward, backward, train/eval, inside an MLP), and the affine warp of the augmentation."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from aicourse.lessons.generalization import (affine_warp, decay_weights, dropout_backward, dropout_forward,
                                             dropout_mask, dropout_mlp_backward, dropout_mlp_forward, early_stopping,
                                             l2_penalty, random_augment)
from aicourse.lessons.losses import cross_entropy
from aicourse.lessons.mlp_training import init_mlp, mlp_backward, mlp_forward
from aicourse.lessons.optimizers import SGD, Adam


def torch_mlp(params, p=0.0):
    W1, _, W2, _ = params
    layers = [torch.nn.Linear(W1.shape[1], W1.shape[0]), torch.nn.ReLU()]
    layers += [torch.nn.Dropout(p)] if p > 0 else []
    model = torch.nn.Sequential(*layers, torch.nn.Linear(W2.shape[1], W2.shape[0])).double()
    with torch.no_grad():
        for p_t, p_np in zip(model.parameters(), params):
            p_t.copy_(torch.from_numpy(p_np))
    return model


def problem(seed=0, sizes=(12, 9, 5), n=16):
    rng = np.random.default_rng(seed)
    return init_mlp(list(sizes), rng), rng.standard_normal((n, sizes[0])), rng.integers(0, sizes[-1], n)


def test_l2_penalty_value_and_gradient_match_autograd():
    params, _, _ = problem()
    value, grads = l2_penalty(params, 0.3)
    ts = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    value_t = 0.3 / 2 * sum((t ** 2).sum() for t in ts)
    value_t.backward()
    assert value == pytest.approx(value_t.item(), rel=1e-12)
    for g, t in zip(grads, ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-13)


def trajectory_np(opt_class, how, lr, lam, steps=15):
    params, x, y = problem()
    opt = opt_class(params, lr=lr)
    for _ in range(steps):
        logits, caches = mlp_forward(x, params)
        grads = mlp_backward(cross_entropy(logits, y)[1], caches)
        if how == "L2":
            grads = [g + d for g, d in zip(grads, l2_penalty(params, lam)[1])]
        else:
            decay_weights(params, lr, lam)
        opt.step(grads)
    return np.concatenate([p.ravel() for p in params])


def trajectory_torch(opt_class, lr, steps=15, **kw):
    params, x, y = problem()
    model = torch_mlp(params)
    opt = opt_class(model.parameters(), lr=lr, **kw)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


def test_sgd_l2_equals_decoupled_decay_equals_torch():
    ref = trajectory_torch(torch.optim.SGD, 0.2, weight_decay=0.1)
    np.testing.assert_allclose(trajectory_np(SGD, "L2", 0.2, 0.1), ref, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(trajectory_np(SGD, "decoupled", 0.2, 0.1), ref, rtol=1e-11, atol=1e-13)


def test_adam_l2_is_torch_adam_and_decoupled_is_adamw_and_they_differ():
    l2, dec = trajectory_np(Adam, "L2", 0.01, 0.5), trajectory_np(Adam, "decoupled", 0.01, 0.5)
    np.testing.assert_allclose(l2, trajectory_torch(torch.optim.Adam, 0.01, weight_decay=0.5), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dec, trajectory_torch(torch.optim.AdamW, 0.01, weight_decay=0.5), rtol=1e-10,
                               atol=1e-12)
    assert np.max(np.abs(l2 - dec)) > 1e-4


def test_early_stopping():
    v = [5.0, 4.0, 4.5, 3.0, 3.5, 3.2, 3.1, 2.9, 3.0]
    assert early_stopping(v, 1) == (1, 2)
    assert early_stopping(v, 2) == (3, 5)
    assert early_stopping(v, 4) == (7, 8)                    # a new lowest at epoch 7 resets the count
    assert early_stopping(v, 3) == (3, 6)
    assert early_stopping(v, 100) == (7, 8)
    assert early_stopping([1.0, 1.0, 1.0], 5) == (0, 2)      # ties keep the first


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_matches_f_dropout_with_the_recovered_mask(p):
    rng = np.random.default_rng(1)
    x, dout = rng.standard_normal((6, 11)), rng.standard_normal((6, 11))
    xt = torch.tensor(x, requires_grad=True)
    torch.manual_seed(3)
    yt = F.dropout(xt, p, training=True)
    yt.backward(torch.from_numpy(dout))
    mask = (yt != 0).double().numpy()
    np.testing.assert_allclose(dropout_forward(x, p, mask), yt.detach().numpy(), rtol=1e-14, atol=0)
    np.testing.assert_allclose(dropout_backward(dout, p, mask), xt.grad.numpy(), rtol=1e-14, atol=0)
    torch.manual_seed(3)
    assert np.array_equal(torch.empty(x.shape, dtype=torch.float64).bernoulli_(1 - p).numpy(), mask)
    assert dropout_forward(x, p, mask, train=False) is x
    assert dropout_backward(dout, p, mask, train=False) is dout


def test_dropout_mask_rate_and_expectation():
    m = dropout_mask((200, 500), 0.3, np.random.default_rng(0))
    assert set(np.unique(m)) == {0.0, 1.0}
    assert abs(m.mean() - 0.7) < 0.01
    assert abs(dropout_forward(np.ones_like(m), 0.3, m).mean() - 1) < 0.015


def test_dropout_mlp_matches_torch_with_hooked_mask():
    params, x, y = problem(sizes=(12, 20, 5))
    model = torch_mlp(params, p=0.4)
    seen = []
    model[2].register_forward_hook(lambda mod, inp, out: seen.append(((out != 0) | (inp[0] == 0)).double().numpy()))
    logits_t = model(torch.from_numpy(x))
    F.cross_entropy(logits_t, torch.from_numpy(y)).backward()
    logits, caches = dropout_mlp_forward(x, params, 0.4, seen)
    grads = dropout_mlp_backward(cross_entropy(logits, y)[1], caches, 0.4)
    np.testing.assert_allclose(logits, logits_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    for g, p_t in zip(grads, model.parameters()):
        np.testing.assert_allclose(g, p_t.grad.numpy(), rtol=1e-11, atol=1e-14)
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(dropout_mlp_forward(x, params, 0.4, train=False)[0],
                                   model(torch.from_numpy(x)).numpy(), rtol=1e-12, atol=1e-14)


def test_affine_warp_matches_grid_sample_and_scipy():
    rng = np.random.default_rng(2)
    imgs = rng.random((5, 9, 9))
    angles, shifts = np.deg2rad(rng.uniform(-40, 40, 5)), rng.uniform(-2, 2, (5, 2))
    cos, sin = np.cos(angles), np.sin(angles)
    A = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)
    t = np.stack([shifts[:, 1], shifts[:, 0]], 1) * 2 / 9
    theta = torch.from_numpy(np.concatenate([A, -(A @ t[:, :, None])], 2))
    grid = F.affine_grid(theta, (5, 1, 9, 9), align_corners=False)
    ref = F.grid_sample(torch.from_numpy(imgs)[:, None], grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(affine_warp(imgs, angles, shifts), ref, rtol=1e-12, atol=1e-13)
    rot = np.stack([ndimage.rotate(im, np.rad2deg(a), reshape=False, order=1, mode="grid-constant")
                    for im, a in zip(imgs, angles)])
    np.testing.assert_allclose(affine_warp(imgs, angles, 0 * shifts), rot, rtol=1e-12, atol=1e-13)
    sh = np.stack([ndimage.shift(im, s, order=1, mode="grid-constant") for im, s in zip(imgs, shifts)])
    np.testing.assert_allclose(affine_warp(imgs, 0 * angles, shifts), sh, rtol=1e-12, atol=1e-13)


def test_random_augment_is_the_identity_at_zero_and_keeps_shapes():
    x = np.random.default_rng(0).random((7, 64))
    np.testing.assert_array_equal(random_augment(x, np.random.default_rng(1), 0.0, 0.0), x)
    out = random_augment(x, np.random.default_rng(1), 15.0, 1.0)
    assert out.shape == x.shape and not np.allclose(out, x)
