"""Loaded by pytest before anything is collected (tests/ and notebooks/ alike).

Threads. pytest-xdist runs several notebooks at once. If each kernel's torch/OpenMP pool also used every
core, the threads would oversubscribe the cores and small tensor ops would slow down many times over. So
each worker tells the kernels it starts (they inherit the environment) how many notebooks run at once
(``AICOURSE_JOBS``); ``aicourse.setup`` gives each kernel its share of the cores.

Each notebook is executed once. nbval runs, in one kernel, the notebook's *student release* (the solutions
replaced by stubs, every lesson cell as it is) and then, appended to it, each graded exercise's wrong answer
and its solution, each followed by the exercise's grader. So one execution proves at once that

- every lesson cell runs and prints checks that pass (and caught mistakes);
- the student release runs top to bottom, each grader saying "not attempted";
- every grader rejects its plausible wrong answer (metadata ``aicourse.wrong``) and accepts its solution.

Every cell is held to the course's reading rule: at most MAX_CHECK_LINES report lines (PASS/FAIL/caught),
no printed line longer than ``aicourse.checks.LINE_WIDTH`` characters, and nothing on stderr (a warning is a
defect).
"""

import os
import re
from collections import defaultdict

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    from aicourse.device import JOBS_VAR, default_threads

    os.environ.setdefault(JOBS_VAR, os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # for the kernels it starts
        os.environ.setdefault(var, str(default_threads()))
    from aicourse.device import set_threads

    set_threads(0)  # and the worker itself (torch was imported above, before these variables were set)


MAX_CHECK_LINES = 12
GRADE_RE = re.compile(r"^exercise (\d+) .*?: (not attempted|solved|wrong)")


def check_line_problems(text: str, expect: str | None = None) -> list[str]:
    """What breaks the reading rule in one cell's printed text ([] if nothing).

    ``expect`` is what every grader line of the cell must say ("not attempted", "wrong" or "solved");
    None: the cell must print no grader line that is not "solved".
    """
    from aicourse.checks import LINE_WIDTH, is_report_line

    lines = [line for line in text.splitlines() if is_report_line(line)]
    problems = [f"{len(lines)} check lines (at most {MAX_CHECK_LINES}: group related checks)"] \
        if len(lines) > MAX_CHECK_LINES else []
    problems += [f"a check line of {len(line)} characters (at most {LINE_WIDTH}): {line}"
                 for line in lines if len(line) > LINE_WIDTH]
    problems += [f"a printed line of {len(line)} characters (at most {LINE_WIDTH}): {line[:120]}"
                 for line in text.splitlines() if len(line) > LINE_WIDTH and not is_report_line(line)
                 and not re.fullmatch(r"\s*https?://\S+", line)]  # an address cannot be wrapped
    grades = [(m.group(2), line) for line in text.splitlines() if (m := GRADE_RE.match(line))]
    want = expect or "solved"
    problems += [f"a grader said {status!r} where {want!r} was expected: {line}"
                 for status, line in grades if status != want]
    if expect and not grades:
        problems.append(f"the grader printed no line (expected {expect!r})")
    return problems


def stderr_problems(outputs) -> list[str]:
    """Anything a cell wrote to stderr (warnings included): the course's cells print nothing there."""
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream"
                   and o.get("name") == "stderr")
    return [f"stderr: {text.strip()[:300]}"] if text.strip() else []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    outputs = getattr(item, "test_outputs", None)  # nbval's cell items keep what the cell printed
    if outputs is not None and hasattr(item, "cell"):
        text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream"
                       and o.get("name") != "stderr")
        expect = item.cell.get("metadata", {}).get("aicourse_expect")
        problems = check_line_problems(text, expect) + stderr_problems(outputs)
        if problems:
            raise AssertionError(f"{item.name}: " + "; ".join(problems))
    return result


# --------------------------------------------------------------------------- notebooks, executed once
def exercise_run(nb):
    """The notebook nbval executes: the student release, each grader expecting "not attempted", then per
    graded exercise its wrong answer and its grader (expecting "wrong"), its solution and its grader with
    the hidden test (expecting "solved")."""
    import nbformat

    from aicourse.exercises import HIDDEN_BEGIN, HIDDEN_END, _cut, exercises, student_version, with_answer

    found = [e for e in exercises(nb) if e.kind == "graded"]
    run = student_version(nb)
    for e in found:
        run.cells[e.grader].metadata["aicourse_expect"] = "not attempted"

    def cell(source, name, expect=None):
        meta = {"aicourse_name": name, **({"aicourse_expect": expect} if expect else {})}
        run.cells.append(nbformat.v4.new_code_cell(source, metadata=meta))

    for e in found:
        solution, grader = nb.cells[e.solution], nb.cells[e.grader]
        wrong = solution.metadata.get("aicourse", {}).get("wrong")
        if wrong is None:
            raise ValueError(f"exercise {e.number} has no wrong answer (metadata aicourse.wrong)")
        cell(with_answer(solution.source, wrong), f"exercise {e.number}: its wrong answer")
        cell(_cut(grader.source, HIDDEN_BEGIN, HIDDEN_END, None), f"exercise {e.number}: the grader rejects it",
             "wrong")
        cell(solution.source, f"exercise {e.number}: its solution")
        cell(grader.source, f"exercise {e.number}: the grader accepts it", "solved")
    return run


NOTEBOOK_RE = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")


def pytest_collect_file(file_path, parent):
    if (CourseNotebook is not None and file_path.suffix == ".ipynb" and file_path.parent.name == "notebooks"
            and NOTEBOOK_RE.match(file_path.name)):
        return CourseNotebook.from_parent(parent, path=file_path)
    return None


try:
    from nbval.plugin import IPyNbCell, IPyNbFile
except ImportError:  # nbval is in the test extra; without it, notebooks are not collected
    IPyNbFile = None

if IPyNbFile is not None:
    class CourseNotebook(IPyNbFile):
        """A course notebook as nbval runs it: the student release, then every grader's two answers."""

        def collect(self):
            import nbformat

            self.nb = exercise_run(nbformat.read(str(self.path), as_version=4))
            for cell_num, cell in enumerate(c for c in self.nb.cells if c.cell_type == "code"):
                name = cell.metadata.get("aicourse_name") or f"Cell {cell_num}"
                options = defaultdict(bool, check=False)  # outputs are not compared: none are committed
                yield IPyNbCell.from_parent(self, name=name, cell_num=cell_num, cell=cell, options=options)
else:  # pragma: no cover
    CourseNotebook = None
