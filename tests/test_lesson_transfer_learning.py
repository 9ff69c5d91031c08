"""aicourse.lessons.transfer_learning (notebook 26): NT-Xent against autograd, the encoder and augmentation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aicourse.lessons.transfer_learning import augment, make_encoder, nt_xent_backward, nt_xent_forward


def nt_xent_torch(z, tau):
    two_n = z.shape[0]
    s = (F.normalize(z, dim=1) @ F.normalize(z, dim=1).T / tau).masked_fill(torch.eye(two_n, dtype=torch.bool), -np.inf)
    return F.cross_entropy(s, torch.arange(two_n).roll(two_n // 2))


@pytest.mark.parametrize("two_n, tau, scale", [(4, 0.5, 2.0), (10, 0.1, 2.0), (6, 2.0, 2.0), (8, 0.5, 1e6),
                                               (8, 0.5, 1e-6)])
def test_nt_xent_matches_autograd(two_n, tau, scale):
    z = np.random.default_rng(two_n).standard_normal((two_n, 3)) * scale
    loss, cache = nt_xent_forward(z, tau)
    zt = torch.tensor(z, requires_grad=True)
    lt = nt_xent_torch(zt, tau)
    lt.backward()
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
    dz = nt_xent_backward(cache)
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-10, atol=1e-14 * np.abs(dz).max())


def test_nt_xent_is_scale_free_and_its_gradient_shrinks_as_one_over_the_norm():
    z = np.random.default_rng(1).standard_normal((6, 4))
    loss, cache = nt_xent_forward(z, 0.5)
    loss_big, cache_big = nt_xent_forward(z * 1e6, 0.5)
    np.testing.assert_allclose(loss_big, loss, rtol=1e-13)
    np.testing.assert_allclose(nt_xent_backward(cache_big) * 1e6, nt_xent_backward(cache), rtol=1e-9, atol=1e-16)


def test_nt_xent_of_one_pair_is_exactly_zero():
    """2N = 2: each row's only candidate is its positive, so the loss and its gradient are 0, not merely small."""
    z = np.random.default_rng(2).standard_normal((2, 5))
    loss, cache = nt_xent_forward(z, 0.5)
    assert loss == 0.0 and np.all(nt_xent_backward(cache) == 0.0)
    assert nt_xent_torch(torch.tensor(z), 0.5).item() == 0.0


@pytest.mark.parametrize("rows", [1, 3, 11])
def test_nt_xent_refuses_an_odd_number_of_rows(rows):
    """With an odd count, (i + n // 2) % n pairs the wrong rows without a word: refused with one sentence."""
    with pytest.raises(ValueError, match=f"even number of rows, got {rows}"):
        nt_xent_forward(np.ones((rows, 3)), 0.5)


def test_encoder_gives_64_features_and_augment_keeps_shape():
    x = torch.rand(5, 1, 8, 8)
    assert make_encoder()(x).shape == (5, 64)
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
