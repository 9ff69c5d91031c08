"""Exercises: the one format, graders that explain, the releases.

That every grader rejects its wrong answer and accepts its solution, and that the student release runs top to
bottom with every grader saying "not attempted", is proven where each notebook is executed, once: nbval runs
the student release and then both answers of every graded exercise (conftest.py, tests/test_execute_once.py).
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from aicourse.checks import LINE_WIDTH
from aicourse.cli import main
from aicourse.exercises import (CODE_BEGIN, HIDDEN_BEGIN, TEXT_BEGIN, assert_solved, exercise_problems, exercises,
                                grade, student_version, with_answer)
from aicourse.notebooks import all_notebooks, new_notebook

NOTEBOOKS = all_notebooks()


def _read(path):
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_follow_the_format(path):
    assert exercise_problems(_read(path)) == []


def test_student_release_replaces_solutions_and_hides_nothing_else(tmp_path, capsys):
    assert main(["handout", "--out", str(tmp_path / "student")]) == 0
    assert "student release" in capsys.readouterr().out
    written = sorted((tmp_path / "student").glob("*.ipynb"))
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    for path in written:
        nb = _read(path)
        text = "\n".join(c.source for c in nb.cells)
        assert CODE_BEGIN not in text and HIDDEN_BEGIN not in text and TEXT_BEGIN not in text
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert all("aicourse" not in c.metadata for c in nb.cells)
        assert text.count("raise NotImplementedError()") >= 2


def test_student_version_of_a_template_exercise():
    nb = new_notebook(1, "ex", "Ex")
    nb.cells += [
        nbformat.v4.new_markdown_cell("**Exercise 1 (graded) · Double it.** Return 2x."),
        nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                                  metadata={"aicourse": {"wrong": "return x + 2"}, "jupyter": {"source_hidden": True}}),
        nbformat.v4.new_code_cell("grade('1 · double', lambda: check('double', double(np.ones(2)), 2 * np.ones(2)))\n"
                                  "### BEGIN HIDDEN TESTS\nassert_solved('1 · double')\n### END HIDDEN TESTS"),
        nbformat.v4.new_markdown_cell("**Exercise 2 (discussion) · Why?**"),
        nbformat.v4.new_markdown_cell("<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->"),
    ]
    student = student_version(nb)
    assert student.cells[5].source == "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert student.cells[6].source == "grade('1 · double', lambda: check('double', double(np.ones(2)), 2 * np.ones(2)))"
    assert student.cells[8].source == "YOUR ANSWER HERE"
    assert "source_hidden" not in student.cells[5].metadata.get("jupyter", {})
    assert with_answer(nb.cells[5].source, "return x + 2") == "def double(x):\n    return x + 2"
    problems = exercise_problems(nb)
    assert problems == ["2 exercises (at least 3 wanted)", "fewer than 2 graded exercises"]


def test_handout_solutions_runs_the_instructor_release(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = new_notebook(1, "ex", "Ex")
    nb.cells[3].source += "\nfrom aicourse import grade, assert_solved"
    nb.cells += [nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
                 nbformat.v4.new_code_cell("grade('1 · double', lambda: check('double', double(np.ones(2)), "
                                           "2 * np.ones(2)))\n### BEGIN HIDDEN TESTS\nassert_solved('1 · double')\n"
                                           "### END HIDDEN TESTS")]
    for c in nb.cells:
        c.pop("id", None)
    nbformat.write(nb, folder / "01_ex.ipynb")
    proc = subprocess.run([sys.executable, "-m", "aicourse", "handout", "--solutions", "--out", "inst"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    executed = _read(tmp_path / "inst" / "01_ex.ipynb")
    assert "exercise 1 · double: solved (1 check passed)" in executed.cells[-1].outputs[0].text


# ----------------------------------------------------------------------------- graders that explain
def _graded(capsys, answer, expected, name="parameters, V=102, C=48, E=48, L=2", **kw):
    from aicourse import check

    result = grade("1 · a test", lambda: check(name, answer() if callable(answer) else answer, expected, **kw))
    printed = capsys.readouterr().out
    assert printed.rstrip("\n") == result.message
    assert all(len(line) <= LINE_WIDTH for line in printed.splitlines()), printed
    return result, printed


def test_a_wrong_scalar_says_got_and_expected(capsys):
    result, printed = _graded(capsys, 68_736, torch.tensor(63_840.0, dtype=torch.float64))
    first, *rest = printed.splitlines()
    assert first == "exercise 1 · a test: wrong — got 68,736, expected 63,840"
    assert rest[0] == "    failing check: parameters, V=102, C=48, E=48, L=2", "the check's name, in full"
    assert "max rel 3.7e-02" in rest[1] and "tol 1e-10" in rest[1]
    assert result.status == "wrong" and not result.solved


def test_a_wrong_shape_says_both_shapes(capsys):
    _, printed = _graded(capsys, np.ones((4, 5)), np.ones((4, 4)), name="weights of every head vs nn.MHA")
    assert printed.splitlines()[0].endswith("wrong — shape (4, 5), expected (4, 4)")
    assert "nan" not in printed, "a shape mismatch has no error to print"


def test_a_missing_return_says_none(capsys):
    def forgot_return():
        2 * np.ones(3)

    _, printed = _graded(capsys, forgot_return, np.ones(3), name="double")
    assert "wrong — your function returned None" in printed.splitlines()[0] and "nan" not in printed
    assert "failing check: double" in printed
    from aicourse import check

    grade("2 · none", lambda: check("as float", float(forgot_return()), 1.0))  # None used before the check
    assert "wrong — your function returned None" in capsys.readouterr().out


def test_a_wrong_array_names_the_worst_entry(capsys):
    wrong = np.arange(12.0).reshape(3, 4)
    right = wrong.copy()
    right[1, 2] += 0.25
    _, printed = _graded(capsys, wrong, right, name="softmax rows")
    assert printed.splitlines()[0].endswith("wrong — at [1, 2] got 6, expected 6.25 (1 of 12 entries off)")


def test_a_long_check_name_is_wrapped_never_cut(capsys):
    name = "attention weights of every head, two layers, causal mask, padding mask of lengths 5, 2, 4 and 3"
    _, printed = _graded(capsys, 3.0, 2.0, name=name + " and more")
    lines = printed.splitlines()
    assert len(lines) >= 4 and "…" not in printed
    assert " ".join(line.strip() for line in lines[1:3]) .startswith(f"failing check: {name} and more")


def test_a_note_gets_its_own_line_and_a_solved_grade_one_line(capsys):
    _, printed = _graded(capsys, 5.2, 5.0, tol=0.01, note="sampling error of 20000 pairs")
    assert printed.splitlines()[-1] == "    note: sampling error of 20000 pairs"
    from aicourse import check

    grade("3 · fine", lambda: check("ok", np.ones(2), np.ones(2)))
    assert capsys.readouterr().out == "exercise 3 · fine: solved (1 check passed)\n"
    with pytest.raises(AssertionError, match=r"(?s)got 68,736, expected 63,840.*failing check: parameters"):
        grade("4 · x", lambda: check("parameters", 68_736, 63_840))
        assert_solved("4 · x")


# ----------------------------------------------------------------------------- nbgrader
def _template_course_notebook(folder):
    """A small course notebook with three graded exercises (an array, a scalar, a shape) and a discussion."""
    nb = new_notebook(1, "ex", "Ex")
    nb.cells[3].source += "\nfrom aicourse import grade, assert_solved"
    hidden = "\n### BEGIN HIDDEN TESTS\nassert_solved({!r})\n### END HIDDEN TESTS"
    collapsed = {"jupyter": {"source_hidden": True}}
    nb.cells += [
        nbformat.v4.new_markdown_cell("## Exercises\n\nEach solution is in the collapsed cell under its task."),
        nbformat.v4.new_markdown_cell("**Exercise 1 (graded) · Double it.** Return 2x."),
        nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                                  metadata={"aicourse": {"wrong": "    return x + 2"}, **collapsed}),
        nbformat.v4.new_code_cell("grade('1 · double', lambda: check('double', double(np.ones(2)), 2 * np.ones(2)))"
                                  + hidden.format("1 · double")),
        nbformat.v4.new_markdown_cell("**Exercise 2 (graded) · Count.** The sum 1 + 2 + ... + n."),
        nbformat.v4.new_code_cell("def count(n):\n    ### BEGIN SOLUTION\n    return n * (n + 1) // 2\n"
                                  "    ### END SOLUTION", metadata={"aicourse": {"wrong": "    return n * n // 2"},
                                                                    **collapsed}),
        nbformat.v4.new_code_cell("grade('2 · count', lambda: check('sum of 1..100', count(100), 5050))"
                                  + hidden.format("2 · count")),
        nbformat.v4.new_markdown_cell("**Exercise 3 (graded) · Outer product.** Of a (4,) and b (5,)."),
        nbformat.v4.new_code_cell("def outer(a, b):\n    ### BEGIN SOLUTION\n    return a[:, None] * b[None, :]\n"
                                  "    ### END SOLUTION", metadata={"aicourse": {"wrong": "    return np.outer(b, a)"},
                                                                    **collapsed}),
        nbformat.v4.new_code_cell("a3, b3 = np.arange(4.0), np.arange(5.0)\n"
                                  "grade('3 · outer', lambda: check('outer(a3, b3)', outer(a3, b3), np.outer(a3, b3)))"
                                  + hidden.format("3 · outer")),
        nbformat.v4.new_markdown_cell("**Exercise 4 (discussion) · Why?**"),
        nbformat.v4.new_markdown_cell("<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->", metadata=collapsed),
    ]
    for c in nb.cells:
        c.pop("id", None)
    path = folder / "01_ex.ipynb"
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.mark.skipif(shutil.which("nbgrader") is None, reason="nbgrader is in the `teach` extra (CI installs it)")
def test_nbgrader_round_trip_full_untouched_and_wrong(tmp_path):
    """nbgrader itself, on a small generated notebook (the course notebooks run once, under nbval): generate
    the release in a *copy* of the course folder, then autograde two submissions made from the release —
    every exercise solved (full marks), and two wrong answers with the third untouched (0 points each, the
    messages naming the failing check, "not attempted") — without nbgrader #1961's warning. (Two
    submissions, not three: each is one more kernel, and CI's time is counted.)"""
    import json

    from nbgrader.api import Gradebook

    source_nb = _read(_template_course_notebook(tmp_path / "notebooks"))
    first = tmp_path / "first"
    assert main(["handout", str(tmp_path / "notebooks" / "01_ex.ipynb"), "--nbgrader", "--out", str(first)]) == 0
    course = tmp_path / "course"
    shutil.copytree(first, course)  # a copied course folder writes into itself
    nbg = [sys.executable, "-m", "nbgrader"]
    done = subprocess.run(nbg + ["generate_assignment", "01_ex", "--force"], cwd=course, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (first / "release").exists(), "the copy wrote its release into the original course folder"
    released = _read(course / "release" / "01_ex" / "01_ex.ipynb")
    found = exercises(source_nb)
    graded = [e for e in found if e.kind == "graded"]
    assert released.cells[graded[0].solution].source == \
        "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()", "the stub is two lines"
    for e in graded:
        assert "source_hidden" not in released.cells[e.solution].metadata.get("jupyter", {}), "collapsed in release"
        assert HIDDEN_BEGIN not in released.cells[e.grader].source
    assert "collapsed cell under its task" not in released.cells[graded[0].task - 1].source

    def submit(student, answers):
        nb = _read(course / "release" / "01_ex" / "01_ex.ipynb")
        for e, answer in zip(graded, answers):
            if answer is not None:
                nb.cells[e.solution].source = with_answer(source_nb.cells[e.solution].source, answer)
        folder = course / "submitted" / student / "01_ex"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "01_ex.ipynb")
        (folder / "timestamp.txt").write_text("2027-01-01 12:00:00 UTC")

    solutions = [re.search(r"BEGIN SOLUTION\n(.*)\n\s*### END", source_nb.cells[e.solution].source, re.S).group(1)
                 for e in graded]
    wrongs = [source_nb.cells[e.solution].metadata["aicourse"]["wrong"] for e in graded]
    submit("full", solutions)
    submit("wrong", wrongs[:2] + [None])
    done = subprocess.run(nbg + ["autograde", "01_ex", "--force"], cwd=course, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "has changed" not in done.stdout + done.stderr, "nbgrader #1961's checksum warning is back"

    def outputs(student):
        nb = _read(course / "autograded" / student / "01_ex" / "01_ex.ipynb")
        texts = {}
        for e in graded:
            out = nb.cells[e.grader].outputs
            texts[e.number] = "".join(o.get("text", "") for o in out) + "".join(
                json.dumps(o.get("traceback", "")) for o in out)
        return texts

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        def scores(student):
            sub = gb.find_submission_notebook("01_ex", "01_ex", student)
            return {g.cell.name: g.score for g in sub.grades if g.cell.name.endswith("-test")}

        assert scores("full") == {"ex1-test": 1, "ex2-test": 1, "ex3-test": 1}
        assert scores("wrong") == {"ex1-test": 0, "ex2-test": 0, "ex3-test": 0}
    assert all("solved" in text for text in outputs("full").values())
    wrong = outputs("wrong")
    assert "1 · double: wrong — at [0] got 3, expected 2" in wrong[1] and "failing check: double" in wrong[1]
    assert "got 5,000, expected 5,050" in wrong[2] and "failing check: sum of 1..100" in wrong[2]
    assert ": not attempted" in wrong[3], wrong[3]


# ----------------------------------------------------------------------------- the teaching guide
GUIDE = (Path(__file__).resolve().parent.parent / "docs" / "teaching.md").read_text()


def _guide_sections() -> dict[str, str]:
    """Each notebook's subsection of the guide, by its number ("00" ... "25")."""
    body = GUIDE.split("<!-- per-notebook:start -->")[1].split("<!-- per-notebook:end -->")[0]
    return {m.group(1): m.group(0) for m in re.finditer(r"(?ms)^### (\d\d) · .*?(?=^### |\Z)", body)}


def test_the_weekly_plan_fits_its_term():
    """Terms of 13 weeks at 2 x 90 minutes: every notebook's minutes, none over a week, the lab the rest,
    assignments that share no notebook and are handed out after their last lecture."""
    minutes = {n: int(re.search(r"\*\*Minutes:\*\* (\d+)", text).group(1)) for n, text in _guide_sections().items()}
    plan = GUIDE.split("## Three terms of 13 weeks")[1]
    assert "two sessions of 90 minutes" in plan
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in plan.splitlines()
            if re.match(r"^\| \d+ \|", line)]
    assert [int(r[0]) for r in rows] == list(range(1, 14))
    taught: dict[str, int] = {}
    assert all(len(r) == 10 for r in rows), "three terms: week, then lectures, lab, assignment per term"
    for term in (0, 1, 2):
        assigned: list[tuple[int, set]] = []
        for row in rows:
            week, lectures, lab, assignment = int(row[0]), *row[1 + 3 * term: 4 + 3 * term]
            entries = re.findall(r"([^,()][^()]*?)\s*\((\d+)\)", lectures)
            total = sum(int(m) for _, m in entries)
            assert total <= 180 and int(lab.split(":")[0]) == 180 - total, (week, term, lectures, lab)
            for name, m in entries:
                number = re.match(r"(\d\d)\b", name.strip())
                if number:
                    taught[number.group(1)] = max(taught.get(number.group(1), 0), week + 100 * term)
                    minutes[number.group(1)] -= int(m)
            if assignment != "—":
                first, last = re.search(r"(\d\d)–(\d\d)", assignment).groups()
                covered = {f"{n:02d}" for n in range(int(first), int(last) + 1)}
                assert all(taught.get(n, 10**6) <= week + 100 * term for n in covered), (week, assignment)
                assert all(not covered & other for _, other in assigned), f"{assignment} overlaps another"
                assigned.append((week, covered))
        assert len(assigned) == 3
    assert {n: m for n, m in minutes.items() if m} == {}, "a notebook's minutes differ from its lectures"
    assert sorted(taught) == sorted(p.stem[:2] for p in NOTEBOOKS), "a notebook has no lecture"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_guide_answers_every_exercise(path):
    """The guide's table of each notebook: one row per exercise, by its number, kind and title, with an answer
    (and, for a graded one, the wrong answer its grader rejects)."""
    section = _guide_sections().get(path.stem[:2])
    assert section, f"docs/teaching.md has no section for {path.stem}"
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert lines and lines[0] == "| exercise | answer | grader rejects |", f"{path.stem}: no answer column"
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[1:]]
    found = exercises(_read(path))
    assert [r[0] for r in rows] == [f"{e.number} · {e.kind} · {e.title}" for e in found]
    assert all(len(r) == 3 and r[1] not in ("", "—") for r in rows), f"{path.stem}: an exercise without an answer"


def test_a_wrong_answer_that_overflows_warns_in_its_message_not_on_stderr(capsys):
    """A naive formula (exp overflowing) is the learner's: its NumPy warnings are named in the grade's
    message, and nothing reaches stderr (the course's cells write nothing there)."""
    import numpy as np

    from aicourse import check
    from aicourse.exercises import grade

    def naive_softplus(x):
        return np.log(1 + np.exp(x))

    x = np.array([1.0, 1000.0])
    result = grade("9 · softplus", lambda: check("softplus", naive_softplus(x), np.logaddexp(0, x)))
    captured = capsys.readouterr()
    assert result.status == "wrong" and captured.err == ""
    assert "your code warned: RuntimeWarning: overflow encountered in exp" in captured.out
    result = grade("9 · softplus", lambda: check("softplus", np.logaddexp(0, x), np.logaddexp(0, x)))
    assert result.solved and "warned" not in capsys.readouterr().out
