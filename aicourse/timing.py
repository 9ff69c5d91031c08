"""Fair timings of NumPy vs torch on the CPU vs torch on a device.

Every case runs under ``torch.utils.benchmark.Timer`` (which synchronises CUDA
around each measurement) with the same thread count for NumPy's BLAS (through
threadpoolctl) and torch's intra-op pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import contextlib
import io
import logging

import torch
from threadpoolctl import threadpool_limits

# On a CUDA build of torch without a GPU, importing torch.utils.benchmark makes torch.utils.cpp_extension
# log "No CUDA runtime is found" to stderr (it looks for a compiler toolchain the course never uses).
# (torch 2.5 prints it to sys.stderr, later releases log it): silence both, for this import only.
_cpp_log = logging.getLogger("torch.utils.cpp_extension")
_level = _cpp_log.level
_cpp_log.setLevel(logging.ERROR)
try:
    with contextlib.redirect_stderr(io.StringIO()):
        import torch.utils.benchmark as benchmark
finally:
    _cpp_log.setLevel(_level)


@dataclass
class Timing:
    name: str
    median_s: float
    iqr_s: float
    runs: int
    threads: int
    flops: float | None = None

    @property
    def gflops(self) -> float | None:
        return None if not self.flops else self.flops / self.median_s / 1e9


class TimingTable(list):
    """A list of :class:`Timing` that prints as a table."""

    def __str__(self) -> str:
        base = self[0].median_s if self else 1.0
        head = f"{'case':<28} {'median':>11} {'IQR':>10} {'runs':>6} {'threads':>7} {'GFLOP/s':>9} {'vs first':>9}"
        rows = [head, "-" * len(head)]
        for t in self:
            gf = f"{t.gflops:9.2f}" if t.gflops is not None else f"{'-':>9}"
            rows.append(f"{t.name:<28} {_fmt(t.median_s):>11} {_fmt(t.iqr_s):>10} {t.runs:>6} "
                        f"{t.threads:>7} {gf} {base / t.median_s:8.2f}x")
        return "\n".join(rows)

    __repr__ = __str__

    def by_name(self, name: str) -> Timing:
        return next(t for t in self if t.name == name)


def _fmt(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


#: Fewest timed blocks behind a median: with fewer, the IQR (the noise guard) is meaningless.
MIN_RUNS = 5


def time_it(name: str, fn: Callable[[], object], *, threads: int | None = None,
            flops: float | None = None, min_run_time: float = 0.2) -> Timing:
    """Time one zero-argument callable: the median and IQR of at least :data:`MIN_RUNS` timed blocks.

    ``blocked_autorange`` fits as many blocks as ``min_run_time`` allows; a call slower than a fifth of
    it would leave one block (IQR 0, a noise guard that cannot fire), so such a case is timed again in
    :data:`MIN_RUNS` blocks of as many calls each as fit in a fifth of ``min_run_time`` (at least one).
    """
    threads = threads or torch.get_num_threads()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, label=name)
    with threadpool_limits(limits=threads):
        fn()  # warm-up: allocations, lazy CUDA init, kernel selection
        m = timer.blocked_autorange(min_run_time=min_run_time)
        if len(m.times) < MIN_RUNS:
            number = max(1, int(min_run_time / MIN_RUNS / m.median))
            m = benchmark.Measurement.merge([timer.timeit(number) for _ in range(MIN_RUNS)])[0]
    return Timing(name, m.median, m.iqr, len(m.times), threads, flops)


def compare(cases: dict[str, Callable[[], object]], *, threads: int | None = None,
            flops: float | None = None, min_run_time: float = 0.2) -> TimingTable:
    """Time several implementations of the same computation; first row is the baseline.

    ``flops`` (the work of one call) adds an achieved GFLOP/s column.
    """
    return TimingTable(time_it(name, fn, threads=threads, flops=flops, min_run_time=min_run_time)
                       for name, fn in cases.items())
