"""One test of "these numbers are torch's default initialisation", shared by the lesson tests."""

import numpy as np


def assert_torch_init(a, fan_in, what):
    """``a`` looks like many draws of torch's default init for nn.Conv2d / nn.Linear weights AND biases:
    kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the bias the same bound, with
    fan_in = in_channels / groups * kh * kw for a convolution.

    With thousands of draws: every |a| <= bound (float32 rounding allowed), the largest within 2% of it
    (P(miss) = 0.98**n), the standard deviation within 5% of bound/sqrt(3) (sampling error ~ sqrt(0.2/n))."""
    a = np.asarray(a, dtype=np.float64).ravel()
    bound = 1.0 / np.sqrt(fan_in)
    assert a.size >= 1000, f"{what}: too few draws ({a.size}) to test a distribution"
    assert np.abs(a).max() <= bound * (1 + 1e-6), f"{what}: max |a| {np.abs(a).max():.4g} > bound {bound:.4g}"
    assert np.abs(a).max() >= 0.98 * bound, f"{what}: max |a| {np.abs(a).max():.4g} far below bound {bound:.4g}"
    std_want = bound / np.sqrt(3)
    assert abs(a.std() / std_want - 1) < 0.05, f"{what}: std {a.std():.4g}, torch's {std_want:.4g}"
    assert abs(a.mean()) < 5 * std_want / np.sqrt(a.size), f"{what}: mean {a.mean():.3g} is not 0"
