"""aicourse.lessons.vae (notebook 32) against torch: the linear-Gaussian ELBO (equal to log p(x) at the posterior,
gap = KL to it), the Gaussian KL and its gradients (kl_divergence, autograd), the reparameterisation (autograd),
the score-function and pathwise estimators (autograd of the surrogate; unbiased), and the VAE's loss and every
parameter gradient against a torch twin."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from aicourse.checks import rel_error
from aicourse.lessons.vae import (VAE_PARAMS, gaussian_kl_std, gaussian_kl_std_backward, linear_gaussian_elbo,
                                  linear_gaussian_log_evidence, linear_gaussian_posterior, reparam_estimates,
                                  reparameterize, reparameterize_backward, score_function_estimates, vae_backward,
                                  vae_decode, vae_encode, vae_forward)

TOL = 1e-10


def t(x, grad=False):
    return torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=grad)


@pytest.mark.parametrize("a, b, s, x", [(1.5, 0.3, 0.7, 2.0), (-0.4, 1.0, 2.0, -3.0)])
def test_linear_gaussian_elbo(a, b, s, x):
    logp = linear_gaussian_log_evidence(x, a, b, s)
    assert rel_error(logp, Normal(t(b), t(np.sqrt(a * a + s * s))).log_prob(t(x)).numpy()) < TOL
    m, v = linear_gaussian_posterior(x, a, b, s)
    assert rel_error(linear_gaussian_elbo(x, a, b, s, m, v), logp) < TOL
    mq, vq = np.meshgrid(np.linspace(-2, 2, 9), np.geomspace(0.1, 3, 7))
    gap = logp - linear_gaussian_elbo(x, a, b, s, mq, vq)
    kl = kl_divergence(Normal(t(mq), t(np.sqrt(vq))), Normal(t(m), t(np.sqrt(v)))).numpy()
    assert rel_error(gap, kl) < TOL and gap.min() >= 0


def test_gaussian_kl_std_and_gradients():
    rng = np.random.default_rng(0)
    mu, lv, dkl = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)
    mu_t, lv_t = t(mu, True), t(lv, True)
    kl_t = kl_divergence(Normal(mu_t, torch.exp(0.5 * lv_t)), Normal(0.0, 1.0)).sum(-1)
    kl_t.backward(t(dkl))
    dmu, dlv = gaussian_kl_std_backward(dkl, mu, lv)
    assert rel_error(gaussian_kl_std(mu, lv), kl_t.detach().numpy()) < TOL
    assert rel_error(dmu, mu_t.grad.numpy()) < TOL and rel_error(dlv, lv_t.grad.numpy()) < TOL


def test_reparameterize_and_backward():
    rng = np.random.default_rng(1)
    mu, lv, eps, dz = (rng.standard_normal((4, 2)) for _ in range(4))
    mu_t, lv_t = t(mu, True), t(lv, True)
    z_t = mu_t + torch.exp(0.5 * lv_t) * t(eps)
    z_t.backward(t(dz))
    dmu, dlv = reparameterize_backward(dz, lv, eps)
    assert rel_error(reparameterize(mu, lv, eps), z_t.detach().numpy()) < TOL
    assert rel_error(dmu, mu_t.grad.numpy()) < TOL and rel_error(dlv, lv_t.grad.numpy()) < TOL


def test_estimators_match_autograd_and_are_unbiased():
    mu, sigma = 0.5, 0.8
    eps = np.random.default_rng(2).standard_normal(200_000)
    mu_t = torch.full((1000,), mu, dtype=torch.float64, requires_grad=True)
    z = mu_t + sigma * t(eps[:1000])
    torch.sin(z).sum().backward()
    assert rel_error(reparam_estimates(np.cos, mu, sigma, eps[:1000]), mu_t.grad.numpy()) < TOL
    mu_t.grad = None
    (torch.sin(z.detach()) * Normal(mu_t, sigma).log_prob(z.detach())).sum().backward()
    score = score_function_estimates(np.sin, mu, sigma, eps)
    assert rel_error(score[:1000], mu_t.grad.numpy()) < TOL
    exact = np.cos(mu) * np.exp(-sigma ** 2 / 2)
    for e in (score, reparam_estimates(np.cos, mu, sigma, eps)):
        assert abs(e.mean() - exact) < 4 * e.std() / np.sqrt(e.size)


class Twin(nn.Module):
    def __init__(self, D, H, L):
        super().__init__()
        self.enc_hidden, self.enc_out = nn.Linear(D, H), nn.Linear(H, 2 * L)
        self.dec_hidden, self.dec_out = nn.Linear(L, H), nn.Linear(H, D)

    def forward(self, x, eps):
        mu, lv = self.enc_out(torch.tanh(self.enc_hidden(x))).chunk(2, dim=-1)
        q = Normal(mu, torch.exp(0.5 * lv))
        u = self.dec_out(torch.tanh(self.dec_hidden(mu + q.scale * eps)))
        recon = F.binary_cross_entropy_with_logits(u, x, reduction="none").sum(-1)
        kl = kl_divergence(q, Normal(0.0, 1.0)).sum(-1)
        return (recon + kl).mean(), recon.mean(), kl.mean(), mu, lv, u


@pytest.mark.parametrize("D, H, L, N", [(64, 16, 2, 8), (5, 3, 4, 1)])
def test_vae_forward_backward_vs_torch(D, H, L, N):
    torch.manual_seed(0)
    twin = Twin(D, H, L).double()
    p = {k: v.detach().numpy().copy() for k, v in twin.state_dict().items()}
    assert tuple(p) == VAE_PARAMS
    rng = np.random.default_rng(3)
    x, eps = rng.uniform(0, 1, (N, D)), rng.standard_normal((N, L))
    loss, parts, cache = vae_forward(x, eps, p)
    grads = vae_backward(cache)
    loss_t, recon_t, kl_t, mu_t, lv_t, u_t = twin(t(x), t(eps))
    loss_t.backward()
    assert rel_error(loss, loss_t.item()) < TOL
    assert rel_error(parts["recon"], recon_t.item()) < TOL and rel_error(parts["kl"], kl_t.item()) < TOL
    mu, lv, _ = vae_encode(x, p)
    assert rel_error(mu, mu_t.detach().numpy()) < TOL and rel_error(lv, lv_t.detach().numpy()) < TOL
    assert rel_error(vae_decode(reparameterize(mu, lv, eps), p)[0], u_t.detach().numpy()) < TOL
    for name, param in twin.named_parameters():
        assert grads[name].shape == param.shape
        assert rel_error(grads[name], param.grad.numpy()) < TOL, name
