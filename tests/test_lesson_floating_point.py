"""aicourse.lessons.floating_point (notebook 01) against torch, without running the notebook."""

import numpy as np
import pytest
import torch

from aicourse import check
from aicourse.lessons.floating_point import log_softmax, logsumexp, softmax

INF = np.inf
SHAPES_AXES = [((7,), -1), ((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1), ((2, 3, 4), -1)]


def _x(shape, seed=0, scale=3.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
@pytest.mark.parametrize("scale", [3.0, 1000.0])
def test_match_torch(shape, axis, scale):
    x = _x(shape, scale=scale)                 # scale 1000: the naive formulas give inf/nan here
    t = torch.from_numpy(x)
    check("softmax", softmax(x, axis=axis), torch.softmax(t, dim=axis))
    check("log_softmax", log_softmax(x, axis=axis), torch.log_softmax(t, dim=axis))
    check("logsumexp", logsumexp(x, axis=axis), torch.logsumexp(t, dim=axis))
    check("logsumexp keepdims", logsumexp(x, axis=axis, keepdims=True), torch.logsumexp(t, dim=axis, keepdim=True))


def test_plus_minus_1000_rows():
    x = np.array([[1000.0, 999.0, -1000.0], [-1000.0, -1001.0, -1002.0], [1000.0, 1000.0, 1000.0]])
    t = torch.from_numpy(x)
    for ours, ref in ((softmax(x), torch.softmax(t, -1)), (log_softmax(x), torch.log_softmax(t, -1)),
                      (logsumexp(x), torch.logsumexp(t, -1))):
        assert np.isfinite(ours).all()
        check("±1000 rows", ours, ref)
    check("float32 reference at ±1000", softmax(x), torch.softmax(t.float(), -1))


def test_minus_inf_entries_and_rows():
    x = np.array([[0.5, -INF, 2.0], [-INF, -INF, -INF], [-INF, 3.0, -INF]])
    t = torch.from_numpy(x)
    check("logsumexp with -inf", logsumexp(x), torch.logsumexp(t, -1))             # row of -inf -> -inf
    assert logsumexp(x)[1] == -INF
    partial = [0, 2]                                                             # rows with a finite entry
    check("softmax with -inf entries", softmax(x[partial]), torch.softmax(t[partial], -1))
    check("log_softmax with -inf entries", log_softmax(x[partial]), torch.log_softmax(t[partial], -1))
    with np.errstate(all="raise"):                                               # and no warnings on a -inf row
        s, ls = softmax(x), log_softmax(x)
    # a row of -inf has no softmax: nan in torch, nan here
    np.testing.assert_array_equal(np.isnan(s), torch.softmax(t, -1).isnan().numpy())
    np.testing.assert_array_equal(np.isnan(ls), torch.log_softmax(t, -1).isnan().numpy())


def test_identities():
    x = _x((5, 6), seed=1)
    check("log_softmax = log(softmax)", log_softmax(x), np.log(softmax(x)))
    check("softmax rows sum to 1", softmax(x).sum(-1), np.ones(5))
    check("shift invariance", softmax(x + 123.0), softmax(x))


def test_naive_softmax_is_rejected():
    x = np.array([[1000.0, 999.0, -1000.0]])
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x)
        naive = e / e.sum(-1, keepdims=True)
    with pytest.raises(AssertionError, match="non-finite"):
        check("naive softmax", naive, torch.softmax(torch.from_numpy(x), -1))


def test_shift_without_keepdims_is_rejected():
    x = _x((5, 5), seed=2)
    e = np.exp(x - x.max(axis=1))                 # broadcasts along the wrong axis on a square input
    with pytest.raises(AssertionError, match="FAIL"):
        check("softmax without keepdims", e / e.sum(1, keepdims=True), torch.softmax(torch.from_numpy(x), -1))
