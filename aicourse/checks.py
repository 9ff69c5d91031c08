"""Comparisons that print one line and raise when they fail.

The tolerance policy of the course lives here and nowhere else.

    >>> check("relu forward", ours, torch_out)   # doctest: +SKIP
    PASS relu forward | (4,5) | max abs 0.0e+00 | max rel 0.0e+00 | tol 1e-10 | cpu/f64
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

#: Relative tolerance by the lower precision of the two things compared.
TOLERANCE = {
    "float64": 1e-10,   # torch on the CPU in float64 vs NumPy float64
    "float32": 1e-5,    # torch float32 (TF32 off) vs NumPy float64
    "float16": 5e-3,
    "bfloat16": 3e-2,
}
#: Centred finite differences in float64 with step FD_STEP.
FD_STEP = 1e-6
FD_TOLERANCE = 1e-6
#: Denominator floor of the relative error (the design page's 1e-8).
REL_FLOOR = 1e-8

_PRECISION_ORDER = ["float64", "float32", "bfloat16", "float16"]


#: Longest report line: a learner reads it without the window wrapping it mid-number.
LINE_WIDTH = 100
#: Print every check's own line instead of one line per group (a notebook's ``verbose`` parameter).
VERBOSE = False


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    shape: tuple
    max_abs: float
    max_rel: float
    tol: float
    where: str
    note: str = ""
    text: str = ""  # the middle of the line for checks that are not array comparisons

    def _ipython_display_(self) -> None:
        """A cell that ends in a check shows only the line the check printed, not this object."""

    @property
    def setting(self) -> str:
        """The short label of what was compared: ``cpu/f64``, ``cuda:0/f32``, ``fd``, ``numpy``, ``bound``."""
        if self.text:
            return "bound"
        return _short(self.where)

    @property
    def line(self) -> str:
        """One line of at most :data:`LINE_WIDTH` characters (a long name is shortened)."""
        status = "PASS" if self.passed else "FAIL"
        if self.text:
            tail = f" | {self.text}"
        else:
            shape = "scalar" if self.shape == () else str(self.shape).replace(" ", "")
            tail = (f" | {shape} | max abs {self.max_abs:.1e} | max rel {self.max_rel:.1e} | "
                    f"tol {_fmt_tol(self.tol)} | {self.setting}")
        head = _fit(f"{status} {self.name}", LINE_WIDTH - len(tail))
        line = head + tail
        return line + f" | {self.note}" if self.note and len(line) + 3 + len(self.note) <= LINE_WIDTH else line

    @property
    def message(self) -> str:
        """The line, and on a second line what did not fit in it (the note)."""
        return self.line if not self.note or self.note in self.line else f"{self.line}\n    note: {self.note}"


def _fmt_tol(tol: float) -> str:
    return f"{tol:.1e}".replace(".0e", "e")


def _short(where: str) -> str:
    """``cuda:0/float32`` -> ``cuda:0/f32``; ``numpy/float64`` -> ``numpy``; finite differences -> ``fd``."""
    if where.startswith("fd"):
        return "fd"
    place, _, dtype = where.partition("/")
    if place == "numpy":
        return "numpy"
    return f"{place}/{dtype.replace('float', 'f')}"


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[:max(width - 1, 8)] + "…"


#: Every check run in this process, in order (a notebook's summary cell counts them).
RESULTS: list[CheckResult] = []
#: The mistakes that :func:`expect_failure` saw caught.
CAUGHT: list[str] = []
#: Open :func:`group` blocks and :func:`expect_failure` blocks, innermost last.
_OPEN: list = []


def to_numpy(x) -> np.ndarray:
    """A NumPy copy of an array, tensor (any device, grad or not) or number."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _dtype_name(x) -> str:
    if isinstance(x, torch.Tensor):
        return str(x.dtype).replace("torch.", "")
    return str(np.asarray(x).dtype)


def _where(*xs) -> tuple[str, str]:
    """(location/dtype label, precision that sets the tolerance) of the inputs."""
    dtypes = [_dtype_name(x) for x in xs]
    floats = [d for d in dtypes if d in _PRECISION_ORDER]
    precision = max(floats, key=_PRECISION_ORDER.index) if floats else "float64"
    devices = [str(x.device) for x in xs if isinstance(x, torch.Tensor)]
    place = devices[-1] if devices else "numpy"
    return f"{place}/{precision}", precision


def rel_error(a, b) -> float:
    """max|a - b| / max(1e-8, max|a| + max|b|): the course's one relative error."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    diff = np.abs(a - b)
    scale = np.max(np.abs(a)) + np.max(np.abs(b))
    return float(np.max(diff) / max(REL_FLOOR, scale))


def _report(result: CheckResult) -> CheckResult:
    """Record a result; print its line unless a group collects it; raise with the line if it failed.

    Inside :func:`expect_failure` a failing check prints nothing: the caught line says it all.
    """
    mistakes = [i for i, block in enumerate(_OPEN) if isinstance(block, _Mistake)]
    inside_mistake = bool(mistakes)
    if not inside_mistake:  # a pass inside expect_failure (or a grader) is not one of the lesson's checks
        RESULTS.append(result)
    # a check inside expect_failure belongs only to the groups opened inside that block (a grader's)
    groups = [block for block in _OPEN[mistakes[-1] + 1 if mistakes else 0:] if isinstance(block, _Group)]
    if result.passed:
        if inside_mistake:
            if groups:
                groups[-1].results.append(result)
            return result
        if groups:
            groups[-1].results.append(result)
        if not groups:
            print(result.line)
        elif VERBOSE:  # indented: the group's own line counts these checks, and a reader sees them as its parts
            print("  " + result.line)
        return result
    if not inside_mistake:
        print(result.message)
    raise CheckFailed(result)


class CheckFailed(AssertionError):
    """A check that failed; ``str()`` is its report line (and note)."""

    def __init__(self, result: CheckResult):
        super().__init__(result.message)
        self.result = result


def check(name: str, ours, reference, *, tol: float | None = None, note: str = "") -> CheckResult:
    """Compare ``ours`` with ``reference``; report one line; raise if it fails.

    Both may be NumPy arrays, numbers or torch tensors on any device. The
    tolerance comes from :data:`TOLERANCE` for the lower precision of the two,
    unless ``tol`` is given (then say why in ``note``). Shapes must match exactly,
    and any NaN, or an infinity the other side does not have, fails. Inside a
    :func:`group` a passing check prints nothing; the group prints one line.
    """
    where, precision = _where(ours, reference)
    return _compare(name, ours, reference, TOLERANCE[precision] if tol is None else float(tol), where, note)


def _compare(name, ours, reference, tol, where, note) -> CheckResult:
    a = to_numpy(ours).astype(np.float64)
    b = to_numpy(reference).astype(np.float64)
    if a.shape != b.shape:
        result = CheckResult(name, False, a.shape, float("nan"), float("nan"), tol, where,
                             f"shape {a.shape} != reference shape {b.shape}")
    else:
        same_inf = np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b))
        bad = (~np.isfinite(a) | ~np.isfinite(b)) & ~same_inf
        if bad.any():
            result = CheckResult(name, False, a.shape, float("nan"), float("nan"), tol, where,
                                 f"{int(bad.sum())} non-finite value(s) differ (nan/inf)")
        else:
            a_f, b_f = np.where(same_inf, 0.0, a), np.where(same_inf, 0.0, b)
            max_abs = float(np.max(np.abs(a_f - b_f))) if a.size else 0.0
            rel = rel_error(a_f, b_f)
            result = CheckResult(name, rel <= tol, a.shape, max_abs, rel, tol, where, note)
    return _report(result)


cmp = check  # Karpathy's name for it


def check_bound(name: str, value: float, *, low: float | None = None, high: float | None = None,
                note: str = "") -> CheckResult:
    """Check that a measured number (an accuracy, a gap) lies in [low, high]; one line, raise if not.

        check_bound("test accuracy", 0.9756, low=0.97)
        PASS test accuracy | 0.9756 >= 0.97
    """
    if low is None and high is None:
        raise ValueError("check_bound needs low, high or both")
    value = float(value)
    ok = np.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
    if ok:
        parts = ([f"{value:.4g} >= {low:.4g}"] if low is not None else []) + \
                ([f"{value:.4g} <= {high:.4g}"] if high is not None else [])
    elif not np.isfinite(value):
        parts = [f"{value} is not a finite number"]
    else:  # say the side that was violated, so the line does not read as a true statement
        parts = [f"{value:.4g} < {low:.4g}, wanted >= {low:.4g}" if low is not None and value < low
                 else f"{value:.4g} > {high:.4g}, wanted <= {high:.4g}"]
    result = CheckResult(name, bool(ok), (), float("nan"), float("nan"), float("nan"), "", note,
                         text=" and ".join(parts))
    return _report(result)


class _Group:
    def __init__(self, name: str):
        self.name = name
        self.results: list[CheckResult] = []

    @property
    def line(self) -> str:
        """``PASS name | 24 checks | worst rel: cpu/f64 3.5e-16, cpu/f32 1.2e-07, fd 3.1e-09``."""
        worst: dict[str, float] = {}
        for r in self.results:
            if r.setting != "bound":
                worst[r.setting] = max(worst.get(r.setting, 0.0), r.max_rel)
        n = len(self.results)
        tail = f" | {n} check{'s' if n != 1 else ''}"
        if worst:
            tail += " | worst rel: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
        return _fit(f"PASS {self.name}", LINE_WIDTH - len(tail)) + tail


@contextmanager
def group(name: str) -> Iterator[_Group]:
    """Run related checks and print one line for all of them when every one passed.

        with group("LSTM vs nn.LSTM, forward and backward"):
            for d, dtype in settings(dev):
                ...
                check("h_n", h_n, h_n_t)
                check("dW_ih", dW_ih, W_ih_t.grad)
        PASS LSTM vs nn.LSTM, forward and backward | 4 checks | worst rel: cpu/f64 1.1e-16, cpu/f32 5.2e-08

    A failing check prints its own full line and raises at once. With
    ``aicourse.checks.VERBOSE`` (a notebook's ``verbose`` parameter) every check
    prints its own line as well. Groups may nest; the innermost one collects.
    """
    block = _Group(name)
    _OPEN.append(block)
    try:
        yield block
    finally:
        _OPEN.remove(block)
    if not block.results:
        raise AssertionError(f"group {name!r} ran no check: a group that checks nothing cannot fail")
    outer = [b for b in _OPEN if isinstance(b, _Group)]
    if outer:  # a nested group adds its results to the enclosing one and prints nothing itself
        outer[-1].results.extend(block.results)
    else:
        print(block.line)


def numerical_grad(f: Callable[[np.ndarray], np.ndarray | float], x: np.ndarray,
                   dout: np.ndarray | None = None, h: float = FD_STEP) -> np.ndarray:
    """Centred finite-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    ``x`` (float64) is perturbed in place one entry at a time and restored, so
    ``f`` may read it through a closure. With ``dout=None``, ``f`` must return a scalar.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("numerical_grad needs a float64 NumPy array (finite differences in float32 are noise).")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = f(x)
        x[i] = old - h
        minus = f(x)
        x[i] = old
        if dout is None:
            grad[i] = (float(plus) - float(minus)) / (2 * h)
        else:
            grad[i] = np.sum((np.asarray(plus) - np.asarray(minus)) * dout) / (2 * h)
    return grad


def grad_check(name: str, f: Callable, x: np.ndarray, analytic, dout: np.ndarray | None = None,
               *, h: float = FD_STEP, tol: float = FD_TOLERANCE) -> CheckResult:
    """Check an analytic gradient against centred finite differences (float64)."""
    numeric = numerical_grad(f, x, dout, h)
    return _compare(name, analytic, numeric, float(tol), f"fd h={h:g}", "")


class _Mistake:
    def __init__(self, mistake: str):
        self.mistake = mistake


@contextmanager
def expect_failure(mistake: str, exceptions: tuple = (AssertionError,)) -> Iterator[None]:
    """Run a check that *must* fail (a common mistake); print one line saying it was caught.

        with expect_failure("tanh' = (1 - tanh^2)/(1 + tanh^2)"):
            check("tanh backward", wrong, reference)
        caught: tanh' = (1 - tanh^2)/(1 + tanh^2) | by 'tanh backward': max rel 2.1e-01 > tol 1e-10

    Raises ``AssertionError`` if nothing failed: the check cannot tell the
    mistake from the right formula.
    """
    block = _Mistake(mistake)
    _OPEN.append(block)
    try:
        yield
    except exceptions as exc:
        CAUGHT.append(mistake)
        if isinstance(exc, CheckFailed):
            r = exc.result
            how = (r.note if np.isnan(r.max_rel) and not r.text else r.text if r.text else
                   f"max rel {r.max_rel:.1e} > tol {_fmt_tol(r.tol)}")
            print(caught_line(mistake, how, r.name))
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            print(caught_line(mistake, f"{type(exc).__name__}: {first}"))
    else:
        raise AssertionError(f"the mistake {mistake!r} was not caught: the check passed, so it cannot tell "
                             "this wrong formula from the right one")
    finally:
        _OPEN.remove(block)


def say(*parts, sep: str = " ", width: int | None = None) -> None:
    """Print a sentence of measured numbers wrapped at word boundaries to :data:`LINE_WIDTH` characters
    (continuation lines indented by two spaces), so that no window wraps it mid-number."""
    import textwrap

    width = width or LINE_WIDTH
    for paragraph in sep.join(str(p) for p in parts).split("\n"):
        print(textwrap.fill(paragraph, width, subsequent_indent="  ", break_long_words=False,
                            break_on_hyphens=False) if len(paragraph) > width else paragraph)


def caught_line(mistake: str, how: str, by: str | None = None) -> str:
    """``caught: MISTAKE | by 'CHECK': HOW`` in at most :data:`LINE_WIDTH` characters.

    The evidence (``how``: the numbers that failed) is kept whole; the check's name is shortened first,
    then the mistake, then the name is dropped; only an evidence longer than a whole line is cut.
    """
    def line(m, b):
        return f"caught: {m}" + (f" | by '{b}': {how}" if b is not None else f" | {how}")

    if len(line(mistake, by)) <= LINE_WIDTH:
        return line(mistake, by)
    if by is not None:
        room = LINE_WIDTH - len(line(mistake, ""))
        if room >= 12:
            return line(mistake, _fit(by, room))
        by = _fit(by, 12) if LINE_WIDTH - len(line("", _fit(by, 12))) >= 24 else None
    room = LINE_WIDTH - len(line("", by))
    if room >= 24:
        return line(_fit(mistake, room), by)
    return _fit(line(_fit(mistake, 24), None), LINE_WIDTH)


def report_counts(line: str) -> tuple[int, int, dict[str, float]]:
    """(checks passed, mistakes caught, worst relative error per setting) that one printed line reports.

    The inverse of the lines this module prints, so a runner reading an executed
    notebook counts every individual check, grouped or not.
    """
    if line.startswith("caught: "):
        return 0, 1, {}
    if not line.startswith("PASS "):
        return 0, 0, {}
    fields = line.split(" | ")
    m = re.fullmatch(r"(\d+) checks?", fields[1]) if len(fields) > 1 else None
    if m:
        worst = {}
        if len(fields) > 2 and fields[2].startswith("worst rel: "):
            for item in fields[2][len("worst rel: "):].split(", "):
                key, _, value = item.rpartition(" ")
                worst[key] = float(value)
        return int(m.group(1)), 0, worst
    if len(fields) >= 6 and fields[3].startswith("max rel "):
        return 1, 0, {fields[5]: float(fields[3][len("max rel "):])}
    return 1, 0, {}


def is_report_line(line: str) -> bool:
    """Whether a printed line is a check's or a group's report (what a cell's check count counts)."""
    return line.startswith(("PASS ", "FAIL ", "caught: "))


def settings(device) -> list[tuple[torch.device, torch.dtype]]:
    """The two settings every formula is verified in: (cpu, float64) and (device, float32)."""
    return [(torch.device("cpu"), torch.float64), (torch.device(device), torch.float32)]


def tensor(x, device="cpu", dtype=torch.float64, grad: bool = False) -> torch.Tensor:
    """A torch copy of a NumPy array on ``device`` in ``dtype`` (a leaf with grad if asked)."""
    t = torch.as_tensor(np.asarray(x), dtype=dtype, device=device).clone()
    return t.requires_grad_(grad)


def summary() -> str:
    """One line counting the checks run so far (a notebook's last cell prints it)."""
    passed = sum(r.passed for r in RESULTS)
    uncaught = len(RESULTS) - passed  # RESULTS holds no check run inside expect_failure or a grader
    text = f"{passed} checks passed; {len(CAUGHT)} mistakes caught by a failing check"
    return text + (f"; {uncaught} other checks failed" if uncaught > 0 else "")
