"""Comparisons that print one line and raise when they fail.

The tolerance policy of the course lives here and nowhere else.

    >>> check("relu forward", ours, torch_out)   # doctest: +SKIP
    PASS relu forward | shape (4, 5) | max abs 0.0e+00 | max rel 0.0e+00 | tol 1e-10 | cpu/float64
"""

from __future__ import annotations

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
    def line(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        if self.text:
            return f"{status} {self.name} | {self.text}" + (f" | {self.note}" if self.note else "")
        text = (f"{status} {self.name} | shape {self.shape} | max abs {self.max_abs:.1e} | "
                f"max rel {self.max_rel:.1e} | tol {f'{self.tol:.1e}'.replace('.0e', 'e')} | {self.where}")
        return text + (f" | {self.note}" if self.note else "")


#: Every check run in this process, in order (a notebook's summary cell counts them).
RESULTS: list[CheckResult] = []
#: The mistakes that :func:`expect_failure` saw caught.
CAUGHT: list[str] = []


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


def check(name: str, ours, reference, *, tol: float | None = None, note: str = "") -> CheckResult:
    """Compare ``ours`` with ``reference``; print one report line; raise if it fails.

    Both may be NumPy arrays, numbers or torch tensors on any device. The
    tolerance comes from :data:`TOLERANCE` for the lower precision of the two,
    unless ``tol`` is given (then say why in ``note``). Shapes must match exactly,
    and any NaN, or an infinity the other side does not have, fails.
    """
    where, precision = _where(ours, reference)
    tol = TOLERANCE[precision] if tol is None else float(tol)
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
    RESULTS.append(result)
    print(result.line)
    if not result.passed:
        raise AssertionError(result.line)
    return result


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
    parts = ([f"{value:.4g} >= {low:.4g}"] if low is not None else []) + \
            ([f"{value:.4g} <= {high:.4g}"] if high is not None else [])
    result = CheckResult(name, bool(ok), (), float("nan"), float("nan"), float("nan"), "", note,
                         text=" and ".join(parts))
    RESULTS.append(result)
    print(result.line)
    if not result.passed:
        raise AssertionError(result.line)
    return result


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
    return check(name, analytic, numeric, tol=tol, note=f"finite diff h={h:g}")


@contextmanager
def expect_failure(mistake: str, exceptions: tuple = (AssertionError,)) -> Iterator[None]:
    """Run a check that *must* fail (a common mistake); fail loudly if it passes.

        with expect_failure("tanh' = (1 - tanh^2)/(1 + tanh^2)"):
            check("wrong tanh'", wrong, reference)
    """
    try:
        yield
    except exceptions as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        CAUGHT.append(mistake)
        print(f"caught as expected ({mistake}): {type(exc).__name__}: {first}")
    else:
        raise AssertionError(f"the mistake {mistake!r} was not caught: the check passed, so it cannot tell "
                             "this wrong formula from the right one")


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
    uncaught = len(RESULTS) - passed - len(CAUGHT)  # a failure outside expect_failure raised already
    text = f"{passed} checks passed; {len(CAUGHT)} mistakes caught by a failing check"
    return text + (f"; {uncaught} other checks failed" if uncaught > 0 else "")
