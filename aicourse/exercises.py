"""Exercises that grade themselves, and the student and instructor releases of the course.

An exercise is three cells (``aicourse new`` and CONTRIBUTING.md show them):

1. Markdown: the task, headed ``**Exercise N (graded) · title**`` or ``(discussion)``.
2. The learner's cell (an nbgrader *solution* cell): the solution between ``### BEGIN SOLUTION``
   and ``### END SOLUTION``; the student release replaces it with ``raise NotImplementedError()``.
3. The grader (an nbgrader *tests* cell)::

       grade("1 · stable softmax", lambda: check("softmax", softmax_rows(z), torch.softmax(zt, 1)))
       ### BEGIN HIDDEN TESTS
       assert_solved("1 · stable softmax")
       ### END HIDDEN TESTS

   ``grade`` runs the course's own checks on what the learner's code returns and prints one line —
   not attempted / solved / wrong with the failing check's line — and never stops the notebook,
   whatever the learner's code raised. The hidden ``assert_solved`` is what nbgrader's autograde
   scores; the student release leaves it out.

A discussion question's model answer is a Markdown cell between ``<!-- BEGIN SOLUTION -->`` and
``<!-- END SOLUTION -->`` (nbgrader's markers for Markdown).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import checks

NOT_ATTEMPTED, SOLVED, WRONG = "not attempted", "solved", "wrong"


@dataclass(frozen=True)
class Grade:
    exercise: str
    status: str
    detail: str = ""
    checks: int = 0

    @property
    def solved(self) -> bool:
        return self.status == SOLVED

    @property
    def line(self) -> str:
        head = f"exercise {self.exercise}: {self.status}"
        if self.status == SOLVED:
            return f"{head} ({self.checks} check{'s' if self.checks != 1 else ''} passed)"
        return f"{head} — {self.detail}" if self.detail else head

    def _ipython_display_(self) -> None:
        """A cell that ends in ``grade(...)`` shows only the printed line."""


#: The last grade of each exercise, by name (``assert_solved`` reads it).
GRADES: dict[str, Grade] = {}


def grade(exercise: str, test: Callable[[], object]) -> Grade:
    """Run ``test`` (which calls the learner's code and the course's checks) and report one line.

    - the learner's code raised ``NotImplementedError`` (the stub): not attempted;
    - a check failed: wrong, with that check's report line;
    - the learner's code raised anything else: wrong, with the exception's type and message;
    - every check passed: solved. A test that runs no check is an error of the exercise, not the learner's.

    Checks run inside a grader print nothing and are not counted in the notebook's check summary.
    """
    start, verbose = len(checks.RESULTS), checks.VERBOSE
    checks.VERBOSE = False  # a grader's checks print nothing, even in a verbose run
    block = checks._Group(f"exercise {exercise}")
    checks._OPEN.append(block)
    mistake = checks._Mistake(f"exercise {exercise}")  # a failing check prints nothing; this line says it
    checks._OPEN.append(mistake)
    try:
        test()
    except NotImplementedError:
        result = Grade(exercise, NOT_ATTEMPTED, "replace `raise NotImplementedError()` with your code")
    except checks.CheckFailed as exc:
        result = Grade(exercise, WRONG, exc.result.line)
    except Exception as exc:  # any learner error is reported, never fatal
        first = str(exc).splitlines()[0] if str(exc) else ""
        result = Grade(exercise, WRONG, f"your code raised {type(exc).__name__}: {first}".rstrip(": "))
    else:
        if not block.results:
            raise AssertionError(f"the grader of exercise {exercise!r} ran no check, so it cannot fail")
        result = Grade(exercise, SOLVED, checks=len(block.results))
    finally:
        checks._OPEN.remove(mistake)
        checks._OPEN.remove(block)
        del checks.RESULTS[start:]  # a grader's checks are the learner's, not the lesson's
        checks.VERBOSE = verbose
    GRADES[exercise] = result
    print(result.line)
    return result


def assert_solved(exercise: str) -> None:
    """nbgrader's hidden test: raise unless the last ``grade`` of ``exercise`` said solved."""
    result = GRADES.get(exercise)
    if result is None:
        raise AssertionError(f"exercise {exercise!r} was not graded")
    if not result.solved:
        raise AssertionError(result.line)


# ----------------------------------------------------------------------------- releases
CODE_BEGIN, CODE_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
TEXT_BEGIN, TEXT_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
CODE_STUB, TEXT_STUB = "# YOUR CODE HERE\nraise NotImplementedError()", "YOUR ANSWER HERE"


def _cut(source: str, begin: str, end: str, stub: str | None) -> str:
    """Replace every ``begin`` ... ``end`` block (marker lines included) by ``stub`` at the marker's indent."""
    out, inside = [], False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise ValueError(f"{begin!r} inside another one")
            inside = True
            if stub is not None:
                indent = line[: len(line) - len(line.lstrip())]
                out += [indent + s for s in stub.split("\n")]
        elif stripped == end:
            if not inside:
                raise ValueError(f"{end!r} without {begin!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{begin!r} without {end!r}")
    return "\n".join(out)


def student_version(nb):
    """The notebook a student gets: solutions replaced by nbgrader's stubs, hidden tests and outputs gone."""
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = _cut(_cut(cell.source, CODE_BEGIN, CODE_END, CODE_STUB), HIDDEN_BEGIN, HIDDEN_END, None)
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown" and TEXT_BEGIN in cell.source:
            cell.source = _cut(cell.source, TEXT_BEGIN, TEXT_END, TEXT_STUB)
        cell.metadata.get("jupyter", {}).pop("source_hidden", None)  # the student's cell is open
    return nb
