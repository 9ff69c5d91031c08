"""aicourse.lessons.gan (notebook 33) against torch and SciPy: the optimal discriminator and the game's value,
the GAN losses as binary cross-entropies, the gradient penalty's second derivatives (autograd with
create_graph=True), the transposed convolution, and the ring's mode counting."""

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
import torch
import torch.nn as nn
import torch.nn.functional as F

from aicourse.lessons.gan import (conv_transpose2d, critic_backward, critic_forward, critic_input_grad, d_loss,
                                  g_loss_minimax, g_loss_nonsat, gan_value, gradient_penalty, js_divergence,
                                  mode_coverage, optimal_discriminator, ring_centres, softplus, wgan_critic_loss)

from lesson_tools import TOL, rel, t


def test_value_at_optimal_discriminator_is_minus_log4_plus_2jsd():
    dx = 0.01
    xs = np.arange(-12, 12, dx)
    p, q = scipy.stats.norm.pdf(xs, -1, 1), scipy.stats.norm.pdf(xs, 2, 0.7)
    jsd = js_divergence(p, q, dx)
    assert rel(jsd, scipy.spatial.distance.jensenshannon(p * dx, q * dx) ** 2) < TOL
    assert rel(gan_value(np.log(p) - np.log(q), p, q, dx), -np.log(4) + 2 * jsd) < TOL
    D = optimal_discriminator(p, q)
    mid = np.abs(xs) < 4
    assert rel(D[mid], p[mid] / (p[mid] + q[mid])) < TOL
    # any other discriminator scores lower
    assert gan_value(np.log(p) - np.log(q) + 0.3, p, q, dx) < gan_value(np.log(p) - np.log(q), p, q, dx)
    assert js_divergence(p, p, dx) == pytest.approx(0.0, abs=1e-15)


def test_softplus_is_torch_softplus_in_both_tails():
    a = np.array([-800.0, -30.0, -1.0, 0.0, 2.0, 30.0, 800.0])
    assert rel(softplus(a), F.softplus(t(a))) < TOL


def test_gan_losses_are_bce_with_logits():
    rng = np.random.default_rng(0)
    ar, af = 6 * rng.standard_normal(9), 6 * rng.standard_normal(7)
    tr, tf = t(ar, True), t(af, True)
    loss = F.binary_cross_entropy_with_logits(tr, torch.ones_like(tr)) + \
        F.binary_cross_entropy_with_logits(tf, torch.zeros_like(tf))
    loss.backward()
    L, dr, df = d_loss(ar, af)
    assert rel(L, loss) < TOL and rel(dr, tr.grad) < TOL and rel(df, tf.grad) < TOL
    for ours, make in ((g_loss_minimax, lambda a: -F.binary_cross_entropy_with_logits(a, torch.zeros_like(a))),
                       (g_loss_nonsat, lambda a: F.binary_cross_entropy_with_logits(a, torch.ones_like(a)))):
        tf = t(af, True)
        lt = make(tf)
        lt.backward()
        L, d = ours(af)
        assert rel(L, lt) < TOL and rel(d, tf.grad) < TOL


def test_minimax_saturates_and_nonsat_does_not():
    a = np.array([-20.0])                                     # D(G(z)) ~ 2e-9
    assert abs(g_loss_minimax(a)[1][0]) < 1e-8
    assert abs(g_loss_nonsat(a)[1][0]) > 0.99


def _critic(seed=0, d=3, H=7):
    torch.manual_seed(seed)
    crit = nn.Sequential(nn.Linear(d, H), nn.Tanh(), nn.Linear(H, 1)).double()
    return crit, {k: v.detach().numpy().copy() for k, v in crit.state_dict().items()}


def test_critic_forward_backward_and_input_gradient():
    crit, p = _critic()
    x, dD = np.random.default_rng(1).standard_normal((5, 3)), np.random.default_rng(2).standard_normal(5)
    D, cache = critic_forward(x, p)
    xt = t(x, True)
    Dt = crit(xt)[:, 0]
    assert rel(D, Dt) < TOL
    (Dt * t(dD)).sum().backward()
    grads, dx = critic_backward(dD, cache, p)
    assert rel(dx, xt.grad) < TOL
    for name, prm in crit.named_parameters():
        assert rel(grads[name], prm.grad) < TOL, name
    g, _ = critic_input_grad(x, p)
    xt = t(x, True)
    g_t, = torch.autograd.grad(crit(xt).sum(), xt)
    assert rel(g, g_t) < TOL


@pytest.mark.parametrize("lam", [0.1, 10.0])
def test_gradient_penalty_matches_autograd_create_graph(lam):
    crit, p = _critic(seed=3)
    rng = np.random.default_rng(4)
    xr, xf, eps = rng.standard_normal((8, 3)), 2 * rng.standard_normal((8, 3)), rng.random((8, 1))
    xh = eps * xr + (1 - eps) * xf
    gp, grads, dxh = gradient_penalty(xh, p, lam)
    xht = t(xh, True)
    g_in, = torch.autograd.grad(crit(xht).sum(), xht, create_graph=True)
    gp_t = lam * ((g_in.norm(dim=1) - 1) ** 2).mean()
    gp_t.backward()
    assert rel(gp, gp_t) < TOL and rel(dxh, xht.grad) < TOL
    assert crit[2].bias.grad is None and np.all(grads["2.bias"] == 0)   # the penalty ignores b2
    for name, prm in crit.named_parameters():
        if name != "2.bias":
            assert rel(grads[name], prm.grad) < TOL, name
    crit.zero_grad()
    loss, grads = wgan_critic_loss(xr, xf, eps, p, lam)
    xht = t(xh, True)
    g_in, = torch.autograd.grad(crit(xht).sum(), xht, create_graph=True)
    lt = crit(t(xf)).mean() - crit(t(xr)).mean() + lam * ((g_in.norm(dim=1) - 1) ** 2).mean()
    lt.backward()
    assert rel(loss, lt) < TOL
    for name, prm in crit.named_parameters():
        assert rel(grads[name], prm.grad) < TOL, name


def test_gradient_penalty_matches_finite_differences():
    _, p = _critic(seed=5, d=2, H=4)
    xh = np.random.default_rng(6).standard_normal((5, 2))
    _, grads, _ = gradient_penalty(xh, p, 10.0)
    h = 1e-6
    for name, w in p.items():
        num = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            old = w[i]
            w[i] = old + h
            up = gradient_penalty(xh, p, 10.0)[0]
            w[i] = old - h
            down = gradient_penalty(xh, p, 10.0)[0]
            w[i] = old
            num[i] = (up - down) / (2 * h)
        assert rel(grads[name], num) < 1e-6, name


@pytest.mark.parametrize("stride,padding,k", [(2, 1, 4), (1, 0, 3), (2, 0, 3)])
def test_conv_transpose2d_matches_torch(stride, padding, k):
    rng = np.random.default_rng(7)
    x, W, b = rng.standard_normal((2, 3, 3, 3)), rng.standard_normal((3, 5, k, k)), rng.standard_normal(5)
    ref = F.conv_transpose2d(t(x), t(W), t(b), stride=stride, padding=padding)
    assert rel(conv_transpose2d(x, W, b, stride, padding), ref) < TOL
    assert rel(conv_transpose2d(x, W, None, stride, padding), ref - t(b)[None, :, None, None]) < TOL


def test_mode_coverage_counts_modes_and_quality():
    centres = ring_centres(8, 2.0)
    assert np.allclose(np.linalg.norm(centres, axis=1), 2.0)
    rng = np.random.default_rng(8)
    on_three = centres[rng.integers(0, 3, 900)] + 0.05 * rng.standard_normal((900, 2))
    off = rng.uniform(-0.5, 0.5, (100, 2))                   # near the origin: far from every mode
    modes, hq, share = mode_coverage(np.concatenate([on_three, off]), centres, 0.05)
    assert modes == 3
    assert 0.88 < hq <= 0.9 and share[:3].sum() == pytest.approx(hq)
    one_stray = np.concatenate([on_three, centres[5:6]])      # one sample is far below 2% of a mode
    assert mode_coverage(one_stray, centres, 0.05)[0] == 3
