"""The checks must pass on right answers and fail, with their report line, on wrong ones."""

import numpy as np
import pytest
import torch

import aicourse
from aicourse import checks
from aicourse.checks import check, expect_failure, grad_check, numerical_grad, rel_error


def test_check_passes_and_prints_one_line(capsys):
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    result = check("tanh", np.tanh(x), torch.tanh(torch.from_numpy(x)))
    out = capsys.readouterr().out.strip()
    assert result.passed and out.count("\n") == 0
    for field in ("PASS tanh", "shape (3, 4)", "max abs", "max rel", "tol 1e-10", "cpu/float64"):
        assert field in out


def test_check_fails_with_its_line():
    x = np.linspace(-2, 2, 12)
    with pytest.raises(AssertionError, match=r"FAIL wrong tanh \| shape \(12,\)"):
        check("wrong tanh", np.tanh(x) * (1 + 1e-8), torch.tanh(torch.from_numpy(x)))


def test_tolerance_follows_lower_precision():
    x = np.random.default_rng(0).standard_normal(50)
    t32 = torch.from_numpy(x).float()
    r = check("float32 exp", np.exp(x), torch.exp(t32))
    assert r.tol == checks.TOLERANCE["float32"] and r.where == "cpu/float32"
    # the same float32 result cannot pass the float64 tolerance
    with pytest.raises(AssertionError):
        check("float32 held to float64 tol", np.exp(x), torch.exp(t32), tol=checks.TOLERANCE["float64"])


@pytest.mark.parametrize("bad, why", [
    (np.ones((3, 2)), "shape"),
    (np.array([[1.0, np.nan], [1.0, 1.0], [1.0, 1.0]]).T, "non-finite"),
])
def test_shape_and_nan_fail(bad, why):
    with pytest.raises(AssertionError, match=why):
        check("bad", bad, np.ones((2, 3)))


def test_matching_infinities_pass_and_mismatched_fail():
    check("same -inf", np.array([-np.inf, 1.0]), np.array([-np.inf, 1.0]))
    with pytest.raises(AssertionError):
        check("opposite inf", np.array([np.inf, 1.0]), np.array([-np.inf, 1.0]))


def test_rel_error_definition():
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error([1.0], [3.0]) == pytest.approx(2.0 / 4.0)
    assert rel_error([0.0], [1e-12]) == pytest.approx(1e-12 / 1e-8)  # the 1e-8 floor


def test_numerical_grad_matches_known_derivative_and_restores_x():
    x = np.linspace(-1, 1, 7)
    x0 = x.copy()
    g = numerical_grad(lambda z: np.sum(z ** 3), x)
    assert np.allclose(g, 3 * x0 ** 2, atol=1e-8) and np.array_equal(x, x0)
    dout = np.arange(7.0)
    g = numerical_grad(lambda z: np.sin(z), x, dout)
    assert np.allclose(g, np.cos(x0) * dout, atol=1e-8)


def test_numerical_grad_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        numerical_grad(np.sum, np.ones(3, dtype=np.float32))


def test_grad_check_passes_and_fails():
    x = np.linspace(-1, 1, 5)
    grad_check("d sum(x^2)", lambda z: np.sum(z ** 2), x, 2 * x)
    with pytest.raises(AssertionError, match="finite diff"):
        grad_check("wrong d sum(x^2)", lambda z: np.sum(z ** 2), x, x)


def test_expect_failure_catches_and_refuses_a_passing_check(capsys):
    with expect_failure("1 + x for exp"):
        check("exp ~ 1 + x", 1 + np.ones(3), np.exp(np.ones(3)))
    assert "caught as expected" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="was not caught"):
        with expect_failure("a mistake that is not one"):
            check("exp", np.exp(np.ones(3)), np.exp(np.ones(3)))


def test_settings_and_tensor():
    (d1, t1), (d2, t2) = aicourse.settings("cpu")
    assert (t1, t2) == (torch.float64, torch.float32)
    t = aicourse.tensor(np.ones(3), "cpu", torch.float32, grad=True)
    assert t.requires_grad and t.dtype == torch.float32 and t.is_leaf


def test_summary_counts():
    n_before, caught_before = len(checks.RESULTS), len(checks.CAUGHT)
    check("one", np.ones(2), np.ones(2))
    with expect_failure("two"):
        check("two", np.ones(2), np.zeros(2))
    assert len(checks.RESULTS) == n_before + 2 and len(checks.CAUGHT) == caught_before + 1
    assert "mistakes caught" in aicourse.summary()


def test_check_bound_passes_fails_and_counts(capsys):
    n = len(checks.RESULTS)
    r = aicourse.check_bound("test accuracy", 0.9756, low=0.97, note="40 epochs")
    assert r.passed and capsys.readouterr().out.strip() == "PASS test accuracy | 0.9756 >= 0.97 | 40 epochs"
    with pytest.raises(AssertionError, match=r"FAIL gap \| 1.5 <= 1"):
        aicourse.check_bound("gap", 1.5, high=1.0)
    with pytest.raises(AssertionError):
        aicourse.check_bound("nan accuracy", float("nan"), low=0.0)
    with pytest.raises(ValueError):
        aicourse.check_bound("no bound", 1.0)
    assert len(checks.RESULTS) == n + 3


def test_a_cell_ending_in_a_check_shows_only_the_printed_line():
    from IPython.core.formatters import DisplayFormatter

    result = check("shown once", np.ones(2), np.ones(2))
    assert DisplayFormatter().format(result) == ({}, {})
