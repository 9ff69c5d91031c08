"""Exercises: the one format, graders that accept their solution and reject a wrong answer, the releases.

For every notebook, the student release (solutions replaced by stubs) runs top to bottom in one
kernel with every grader saying "not attempted"; then, in the same kernel, each graded exercise's
wrong answer (its solution cell's ``aicourse.wrong`` metadata) is run and its grader must say "wrong",
and its solution is run and its grader must say "solved". The instructor release is the notebooks
themselves, executed: nbval runs them, and ``conftest.py`` fails any grader there that is not solved.
"""

import re
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from aicourse.cli import main
from aicourse.exercises import (CODE_BEGIN, HIDDEN_BEGIN, TEXT_BEGIN, exercise_problems, exercises,
                                student_version, with_answer)
from aicourse.notebooks import all_notebooks, new_notebook

NOTEBOOKS = all_notebooks()


def _read(path):
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_follow_the_format(path):
    assert exercise_problems(_read(path)) == []


def _grade_line(outputs) -> str:
    lines = [line for o in outputs if o.get("output_type") == "stream" for line in o.text.splitlines()
             if line.startswith("exercise ")]
    assert len(lines) == 1, f"a grader printed {lines}"
    return lines[0]


def _without_hidden_tests(source: str) -> str:
    return re.sub(rf"\n?[ \t]*{re.escape(HIDDEN_BEGIN)}.*?### END HIDDEN TESTS", "", source, flags=re.S)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_graders_accept_the_solution_and_reject_a_wrong_answer(path):
    source = _read(path)
    student = student_version(source)
    found = exercises(source)
    client = NotebookClient(student, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        for i, cell in enumerate(student.cells):  # the student release, top to bottom
            if cell.cell_type == "code":
                client.execute_cell(cell, i)
        for e in found:
            if e.kind == "graded":
                line = _grade_line(student.cells[e.grader].outputs)
                assert ": not attempted" in line, f"student release, exercise {e.number}: {line}"

        def run(src):
            cell = nbformat.v4.new_code_cell(src)
            student.cells.append(cell)
            return client.execute_cell(cell, len(student.cells) - 1).outputs

        for e in found:
            if e.kind != "graded":
                continue
            solution, grader = source.cells[e.solution], source.cells[e.grader]
            run(with_answer(solution.source, solution.metadata["aicourse"]["wrong"]))
            line = _grade_line(run(_without_hidden_tests(grader.source)))
            assert ": wrong" in line, (f"exercise {e.number}: the wrong answer "
                                       f"({solution.metadata['aicourse'].get('why', '?')}) was not rejected: {line}")
            run(solution.source)
            line = _grade_line(run(grader.source))
            assert ": solved" in line, f"exercise {e.number}: its own solution was not accepted: {line}"


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


@pytest.mark.skipif(shutil.which("nbgrader") is None, reason="nbgrader is in the `teach` extra (CI installs it)")
@pytest.mark.parametrize("name", ["00", "16"])
def test_nbgrader_round_trip_gives_full_marks(name, tmp_path):
    """nbgrader itself: generate the student version from our source, submit the solutions, autograde."""
    course = tmp_path / "course"
    assert main(["handout", name, "--nbgrader", "--out", str(course)]) == 0
    [source] = (course / "source").glob("*/*.ipynb")
    stem = source.parent.name
    nbg = [sys.executable, "-m", "nbgrader"]
    done = subprocess.run(nbg + ["generate_assignment", stem, "--force"], cwd=course, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    released = _read(course / "release" / stem / source.name)
    assert "raise NotImplementedError()" in "\n".join(c.source for c in released.cells)
    assert HIDDEN_BEGIN not in "\n".join(c.source for c in released.cells)
    submitted = course / "submitted" / "learner" / stem
    submitted.mkdir(parents=True)
    shutil.copy(source, submitted / source.name)  # a submission with every solution filled in
    done = subprocess.run(nbg + ["autograde", stem, "--force"], cwd=course, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        sub = gb.find_submission_notebook(source.stem, stem, "learner")
        graded = [g for g in sub.grades if g.cell.name.endswith("-test")]
        assert graded and all(g.score == g.max_score == 1 for g in graded), [(g.cell.name, g.score) for g in graded]
