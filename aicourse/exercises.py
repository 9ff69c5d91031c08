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

import re
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
    mistake = checks._Mistake(f"exercise {exercise}")  # a failing check prints nothing; this line says it
    checks._OPEN.append(mistake)
    block = checks._Group(f"exercise {exercise}")       # inside the mistake: it collects the grader's checks
    checks._OPEN.append(block)
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
        cell.metadata.pop("aicourse", None)                           # no wrong answers to peek at
    return nb


EXERCISE_RE = re.compile(r"^\*\*Exercise (\d+) \((graded|discussion)\) · (.+?)\*\*", re.M)


@dataclass(frozen=True)
class Exercise:
    number: int
    kind: str            # "graded" or "discussion"
    title: str
    task: int            # index of the Markdown cell that states it
    solution: int        # index of the learner's cell, or of the model answer
    grader: int | None   # index of the grader cell (graded only)


def exercises(nb) -> list[Exercise]:
    """The exercises of a notebook, found by their headings, with the cells that belong to them."""
    found = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        m = EXERCISE_RE.match(cell.source.lstrip()) if cell.cell_type == "markdown" else None
        if not m:
            continue
        number, kind, title = int(m.group(1)), m.group(2), m.group(3).rstrip(". ")
        if kind == "graded":
            sol = next((j for j in range(i + 1, len(cells)) if cells[j].cell_type == "code"
                        and CODE_BEGIN in cells[j].source), None)
            grader = next((j for j in range((sol or i) + 1, len(cells)) if cells[j].cell_type == "code"
                           and "grade(" in cells[j].source), None)
            found.append(Exercise(number, kind, title, i, sol, grader))
        else:
            sol = next((j for j in range(i + 1, len(cells)) if cells[j].cell_type == "markdown"
                        and TEXT_BEGIN in cells[j].source), None)
            found.append(Exercise(number, kind, title, i, sol, None))
    return found


def exercise_problems(nb) -> list[str]:
    """What breaks the exercise format in one notebook ([] if nothing)."""
    found = exercises(nb)
    out = [] if len(found) >= 3 else [f"{len(found)} exercises (at least 3 wanted)"]
    if sum(e.kind == "graded" for e in found) < 2:
        out.append("fewer than 2 graded exercises")
    if [e.number for e in found] != list(range(1, len(found) + 1)):
        out.append(f"exercises numbered {[e.number for e in found]}, not 1, 2, 3, ...")
    for e in found:
        name = f"exercise {e.number}"
        if e.solution is None:
            out.append(f"{name} has no {'solution cell' if e.kind == 'graded' else 'model answer'}")
            continue
        if e.kind == "discussion":
            continue
        sol, grader = nb.cells[e.solution], nb.cells[e.grader] if e.grader is not None else None
        if grader is None or not (e.solution < e.grader):
            out.append(f"{name} has no grader cell after its solution")
            continue
        meta = sol.metadata.get("aicourse", {})
        if not meta.get("wrong"):
            out.append(f"{name}: its solution cell has no wrong answer (metadata aicourse.wrong) to be rejected")
        names = re.findall(r"grade\(\s*[\"']([^\"']+)[\"']", grader.source)
        hidden = re.findall(r"assert_solved\(\s*[\"']([^\"']+)[\"']", grader.source)
        if len(names) != 1 or not names[0].startswith(f"{e.number} "):
            out.append(f"{name}: the grader must call grade('{e.number} · ...', ...) once")
        elif hidden != names or HIDDEN_BEGIN not in grader.source:
            out.append(f"{name}: the grader needs the hidden test assert_solved({names[0]!r})")
    return out


def with_answer(source: str, answer: str) -> str:
    """A solution cell with the lines between its markers replaced by ``answer`` (indented alike)."""
    return _cut(source, CODE_BEGIN, CODE_END, answer)


def nbgrader_source(nb):
    """The notebook with nbgrader's cell metadata on every exercise cell (schema 3), ready for
    ``nbgrader generate_assignment``: learner cells are solution cells, graders are 1-point test
    cells, model answers are manually graded answers."""
    import copy

    nb = copy.deepcopy(nb)
    for e in exercises(nb):
        meta = {"schema_version": 3, "task": False}
        if e.kind == "graded":
            nb.cells[e.solution].metadata["nbgrader"] = {**meta, "solution": True, "grade": False, "locked": False,
                                                         "grade_id": f"ex{e.number}-solution"}
            nb.cells[e.grader].metadata["nbgrader"] = {**meta, "solution": False, "grade": True, "locked": True,
                                                       "points": 1, "grade_id": f"ex{e.number}-test"}
        elif e.solution is not None:
            nb.cells[e.solution].metadata["nbgrader"] = {**meta, "solution": True, "grade": True, "locked": False,
                                                         "points": 1, "grade_id": f"ex{e.number}-answer"}
    for cell in nb.cells:
        cell.metadata.pop("aicourse", None)
    return nb


NBGRADER_CONFIG = '''# Written by `aicourse handout --nbgrader`: an nbgrader course folder for the aicourse notebooks.
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "aicourse"
c.CourseDirectory.root = {root!r}
c.Execute.timeout = 600          # seconds per cell: the default 30 is short for a training cell on a laptop
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\\\nraise NotImplementedError()"}}
'''


def handout(names: list[str] | None, out, *, solutions: bool = False, nbgrader: bool = False) -> list:
    """Write a release of the course (or of the named notebooks) to ``out``.

    - student release (default): solutions replaced by stubs, hidden tests and outputs removed;
    - ``solutions``: the instructor release, every notebook executed with its solutions (the runner);
    - ``nbgrader``: an nbgrader course folder, ``source/<notebook>/<notebook>.ipynb`` with nbgrader's
      cell metadata, and ``nbgrader_config.py``; then ``nbgrader generate_assignment <notebook>``.
    Returns the paths written (the runner's results for ``solutions``).
    """
    import nbformat

    from .notebooks import all_notebooks, find_notebook
    from .runner import notebooks_folder, prepare_out, run

    folder = notebooks_folder()
    paths = [find_notebook(n, folder) for n in names] if names else all_notebooks(folder)
    if not paths:
        raise FileNotFoundError(f"No notebooks in {folder}.")
    if solutions:
        return run([str(p) for p in paths], {}, out)
    out = prepare_out(out)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if nbgrader:
            target = out / "source" / path.stem / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nbgrader_source(nb), target)
        else:
            target = out / path.name
            nbformat.write(student_version(nb), target)
        written.append(target)
    if nbgrader:
        (out / "nbgrader_config.py").write_text(NBGRADER_CONFIG.format(root=str(out)))
    return written
