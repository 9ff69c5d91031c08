"""What the lesson tests share: float64 tensors and the relative error they compare by (tests/test_lesson_*.py)."""

import numpy as np
import torch

TOL = 1e-10  # float64: a formula that is right agrees with torch to about 1e-15; a wrong one is far above


def t(x, grad=False):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=grad)


def rel(ours, ref):
    a = np.asarray(ours, dtype=np.float64)
    b = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a) + np.abs(b)))  # elementwise: the stricter scale
