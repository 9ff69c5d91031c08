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


# --------------------------------------------------------------------------- a cell's checks at a glance
# Every notebook cell that nbval runs is held to the course's reading rule: at most MAX_CHECK_LINES
# report lines (PASS/FAIL/caught) per cell, none longer than aicourse.checks.LINE_WIDTH characters,
# and every exercise's grader says "solved" (the notebooks carry their solutions).
# Group related checks with aicourse.group(...) to stay within it.
import re  # noqa: E402

import pytest  # noqa: E402

MAX_CHECK_LINES = 12


def check_line_problems(text: str) -> list[str]:
    """What breaks the reading rule in one cell's printed text ([] if nothing)."""
    from aicourse.checks import LINE_WIDTH, is_report_line

    lines = [line for line in text.splitlines() if is_report_line(line)]
    problems = [f"{len(lines)} check lines (at most {MAX_CHECK_LINES}: group related checks)"] \
        if len(lines) > MAX_CHECK_LINES else []
    problems += [f"a check line of {len(line)} characters (at most {LINE_WIDTH}): {line}"
                 for line in lines if len(line) > LINE_WIDTH]
    # the notebooks are the instructor release: every grader must accept the solution beside it
    problems += [f"a grader did not accept its solution: {line}" for line in text.splitlines()
                 if re.match(r"exercise \d+ .*: (not attempted|wrong)", line)]
    return problems


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    outputs = getattr(item, "test_outputs", None)  # nbval's cell items keep what the cell printed
    if outputs:
        text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
        problems = check_line_problems(text)
        if problems:
            raise AssertionError(f"{item.name}: " + "; ".join(problems))
    return result
