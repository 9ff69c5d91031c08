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
   not attempted / solved / wrong with what was wrong (``got 68,736, expected 63,840``) — and, for a
   wrong answer, the failing check's full name and numbers on lines of their own; it never stops the
   notebook, whatever the learner's code raised. The hidden ``assert_solved`` is what nbgrader's
   autograde scores; the student release leaves it out.

Also here: the releases (:func:`student_version`, :func:`nbgrader_source`, :func:`handout`, which never
overwrites a file already in its folder) and a learner's progress (:func:`progress`, ``aicourse progress``).

A discussion question's model answer is a Markdown cell between ``<!-- BEGIN SOLUTION -->`` and
``<!-- END SOLUTION -->`` (nbgrader's markers for Markdown).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import checks

NOT_ATTEMPTED, SOLVED, WRONG = "not attempted", "solved", "wrong"
#: Indent of the lines that follow a grade's first line (the failing check, its numbers).
DETAIL_INDENT = "    "


@dataclass(frozen=True)
class Grade:
    exercise: str
    status: str
    detail: str = ""                 # what went wrong, in words: "got 68,736, expected 63,840"
    checks: int = 0
    more: tuple[str, ...] = ()       # the failing check's name and numbers, one item per line

    @property
    def solved(self) -> bool:
        return self.status == SOLVED

    @property
    def line(self) -> str:
        """The first line: ``exercise 1 · title: wrong — got 68,736, expected 63,840``."""
        head = f"exercise {self.exercise}: {self.status}"
        if self.status == SOLVED:
            return f"{head} ({self.checks} check{'s' if self.checks != 1 else ''} passed)"
        return f"{head} — {self.detail}" if self.detail else head

    @property
    def message(self) -> str:
        """Every line the grader prints: the first line, then the failing check in full (wrapped at
        :data:`aicourse.checks.LINE_WIDTH` characters, never cut)."""
        lines = _wrap(self.line, "", DETAIL_INDENT + "  ")
        for item in self.more:
            lines += _wrap(item, DETAIL_INDENT)
        return "\n".join(lines)

    def _ipython_display_(self) -> None:
        """A cell that ends in ``grade(...)`` shows only the printed lines."""


def _wrap(text: str, indent: str, subsequent: str | None = None) -> list[str]:
    """``text`` as lines of at most LINE_WIDTH characters, broken between words (a word never cut); the
    lines after the first are indented two spaces more (or by ``subsequent``)."""
    import textwrap

    return textwrap.wrap(text, checks.LINE_WIDTH, initial_indent=indent,
                         subsequent_indent=indent + "  " if subsequent is None else subsequent,
                         break_long_words=False, break_on_hyphens=False) or [indent.rstrip()]


#: The last grade of each exercise, by name (``assert_solved`` reads it).
GRADES: dict[str, Grade] = {}


class _ReturnedNone(Exception):
    """A check inside a grader was handed None: the learner's function has no ``return``."""


def _number(x: float, other: float | None = None) -> str:
    """A number as a learner reads it: integers with thousands separators (68,736), others with as many
    significant digits as it takes to tell them from ``other``."""
    x = float(x)
    if not np.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15 and (other is None or not np.isfinite(other) or float(other) == int(other)):
        return f"{int(x):,}"
    for digits in range(4, 18):
        text = f"{x:.{digits}g}"
        if other is None or not np.isfinite(other) or text != f"{float(other):.{digits}g}":
            return text
    return repr(x)


def _index(i: tuple) -> str:
    return "[" + ", ".join(str(int(k)) for k in i) + "]"


def _explain(result: "checks.CheckResult", compared: tuple | None) -> tuple[str, tuple[str, ...]]:
    with warnings.catch_warnings():  # an all-NaN answer: nanmax warns, the message says what it found
        warnings.simplefilter("ignore", RuntimeWarning)
        return _explain_quietly(result, compared)


def _explain_quietly(result: "checks.CheckResult", compared: tuple | None) -> tuple[str, tuple[str, ...]]:
    """(what went wrong in words, the failing check's lines) for a failed check inside a grader."""
    more = [f"failing check: {result.name}"]
    if result.text:  # check_bound: the measured number against its range
        return result.text, tuple(more)
    detail = ""
    if compared is not None:
        try:
            a = checks.to_numpy(compared[0]).astype(np.float64)
            b = checks.to_numpy(compared[1]).astype(np.float64)
        except (TypeError, ValueError):
            a = b = None
        if a is not None and a.shape != b.shape:
            detail = f"shape {a.shape}, expected {b.shape}"
        elif a is not None and a.size == 1:
            detail = f"got {_number(a.item(), b.item())}, expected {_number(b.item(), a.item())}"
        elif a is not None and a.size:
            diff = np.where(np.isnan(a) != np.isnan(b), np.inf, np.abs(np.nan_to_num(a - b, nan=0.0)))
            diff = np.where(np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b)), 0.0, diff)
            worst = np.unravel_index(int(np.argmax(diff)), a.shape)
            scale = max(checks.REL_FLOOR, float(np.nanmax(np.abs(np.where(np.isinf(a), 0, a)))
                                                + np.nanmax(np.abs(np.where(np.isinf(b), 0, b)))))
            off = int(np.sum(diff > result.tol * scale)) if np.isfinite(result.tol) else 0
            detail = (f"at {_index(worst)} got {_number(a[worst], b[worst])}, expected "
                      f"{_number(b[worst], a[worst])}" + (f" ({off} of {a.size} entries off)" if off else ""))
    if not detail:
        detail = result.note or f"max rel {result.max_rel:.1e} > tol {checks._fmt_tol(result.tol)}"
    shape = "scalar" if result.shape == () else str(result.shape).replace(" ", "")
    numbers = f"{shape} | max abs {result.max_abs:.1e} | max rel {result.max_rel:.1e} | " \
              f"tol {checks._fmt_tol(result.tol)} | {result.setting}"
    if "nan" not in numbers:  # a shape or NaN failure has no error to give
        more.append(numbers)
    if result.note and result.note not in detail and not result.note.startswith("shape "):
        more.append(f"note: {result.note}")
    return detail, tuple(more)


def grade(exercise: str, test: Callable[[], object]) -> Grade:
    """Run ``test`` (which calls the learner's code and the course's checks) and report the outcome.

    - the learner's code raised ``NotImplementedError`` (the stub): not attempted;
    - a check failed: wrong — what was wrong in words on the first line (``got 68,736, expected
      63,840``, ``shape (4, 5), expected (4, 4)``, ``your function returned None``), then the failing
      check's full name and numbers on lines of their own;
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
    compare, compared = checks._compare, []

    def recording(name, ours, reference, *args, **kwargs):  # what the failing check compared, for its message
        compared[:] = [(ours, reference)]
        if ours is None:
            raise _ReturnedNone(name)
        return compare(name, ours, reference, *args, **kwargs)

    checks._compare = recording
    caught_warnings = []
    try:
        # the learner's code may overflow or divide by zero (a naive formula): NumPy's and Python's warnings
        # are collected and named in a wrong answer's message, never written to stderr
        with warnings.catch_warnings(record=True) as caught_warnings, np.errstate(all="warn"):
            warnings.simplefilter("always")
            test()
    except NotImplementedError:
        result = Grade(exercise, NOT_ATTEMPTED, "replace `raise NotImplementedError()` with your code")
    except _ReturnedNone as exc:
        result = Grade(exercise, WRONG, "your function returned None (is its `return` missing?)",
                       more=(f"failing check: {exc}",))
    except checks.CheckFailed as exc:
        detail, more = _explain(exc.result, compared[0] if compared and exc.result.name else None)
        result = Grade(exercise, WRONG, detail, more=more)
    except Exception as exc:  # any learner error is reported, never fatal
        first = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, TypeError) and "NoneType" in first:
            result = Grade(exercise, WRONG, "your function returned None (is its `return` missing?)",
                           more=(f"TypeError: {first}",))
        else:
            result = Grade(exercise, WRONG, f"your code raised {type(exc).__name__}: {first}".rstrip(": "))
    else:
        if not block.results:
            raise AssertionError(f"the grader of exercise {exercise!r} ran no check, so it cannot fail")
        result = Grade(exercise, SOLVED, checks=len(block.results))
    finally:
        checks._compare = compare
        checks._OPEN.remove(mistake)
        checks._OPEN.remove(block)
        del checks.RESULTS[start:]  # a grader's checks are the learner's, not the lesson's
        checks.VERBOSE = verbose
    if caught_warnings and result.status == WRONG:  # the learner's warnings explain a wrong answer
        w = caught_warnings[0]
        result = Grade(result.exercise, result.status, result.detail, checks=result.checks,
                       more=tuple(result.more) + (f"your code warned: {w.category.__name__}: {w.message}",))
    GRADES[exercise] = result
    print(result.message)
    return result


def assert_solved(exercise: str) -> None:
    """nbgrader's hidden test: raise unless the last ``grade`` of ``exercise`` said solved."""
    result = GRADES.get(exercise)
    if result is None:
        raise AssertionError(f"exercise {exercise!r} was not graded")
    if not result.solved:
        raise AssertionError(result.message)


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


#: What the student release says where the repository's notebooks speak of their collapsed solutions.
HANDOUT_NOTE = ("*In this copy* (written by `aicourse handout`), replace each `raise NotImplementedError()` with "
                "your code and each YOUR ANSWER HERE with your answer, then run the grader cell under the "
                "exercise: it prints *not attempted*, *solved*, or *wrong* with the check that failed (its "
                "source is collapsed: read what it prints first). The course's solutions are in the "
                "repository's `notebooks/` folder, each collapsed under its exercise: try first.")
_REPOSITORY_ONLY = re.compile(r"\bcollapsed\b|\bmodel answers?\b", re.I)


def _groups(text: str, open_: str, close: str) -> list[tuple[int, int]]:
    """(start, end) of every outermost ``open_ ... close`` group of ``text``, outside code spans."""
    out, depth, start, code = [], 0, 0, False
    for i, ch in enumerate(text):
        if ch == "`":
            code = not code
        elif not code and ch == open_:
            depth, start = depth + 1, (i if depth == 0 else start)
        elif not code and ch == close and depth:
            depth -= 1
            if depth == 0:
                out.append((start, i + 1))
    return out


def _split_top(text: str, pattern: str) -> list[str]:
    """``text`` split at ``pattern`` where it lies outside parentheses and code spans (separators kept)."""
    inside = [False] * len(text)
    for a, b in _groups(text, "(", ")") + _groups(text, "`", "`"):
        inside[a:b] = [True] * (b - a)
    parts, last = [], 0
    for m in re.finditer(pattern, text):
        if not inside[m.start()]:
            parts.append(text[last:m.end()])
            last = m.end()
    return parts + [text[last:]]


def handout_prose(text: str) -> str:
    """A lesson's Markdown as the student release shows it: what speaks of the repository's collapsed
    solutions or model answers (a parenthesis, a dash-clause, a clause after ``;`` or a whole sentence) is
    left out, since in the release each is a stub to fill in."""
    while True:  # a parenthesis or a " — ... —" aside that speaks of them goes first
        asides = [(a, b) for a, b in _groups(text, "(", ")") if _REPOSITORY_ONLY.search(text[a:b])]
        asides += [m.span() for m in re.finditer(r"\s—\s(?:(?!\n\n)[^—])*?\s—(?=\s)", text)
                   if _REPOSITORY_ONLY.search(m.group(0))]
        if not asides:
            break
        a, b = max(asides)
        text = text[:a].rstrip(" ") + text[b:]
    paragraphs = []
    for paragraph in text.split("\n\n"):
        if not _REPOSITORY_ONLY.search(paragraph) or paragraph.lstrip().startswith(("#", "|", "$$", "<")):
            paragraphs.append(paragraph)
            continue
        kept = []
        for sentence in _split_top(paragraph, r"(?<=[.!?])\s+(?=[A-Z*`])"):
            if not _REPOSITORY_ONLY.search(sentence):
                kept.append(sentence)
                continue
            clauses = _split_top(sentence, r";\s+")
            if not _REPOSITORY_ONLY.search(clauses[0]):
                first = next(i for i, c in enumerate(clauses) if _REPOSITORY_ONLY.search(c))
                kept.append("".join(clauses[:first]).rstrip().rstrip(";") + ". ")
        if "".join(kept).strip():
            paragraphs.append("".join(kept).rstrip())
    return "\n\n".join(paragraphs)


def _release_prose(nb, tasks: set) -> None:
    """Rewrite, in place, the lesson's words about collapsed solutions (:func:`handout_prose`) and add
    :data:`HANDOUT_NOTE` once: to the cell that spoke of them, else to the Markdown cell before exercise 1."""
    found = exercises(nb)
    noted = None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and i not in tasks and TEXT_BEGIN not in cell.source:
            prose = handout_prose(cell.source)
            if prose != cell.source:
                cell.source, noted = prose, (i if noted is None else noted)
    if found and noted is None:
        before = [i for i in range(found[0].task) if nb.cells[i].cell_type == "markdown" and i not in tasks]
        noted = before[-1] if before else None
    if found and noted is not None:
        nb.cells[noted].source = nb.cells[noted].source.rstrip() + "\n\n" + HANDOUT_NOTE


def _open(cell) -> None:
    """Drop a cell's collapsed flag (and an empty ``jupyter`` entry left behind)."""
    jupyter = cell.metadata.get("jupyter")
    if isinstance(jupyter, dict):
        jupyter.pop("source_hidden", None)
        if not jupyter:
            cell.metadata.pop("jupyter")


def student_version(nb):
    """The notebook a student gets: solutions replaced by nbgrader's stubs, hidden tests and outputs gone,
    each grader's source collapsed (the learner reads its printed line first; its test may compute the
    answer), and the lesson's words about collapsed solutions replaced by :data:`HANDOUT_NOTE`.
    Cells are neither added nor removed: index ``i`` is the same cell in both notebooks."""
    import copy

    nb = copy.deepcopy(nb)
    found = exercises(nb)
    graders = {e.grader for e in found if e.grader is not None}
    tasks = {e.task for e in found}
    _release_prose(nb, tasks)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source = _cut(_cut(cell.source, CODE_BEGIN, CODE_END, CODE_STUB), HIDDEN_BEGIN, HIDDEN_END, None)
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown" and TEXT_BEGIN in cell.source:
            cell.source = _cut(cell.source, TEXT_BEGIN, TEXT_END, TEXT_STUB)
        _open(cell)                          # the student's cell is open
        cell.metadata.pop("aicourse", None)  # no wrong answers to peek at
        if i in graders:
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
    return nb


def collapse_graders(nb) -> list[int]:
    """Collapse the source of every grader cell (``jupyter.source_hidden``) of a course notebook, so that a
    learner in ``notebooks/`` reads a grader's printed line, not its test (which may compute the answer)
    or its hidden-test markers. Returns the indices of the cells changed."""
    changed = []
    for e in exercises(nb):
        if e.grader is not None and not nb.cells[e.grader].metadata.get("jupyter", {}).get("source_hidden"):
            nb.cells[e.grader].metadata.setdefault("jupyter", {})["source_hidden"] = True
            changed.append(e.grader)
    return changed


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
    """The exercises of a notebook, found by their headings, with the cells that belong to them.

    In a course notebook the learner's cell is the one with the solution markers; in a release (where the
    markers are gone) it is the code cell just before the grader, and a discussion's answer cell is the
    Markdown cell just after its task."""
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
            if sol is None and grader is not None and grader - 1 > i and cells[grader - 1].cell_type == "code":
                sol = grader - 1  # a release: the learner's cell stands just before its grader
            found.append(Exercise(number, kind, title, i, sol, grader))
        else:
            sol = next((j for j in range(i + 1, len(cells)) if cells[j].cell_type == "markdown"
                        and TEXT_BEGIN in cells[j].source), None)
            if sol is None and i + 1 < len(cells) and cells[i + 1].cell_type == "markdown" \
                    and not EXERCISE_RE.match(cells[i + 1].source.lstrip()):
                sol = i + 1  # a release: the answer cell follows its task
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
        if CODE_BEGIN not in nb.cells[e.solution].source and TEXT_BEGIN not in nb.cells[e.solution].source:
            out.append(f"{name} has no {'solution cell' if e.kind == 'graded' else 'model answer'} (no markers)")
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
    cells, model answers are manually graded answers. As in :func:`student_version`, the learner's
    cells are open, the graders' source collapsed and the lesson's words about collapsed solutions
    replaced; outputs are cleared."""
    import copy

    nb = copy.deepcopy(nb)
    found = exercises(nb)
    _release_prose(nb, {e.task for e in found})
    for cell in nb.cells:
        _open(cell)  # a solution cell collapsed in notebooks/ is the learner's cell in the release
        cell.metadata.pop("aicourse", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    for e in found:
        meta = {"schema_version": 3, "task": False}
        if e.kind == "graded":
            nb.cells[e.solution].metadata["nbgrader"] = {**meta, "solution": True, "grade": False, "locked": False,
                                                         "grade_id": f"ex{e.number}-solution"}
            nb.cells[e.grader].metadata["nbgrader"] = {**meta, "solution": False, "grade": True, "locked": True,
                                                       "points": 1, "grade_id": f"ex{e.number}-test"}
            nb.cells[e.grader].metadata.setdefault("jupyter", {})["source_hidden"] = True
        elif e.solution is not None:
            nb.cells[e.solution].metadata["nbgrader"] = {**meta, "solution": True, "grade": True, "locked": False,
                                                         "points": 1, "grade_id": f"ex{e.number}-answer"}
    return nb


def nbgrader_overwrite_cells():
    """nbgrader's ``OverwriteCells`` without the false alarm of nbgrader #1961.

    ``generate_assignment`` stores a test cell's checksum with its hidden tests but releases the cell
    without them, so autograde warned "Attribute 'checksum' for cell exN-test has changed!" for every
    untouched grader of every student. A locked cell that equals its source with the hidden tests removed
    is the cell as released: it gets its source back before the check, so only a cell a student really
    changed is reported (and, as always, replaced by the source's)."""
    from nbgrader.api import MissingEntry
    from nbgrader.preprocessors import OverwriteCells

    class OverwriteReleasedCells(OverwriteCells):
        def preprocess_cell(self, cell, resources, cell_index):
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id is not None and cell.metadata.get("nbgrader", {}).get("locked"):
                try:
                    source = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id).source
                except MissingEntry:
                    source = None
                if source is not None and HIDDEN_BEGIN in source:
                    try:
                        released = _cut(source, HIDDEN_BEGIN, HIDDEN_END, None)
                    except ValueError:
                        released = None
                    if released is not None and cell.source.strip() == released.strip():
                        cell.source = source
            return super().preprocess_cell(cell, resources, cell_index)

    return OverwriteReleasedCells


NBGRADER_CONFIG = """# Written by `aicourse handout --nbgrader`: an nbgrader course folder for the aicourse notebooks.
import os

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "aicourse"
# The folder of this file: a copy of the course folder writes its releases and grades into itself.
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.Execute.timeout = 600          # seconds per cell: the default 30 is short for a training cell on a laptop
c.ClearSolutions.code_stub = {stub!r}
c.ClearSolutions.text_stub = {text!r}

# nbgrader #1961: autograde warned "Attribute 'checksum' for cell exN-test has changed!" for every grader
# cell, because a test cell's checksum is stored with its hidden tests and released without them. This
# OverwriteCells treats a cell as released as unchanged (a cell a student changed is still reported).
try:
    from aicourse.exercises import nbgrader_overwrite_cells
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import OverwriteCells

    c.Autograde.sanitize_preprocessors = [
        nbgrader_overwrite_cells() if p is OverwriteCells else p
        for p in Autograde.sanitize_preprocessors.default()]
except ImportError:  # an older aicourse or nbgrader: the warning is harmless (docs/teaching.md)
    pass
"""


@dataclass
class Release:
    """What :func:`handout` did: the files it wrote, the files it kept because they were there already
    (a learner's work is never overwritten), the backup folder ``--force`` moved the old files to, and,
    for the instructor release, the runner's results."""
    written: list
    kept: list
    backup: object = None
    results: list = None


def _backup_folder(out) -> "Path":
    import datetime

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder, n = out / f"backup-{stamp}", 1
    while folder.exists():
        n += 1
        folder = out / f"backup-{stamp}-{n}"
    return folder


def handout(names: list[str] | None, out, *, solutions: bool = False, nbgrader: bool = False,
            force: bool = False) -> Release:
    """Write a release of the course (or of the named notebooks) to ``out``.

    - student release (default): solutions replaced by stubs, hidden tests and outputs removed;
    - ``solutions``: the instructor release, every notebook executed with its solutions (the runner);
    - ``nbgrader``: an nbgrader course folder, ``source/<notebook>/<notebook>.ipynb`` with nbgrader's
      cell metadata, and ``nbgrader_config.py``; then ``nbgrader generate_assignment <notebook>``.

    A file that is already in ``out`` is kept as it is (it may hold a learner's work): only the missing
    ones are written. With ``force``, the files that would be replaced are first moved to
    ``out/backup-<date>-<time>/`` (same relative paths), then everything is written.
    """
    import shutil

    import nbformat

    from .notebooks import all_notebooks, find_notebook
    from .runner import notebooks_folder, prepare_out, run

    folder = notebooks_folder()
    paths = [find_notebook(n, folder) for n in names] if names else all_notebooks(folder)
    if not paths:
        raise FileNotFoundError(f"No notebooks in {folder}.")
    out = prepare_out(out)
    if nbgrader:
        targets = {path: out / "source" / path.stem / path.name for path in paths}
        extra = [out / "nbgrader_config.py"]
    else:
        targets = {path: out / path.name for path in paths}
        extra = []
    existing = [t for t in [*targets.values(), *extra] if t.exists()]
    backup, kept = None, []
    if existing and force:
        backup = _backup_folder(out)
        for target in existing:
            moved = backup / target.relative_to(out)
            moved.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(target), moved)
    else:
        kept = existing
    todo = [path for path, target in targets.items() if target not in kept]
    if solutions:
        results = run([str(p) for p in todo], {}, out, folder=folder) if todo else []
        return Release([r.output for r in results], kept, backup, results)
    written = []
    for path in todo:
        nb = nbformat.read(path, as_version=4)
        target = targets[path]
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbgrader_source(nb) if nbgrader else student_version(nb), target)
        written.append(target)
    for target in extra:
        if target not in kept:
            target.write_text(NBGRADER_CONFIG.format(stub={"python": CODE_STUB}, text=TEXT_STUB))
            written.append(target)
    return Release(written, kept, backup)


# ----------------------------------------------------------------------------- progress
GRADE_LINE_RE = re.compile(r"^exercise (?P<name>\d+ · .*?): (?P<status>not attempted|solved|wrong)"
                           r"(?: — (?P<detail>.*)| \((?P<checks>\d+) checks? passed\))?$")
DISCUSSION = "discussion"


@dataclass(frozen=True)
class Outcome:
    """One exercise of an executed notebook, as its grader left it."""
    number: int
    title: str
    status: str          # solved, wrong, not attempted, discussion, or "not run"
    detail: str = ""     # for wrong: what was wrong; for a discussion: answered or not
    check: str = ""      # for wrong: the failing check's name

    @property
    def text(self) -> str:
        if self.status == WRONG:
            return f"wrong: {self.detail}" + (f" (check: {self.check})" if self.check else "")
        return f"{self.status} ({self.detail})" if self.detail else self.status


def _stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def _grade_lines(lines: list[str]) -> tuple[str, list[str]] | None:
    """(first line, the items of the lines after it) of the first grade a grader printed, or None.
    A wrapped line continues on lines indented two spaces more; they are joined back."""
    at = next((i for i, line in enumerate(lines) if GRADE_LINE_RE.match(line)), None)
    if at is None:
        return None
    first, items = lines[at], []
    for line in lines[at + 1:]:
        if line.startswith(DETAIL_INDENT + "  ") and (items or first):
            if items:
                items[-1] += " " + line.strip()
            else:
                first += " " + line.strip()
        elif line.startswith(DETAIL_INDENT) and line.strip():
            items.append(line.strip())
        else:
            break
    return first, items


def outcomes(nb) -> list[Outcome]:
    """Every exercise of an executed notebook (a handout or a course notebook) and what its grader said."""
    found = []
    for e in exercises(nb):
        if e.kind == "discussion":
            answer = nb.cells[e.solution].source.strip() if e.solution is not None else ""
            answered = bool(answer) and answer != TEXT_STUB
            found.append(Outcome(e.number, e.title, DISCUSSION, "answered" if answered else "not answered yet"))
            continue
        cell = nb.cells[e.grader] if e.grader is not None else {}
        printed = _grade_lines(_stream_text(cell).splitlines())
        if printed is not None:
            m = GRADE_LINE_RE.match(printed[0])
            status = m.group("status")
            if status != WRONG:
                found.append(Outcome(e.number, e.title, status))
                continue
            check = next((item[len("failing check: "):] for item in printed[1] if item.startswith("failing check: ")),
                         "")
            found.append(Outcome(e.number, e.title, WRONG, m.group("detail") or "", check))
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            value = str(errors[0].get("evalue", "")).splitlines()
            found.append(Outcome(e.number, e.title, WRONG, f"the grader cell raised {errors[0].get('ename')}"
                                 + (f": {value[0]}" if value else "") + " (does every cell above it run?)"))
        else:
            found.append(Outcome(e.number, e.title, "not run"))
    return found


def grade_counts(nb) -> tuple[int, int]:
    """(graded exercises solved, graded exercises) of an executed notebook."""
    graded = [o for o in outcomes(nb) if o.status != DISCUSSION]
    return sum(o.status == SOLVED for o in graded), len(graded)


PROGRESS_CACHE = ".aicourse-progress.json"


def _content_hash(nb) -> str:
    """What a notebook's grades depend on: its cells' sources (not their outputs), and the package version."""
    import hashlib
    import json

    from . import __version__

    cells = [[c.cell_type, c.source] for c in nb.cells]
    return hashlib.sha256(json.dumps([__version__, cells]).encode()).hexdigest()


def progress(folder="my-work", *, show: bool = True, timeout: int = 600) -> dict[str, list[Outcome]]:
    """Every exercise of every notebook in a handout folder, and what its grader says.

    A notebook is executed (in a kernel of its own, every cell run even when one raises) only when its
    cells changed since the last call; the outcomes are kept in ``folder/.aicourse-progress.json``,
    keyed by a hash of the cells' sources. With ``show``, prints a line per notebook while it runs.
    """
    import json
    import shutil
    import time
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    from .notebooks import all_notebooks
    from .runner import _kernel_manager_class

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder {str(folder)!r}: write your copy of the course first with "
                                f"`aicourse handout --out {folder}`.")
    paths = all_notebooks(folder)
    if not paths:
        raise FileNotFoundError(f"No course notebooks (NN_name.ipynb) in {str(folder)!r}: write them with "
                                f"`aicourse handout --out {folder}`.")
    cache_file = folder / PROGRESS_CACHE
    try:
        cache = json.loads(cache_file.read_text()).get("notebooks", {})
    except (OSError, ValueError):
        cache = {}
    result = {}
    for i, path in enumerate(paths, 1):
        nb = nbformat.read(path, as_version=4)
        digest = _content_hash(nb)
        known = cache.get(path.name)
        if known and known.get("hash") == digest:
            result[path.stem] = [Outcome(**o) for o in known["outcomes"]]
            if show:
                print(f"[{i}/{len(paths)}] {path.stem}: unchanged since the last run", flush=True)
            continue
        if not exercises(nb):
            result[path.stem] = []
            cache[path.name] = {"hash": digest, "outcomes": []}
            continue
        if show:
            print(f"[{i}/{len(paths)}] {path.stem}: running ...", end="", flush=True)
        start = time.perf_counter()
        started: list = []
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                kernel_manager_class=_kernel_manager_class(started),
                                resources={"metadata": {"path": str(folder.resolve())}})
        try:
            client.execute()
        except Exception as exc:  # the kernel died or a cell timed out: the graders that ran still count
            if show:
                print(f" stopped ({type(exc).__name__})", end="")
        finally:
            for km in started:
                if km.transport == "ipc":
                    shutil.rmtree(Path(km.ip).parent, ignore_errors=True)
        found = outcomes(nb)
        result[path.stem] = found
        cache[path.name] = {"hash": digest, "outcomes": [o.__dict__ for o in found]}
        solved = sum(o.status == SOLVED for o in found)
        graded = sum(o.status != DISCUSSION for o in found)
        if show:
            print(f" {time.perf_counter() - start:.1f} s, {solved}/{graded} solved", flush=True)
        cache_file.write_text(json.dumps({"notebooks": cache}, indent=1, ensure_ascii=False))
    cache = {k: v for k, v in cache.items() if (folder / k).exists()}
    cache_file.write_text(json.dumps({"notebooks": cache}, indent=1, ensure_ascii=False))
    return result


def progress_table(result: dict[str, list[Outcome]]) -> str:
    """The table ``aicourse progress`` prints: one row per exercise, a total per notebook and for the course."""
    import textwrap

    rows = [(nb, f"{o.number} · {o.title}", o.text) for nb, found in result.items() for o in found]
    w_nb = max([len("notebook")] + [len(nb) for nb in result])
    w_ex = min(36, max([len("exercise")] + [len(r[1]) for r in rows]))
    width = checks.LINE_WIDTH - w_nb - w_ex - 4
    lines = [f"{'notebook':<{w_nb}}  {'exercise':<{w_ex}}  status", "-" * checks.LINE_WIDTH]
    totals = {SOLVED: 0, WRONG: 0, NOT_ATTEMPTED: 0, "not run": 0, DISCUSSION: 0, "answered": 0}

    def counts(found) -> str:
        graded = [o for o in found if o.status != DISCUSSION]
        parts = [f"{sum(o.status == SOLVED for o in graded)} of {len(graded)} solved"]
        parts += [f"{n} {s}" for s in (WRONG, NOT_ATTEMPTED, "not run") if (n := sum(o.status == s for o in graded))]
        talk = [o for o in found if o.status == DISCUSSION]
        text = ", ".join(parts)
        if talk:
            text += f"; {len(talk)} discussion ({sum(o.detail == 'answered' for o in talk)} answered)"
        return text

    for nb, found in result.items():
        for j, o in enumerate(found):
            title = f"{o.number} · {o.title}"
            title = title if len(title) <= w_ex else title[:w_ex - 1] + "…"
            status = textwrap.wrap(o.text, width, subsequent_indent="  ", break_long_words=False) or [""]
            lines.append(f"{nb if j == 0 else '':<{w_nb}}  {title:<{w_ex}}  {status[0]}")
            lines += [f"{'':<{w_nb}}  {'':<{w_ex}}  {more}" for more in status[1:]]
            totals[o.status] = totals.get(o.status, 0) + 1
            totals["answered"] += o.status == DISCUSSION and o.detail == "answered"
        if not found:
            lines.append(f"{nb:<{w_nb}}  {'(no exercises)':<{w_ex}}")
        elif len(result) > 1:
            lines += textwrap.wrap(f"{nb}: {counts(found)}", checks.LINE_WIDTH, initial_indent=" " * (w_nb + 2),
                                   subsequent_indent=" " * (w_nb + 4), break_long_words=False)
    every = [o for found in result.values() for o in found]
    lines += ["-" * checks.LINE_WIDTH]
    lines += textwrap.wrap(f"all {len(result)} notebook(s): {counts(every)}", checks.LINE_WIDTH,
                           subsequent_indent="  ", break_long_words=False)
    return "\n".join(lines)
