"""aicourse.lessons.transfer_learning (notebook 22): NT-Xent against autograd, the encoder and augmentation."""

import numpy as np
import torch
import torch.nn.functional as F

from aicourse.lessons.transfer_learning import augment, make_encoder, nt_xent_backward, nt_xent_forward


def nt_xent_torch(z, tau):
    n = z.shape[0]
    s = (F.normalize(z, dim=1) @ F.normalize(z, dim=1).T / tau).masked_fill(torch.eye(n, dtype=torch.bool), -np.inf)
    return F.cross_entropy(s, torch.arange(n).roll(n // 2))


def test_nt_xent_matches_autograd():
    rng = np.random.default_rng(0)
    for n, tau in ((4, 0.5), (10, 0.1), (6, 2.0)):
        z = rng.standard_normal((n, 3)) * 2
        loss, cache = nt_xent_forward(z, tau)
        zt = torch.tensor(z, requires_grad=True)
        lt = nt_xent_torch(zt, tau)
        lt.backward()
        np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
        np.testing.assert_allclose(nt_xent_backward(cache), zt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_encoder_gives_64_features_and_augment_keeps_shape():
    x = torch.rand(5, 1, 8, 8)
    assert make_encoder()(x).shape == (5, 64)
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
