"""Device selection, seeding and the numerics settings every notebook shares."""

from __future__ import annotations

import os
import platform
import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


class ParameterError(ValueError):
    """A notebook parameter has a value the notebook cannot use."""


def _has_mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` into a usable ``torch.device``.

    ``auto`` picks cuda, then mps, then cpu. Asking for a device this machine does
    not have raises :class:`ParameterError` with one sentence saying so.
    """
    if not isinstance(device, str):
        raise ParameterError(f"device must be a string such as 'auto', 'cpu', 'cuda' or 'mps', not {device!r}.")
    name = device.strip().lower()
    base = name.split(":")[0]
    if base not in DEVICES or (":" in name and base != "cuda"):
        raise ParameterError(f"Unknown device {device!r}: use one of 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _has_mps() else torch.device("cpu")
    if base == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"device={device!r} was asked for, but torch finds no CUDA GPU on this machine "
                                 "(use device='auto' or 'cpu').")
        if ":" in name:
            index = name.split(":", 1)[1]
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise ParameterError(f"device={device!r} does not exist: this machine has "
                                     f"{torch.cuda.device_count()} CUDA device(s).")
        return torch.device(name)
    if base == "mps" and not _has_mps():
        raise ParameterError(f"device={device!r} was asked for, but MPS is not available on this machine "
                             "(use device='auto' or 'cpu').")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (all devices') random generators."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, not {seed!r}.")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too


def set_numerics(tf32: bool = False, deterministic: bool = True) -> None:
    """TF32 off (unless asked), deterministic algorithms on: results identical run to run."""
    # cuBLAS needs this before its first call to be deterministic.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = deterministic
    # Strict: an operation without a deterministic implementation raises instead of warning, so
    # "identical run to run" holds on a GPU too (see allow_nondeterministic for the known exceptions).
    _use_deterministic_algorithms(deterministic)


def _use_deterministic_algorithms(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode)`` without importing torch.compile's stack on the way.

    Since torch 2.6 the public call imports ``torch._inductor`` (1–2 s: most of a notebook's set-up cell) only to
    set ``torch._inductor.config.deterministic``, which matters to ``torch.compile`` alone; no notebook compiles.
    The switch itself is the C++ flag that the public call sets next. Where that flag's setter is missing, or
    the compiler is already loaded, the public call runs; ``torch.are_deterministic_algorithms_enabled()``
    reads the flag back (tests/test_device.py).
    """
    import sys

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode)
    else:
        setter(mode, warn_only=False)


@contextmanager
def allow_nondeterministic(reason: str) -> Iterator[None]:
    """Let one block use an operation that torch has no deterministic implementation of.

    Deterministic mode is strict: such an operation raises (torch's documentation of
    ``torch.use_deterministic_algorithms`` lists them: on CUDA, for example, the backward
    of adaptive average pooling and of ``F.interpolate``, ``torch.cumsum`` and ``NLLLoss``
    on images). Where a notebook must still use one on the device, it says why here;
    torch then only warns, and the rest of the notebook stays strict.
    """
    if not reason.strip():
        raise ValueError("say why the block may be nondeterministic")
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(was_on, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn)


def device_name(device: torch.device | str) -> str:
    """Human name of a device: the GPU's model for CUDA, the processor otherwise."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    try:  # Linux: the processor's model name
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1]
                    for noise in ("(R)", "(TM)", " CPU", " Processor", " processor"):
                        name = name.replace(noise, "")
                    return " ".join(name.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def env_summary(device: torch.device | str = "cpu", width: int = 100) -> str:
    """One line of at most ``width`` characters: Python, NumPy, torch, CPU threads, the device, TF32.

    The device's model name is shortened (with an ellipsis) when the line would be longer.
    """
    device = torch.device(device)
    head = (f"python {platform.python_version()} | numpy {np.__version__} | torch {torch.__version__} | "
            f"threads {torch.get_num_threads()} | {device} (")
    tail = f") | tf32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}"
    name, room = device_name(device), width - len(head) - len(tail)
    if len(name) > room:
        name = name[:max(room - 1, 3)] + "…"
    return head + name + tail


#: Environment variable through which the runner and the test workers tell a kernel how many
#: notebooks run at once on this machine (so that each takes its share of the cores).
JOBS_VAR = "AICOURSE_JOBS"


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """The cores divided by the notebooks running at once (``AICOURSE_JOBS``, 1 if unset), at least 1."""
    raw = os.environ.get(JOBS_VAR, "1")
    try:
        jobs = max(1, int(raw))
    except ValueError:
        raise ParameterError(f"{JOBS_VAR} must be a whole number of notebooks running at once, not {raw!r}.") from None
    return max(1, available_cores() // jobs)


def set_threads(threads: int = 0) -> int:
    """Cap torch's intra-op pool and every BLAS/OpenMP pool (threadpoolctl) at ``threads``
    (0: :func:`default_threads`), so that notebooks side by side never oversubscribe the cores."""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ParameterError(f"threads must be a whole number >= 0 (0: automatic), not {threads!r}.")
    n = int(threads) or default_threads()
    torch.set_num_threads(n)
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n)  # NumPy's BLAS and OpenMP pools, for the rest of the process
    return n


def setup(seed: int = 0, device: str = "auto", *, verbose: bool = False, quiet: bool = False,
          threads: int = 0) -> torch.device:
    """The set-up cell of every notebook: validate, seed, fix numerics, cap threads, report.

    ``verbose`` (a notebook parameter) prints every check's own line instead of one
    line per group; ``quiet`` skips the environment line; ``threads`` (a notebook parameter)
    sets the CPU threads of torch and BLAS, 0 meaning the cores divided by the notebooks
    running at once (see :func:`set_threads`). Returns the resolved ``torch.device``.
    """
    from . import checks

    if not isinstance(verbose, bool):
        raise ParameterError(f"verbose must be True or False, not {verbose!r}.")
    dev = resolve_device(device)
    set_threads(threads)
    seed_everything(seed)
    set_numerics()
    checks.VERBOSE = verbose
    if not quiet:
        print(env_summary(dev))
    return dev


def check_param(name: str, value, kind: type | tuple[type, ...], *, choices=None, low=None, high=None,
                above=None):
    """Validate one notebook parameter; a bad value raises one readable sentence.

    ``low``/``high`` are inclusive bounds, ``above`` a strict one (a learning rate: ``above=0``).

    >>> check_param("epochs", 3, int, low=1)
    3
    """
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok_type = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok_type = True
    if not ok_type:
        want = " or ".join(k.__name__ for k in kinds)
        raise ParameterError(f"Parameter {name!r} must be {want}, got {value!r} ({type(value).__name__}).")
    if choices is not None and value not in choices:
        raise ParameterError(f"Parameter {name!r} must be one of {list(choices)}, got {value!r}.")
    if above is not None and not value > above:
        raise ParameterError(f"Parameter {name!r} must be > {above}, got {value!r}.")
    if low is not None and value < low:
        raise ParameterError(f"Parameter {name!r} must be >= {low}, got {value!r}.")
    if high is not None and value > high:
        raise ParameterError(f"Parameter {name!r} must be <= {high}, got {value!r}.")
    return value
