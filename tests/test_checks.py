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
    assert out.startswith("PASS tanh | (3,4) | max abs ") and out.endswith(" | tol 1e-10 | cpu/f64")
    assert "max rel" in out and len(out) <= checks.LINE_WIDTH


def test_check_fails_with_its_line():
    x = np.linspace(-2, 2, 12)
    with pytest.raises(AssertionError, match=r"FAIL wrong tanh \| \(12,\) \| max abs"):
        check("wrong tanh", np.tanh(x) * (1 + 1e-8), torch.tanh(torch.from_numpy(x)))


def test_tolerance_follows_lower_precision():
    x = np.random.default_rng(0).standard_normal(50)
    t32 = torch.from_numpy(x).float()
    r = check("float32 exp", np.exp(x), torch.exp(t32))
    assert r.tol == checks.TOLERANCE["float32"] and r.where == "cpu/float32" and r.setting == "cpu/f32"
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
    with pytest.raises(AssertionError, match=r"tol 1e-06 \| fd$"):
        grad_check("wrong d sum(x^2)", lambda z: np.sum(z ** 2), x, x)


def test_expect_failure_catches_and_refuses_a_passing_check(capsys):
    with expect_failure("1 + x for exp"):
        check("exp ~ 1 + x", 1 + np.ones(3), np.exp(np.ones(3)))
    out = capsys.readouterr().out
    assert out == "caught: 1 + x for exp | by 'exp ~ 1 + x': max rel 1.5e-01 > tol 1e-10\n"  # one line, not two
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
    assert len(checks.RESULTS) == n_before + 1 and len(checks.CAUGHT) == caught_before + 1
    assert "mistakes caught" in aicourse.summary()


def test_a_pass_inside_expect_failure_is_not_counted(capsys):
    """Only checks that can fail count: a pass before the failing check of a caught mistake is not one."""
    n_before = len(checks.RESULTS)
    with expect_failure("second row wrong"):
        check("first row", np.ones(2), np.ones(2))
        check("second row", np.ones(2), np.zeros(2))
    assert len(checks.RESULTS) == n_before
    assert capsys.readouterr().out.startswith("caught: second row wrong")


def test_check_bound_passes_fails_and_counts(capsys):
    n = len(checks.RESULTS)
    r = aicourse.check_bound("test accuracy", 0.9756, low=0.97, note="40 epochs")
    assert r.passed and capsys.readouterr().out.strip() == "PASS test accuracy | 0.9756 >= 0.97 | 40 epochs"
    with pytest.raises(AssertionError, match=r"FAIL gap \| 1.5 > 1, wanted <= 1"):
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


def test_group_prints_one_line_with_count_and_worst_error_per_setting(capsys):
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    n = len(checks.RESULTS)
    with aicourse.group("tanh, both settings") as g:
        for d, dtype in aicourse.settings("cpu"):
            check("tanh", np.tanh(x), torch.tanh(aicourse.tensor(x, d, dtype)))
        grad_check("d sum(x^2)", lambda z: np.sum(z ** 2), x.copy(), 2 * x)
        aicourse.check_bound("an accuracy", 0.98, low=0.97)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and len(checks.RESULTS) == n + 4 and len(g.results) == 4
    assert out[0].startswith("PASS tanh, both settings | 4 checks | worst rel: cpu/f64 ")
    assert ", cpu/f32 " in out[0] and ", fd " in out[0]
    assert checks.report_counts(out[0])[0] == 4
    f32 = checks.report_counts(out[0])[2]["cpu/f32"]
    assert f32 == pytest.approx(max(r.max_rel for r in g.results if r.setting == "cpu/f32"), rel=0.05)


def test_a_failing_check_in_a_group_prints_its_full_line_and_raises(capsys):
    x = np.ones(3)
    with pytest.raises(AssertionError, match=r"^FAIL second \| \(3,\)"):
        with aicourse.group("two checks"):
            check("first", x, x)
            check("second", x, 2 * x)
    assert capsys.readouterr().out.startswith("FAIL second | (3,) | max abs 1.0e+00")


def test_verbose_prints_every_line_and_the_group_line(capsys, monkeypatch):
    monkeypatch.setattr(checks, "VERBOSE", True)
    with aicourse.group("pair"):
        check("a", np.ones(2), np.ones(2))
        check("b", np.ones(2), np.ones(2))
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" |")[0] for line in out] == ["  PASS a", "  PASS b", "PASS pair"]
    assert sum(checks.report_counts(line)[0] for line in out) == 2  # the runner counts each check once


def test_an_empty_group_is_an_error():
    with pytest.raises(AssertionError, match="ran no check"):
        with aicourse.group("nothing"):
            pass


def test_nested_groups_report_once(capsys):
    with aicourse.group("outer"):
        with aicourse.group("inner"):
            check("a", np.ones(2), np.ones(2))
        check("b", np.ones(2), np.ones(2))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("PASS outer | 2 checks")


def test_lines_fit_the_width_and_counts_read_back(capsys):
    long = "a very long name that says far too much about what is compared " * 3
    r = check(long, np.ones((32, 3, 28, 28)), np.ones((32, 3, 28, 28)), note="a note " * 20)
    assert len(r.line) <= checks.LINE_WIDTH and r.line.endswith("| numpy")
    with expect_failure("a mistake described at far greater length than any line should ever hold " * 2):
        check(long, np.ones(3), np.zeros(3))
    out = capsys.readouterr().out.splitlines()
    assert all(len(line) <= checks.LINE_WIDTH for line in out)
    assert checks.report_counts(out[0]) == (1, 0, {"numpy": 0.0})
    assert checks.report_counts(out[1]) == (0, 1, {})
    assert checks.report_counts("PASS x | 0.98 >= 0.97") == (1, 0, {})
    assert checks.report_counts("some other print | 3 checks") == (0, 0, {})


def test_a_non_check_exception_is_caught_in_one_line(capsys):
    with expect_failure("LSTM fed (batch, features)", (RuntimeError,)):
        raise RuntimeError("input.size(-1) must be equal to input_size\nsecond line")
    assert capsys.readouterr().out == ("caught: LSTM fed (batch, features) | RuntimeError: "
                                       "input.size(-1) must be equal to input_size\n")


def test_allow_nondeterministic_restores_strict_mode():
    aicourse.set_numerics()
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    with aicourse.allow_nondeterministic("max_pool2d backward on CUDA"):
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    with pytest.raises(ValueError):
        with aicourse.allow_nondeterministic(" "):
            pass


def test_a_caught_line_keeps_its_numbers_whole():
    """The evidence of a caught mistake survives a long mistake and a long check name: the name and the
    mistake are shortened first."""
    from aicourse.checks import caught_line

    line = caught_line("m" * 90, "max rel 4.6e-01 > tol 1e-10", "a long check name " * 4)
    assert len(line) <= checks.LINE_WIDTH and line.endswith("max rel 4.6e-01 > tol 1e-10")
    line = caught_line("short", "max rel 3.2e+00 > tol 1e-05", "n" * 120)
    assert len(line) <= checks.LINE_WIDTH and line.endswith("max rel 3.2e+00 > tol 1e-05")


def test_say_wraps_a_long_sentence_at_words(capsys):
    aicourse.say("n =   32: float32 is 2.16x (NumPy) and 0.99x (torch) as fast as float64; torch takes 1.25x",
                 "(float64) and 2.72x (float32) NumPy's time")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(len(line) <= checks.LINE_WIDTH for line in lines)
    assert lines[1].startswith("  ") and "2.72x" in lines[1]
