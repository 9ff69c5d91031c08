"""Each notebook is executed once (conftest.py): nbval runs its student release and then each graded
exercise's wrong answer and solution, each followed by its grader. These tests run that machinery on a
two-exercise notebook: a grader that accepts its wrong answer, a cell that writes to stderr or a lesson
cell that fails must each fail the notebook's test."""

import os
import subprocess
import sys

import nbformat
import pytest

from aicourse import config
from aicourse.notebooks import new_notebook

GRADER = ("grade('{n} · double', lambda: check('double', double{n}(np.ones(2)), 2 * np.ones(2)))\n"
          "### BEGIN HIDDEN TESTS\nassert_solved('{n} · double')\n### END HIDDEN TESTS")


def _notebook(wrong: str = "return x + 2", extra: str = "print('lesson cell')"):
    nb = new_notebook(1, "ex", "Ex")
    nb.cells[3].source += "\nfrom aicourse import grade, assert_solved"
    nb.cells.append(nbformat.v4.new_code_cell(extra))
    for n in (1, 2):
        nb.cells += [
            nbformat.v4.new_markdown_cell(f"**Exercise {n} (graded) · Double it.** Return 2x."),
            nbformat.v4.new_code_cell(f"def double{n}(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                                      metadata={"aicourse": {"wrong": wrong}}),
            nbformat.v4.new_code_cell(GRADER.format(n=n)),
        ]
    for c in nb.cells:
        c.pop("id", None)
    return nb


def test_the_executed_notebook_is_the_student_release_then_both_answers():
    from conftest import exercise_run

    run = exercise_run(_notebook())
    text = "\n".join(c.source for c in run.cells)
    assert "### BEGIN SOLUTION" not in text.split("exercise")[0]
    graders = [c for c in run.cells if c.metadata.get("aicourse_expect") == "not attempted"]
    assert len(graders) == 2 and all("assert_solved" not in c.source for c in graders)
    tail = [(c.metadata.get("aicourse_name"), c.metadata.get("aicourse_expect")) for c in run.cells[-8:]]
    assert tail[:4] == [("exercise 1: its wrong answer", None), ("exercise 1: the grader rejects it", "wrong"),
                        ("exercise 1: its solution", None), ("exercise 1: the grader accepts it", "solved")]
    assert "return x + 2" in run.cells[-8].source and "assert_solved" in run.cells[-5].source


def _pytest(tmp_path, nb):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(nb, folder / "01_ex.ipynb")
    env = {**os.environ, "PYTHONPATH": str(config.ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:xdist", "-p", "no:cacheprovider",
                           "-o", "addopts=", "--nbval-current-env", "-q", str(folder / "01_ex.ipynb")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case, wrong, extra, expected", [
    ("right", "return x + 2", "print('lesson cell')", "passed"),
    ("a grader accepts its wrong answer", "return x * 2", "print('lesson cell')", "the grader rejects it"),
    ("a warning on stderr", "return x + 2", "import warnings; warnings.warn('deprecated')", "stderr: "),
    ("a lesson cell fails", "return x + 2", "raise ValueError('broken lesson')", "broken lesson"),
])
def test_a_broken_notebook_fails_its_one_execution(tmp_path, case, wrong, extra, expected):
    done = _pytest(tmp_path, _notebook(wrong, extra))
    out = done.stdout + done.stderr
    assert (done.returncode == 0) == (case == "right"), out[-3000:]
    assert expected in out, out[-3000:]
