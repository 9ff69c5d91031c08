"""Loaded by pytest before anything is collected (tests/ and notebooks/ alike).

pytest-xdist runs two notebooks at once on a 2-core CI machine. If each kernel's
torch/OpenMP pool also used every core, the threads would oversubscribe the
cores and small tensor ops would slow down many times over while the pools spin.
So each worker (and the kernels it starts, which inherit the environment) gets
one thread unless the caller chose otherwise.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
