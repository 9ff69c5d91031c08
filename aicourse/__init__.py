"""aicourse: the small helper package shared by the course notebooks.

- device and reproducibility: :func:`setup`, :func:`resolve_device`, :func:`seed_everything`
- checks: :func:`check` (alias :func:`cmp`), :func:`check_bound`, :func:`grad_check`, :func:`group`,
  :func:`expect_failure`; :func:`say` prints a measured sentence wrapped to 100 characters
- exercises: :func:`grade` (one line: not attempted / solved / wrong), :func:`assert_solved`
- timing: :func:`compare` over ``torch.utils.benchmark``
- data: :func:`load_digits`
- notebooks: the runner (``aicourse run``), conventions and export (``aicourse export``)
- lessons: code exported from the notebooks (``aicourse.lessons.<name>``)
"""

from .checks import (FD_STEP, FD_TOLERANCE, TOLERANCE, check, check_bound, cmp, expect_failure, grad_check, group,
                     numerical_grad, rel_error, say, settings, summary, tensor, to_numpy)
from .data import batches, load_digits
from .exercises import assert_solved, grade
from .logs import log_run, read_images, read_scalars, writer
from .device import (ParameterError, allow_nondeterministic, check_param, device_name, env_summary, resolve_device,
                     seed_everything, set_numerics, setup)

__version__ = "0.1.0"


def __getattr__(name):
    # timing imports torch.utils.benchmark, which on a CUDA build of torch without a GPU prints a line
    # about CUDA_HOME; load it when a notebook first times something, not with every import of the package
    if name in ("compare", "time_it"):
        from . import timing
        return getattr(timing, name)
    raise AttributeError(f"module 'aicourse' has no attribute {name!r}")
