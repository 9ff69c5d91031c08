"""Each notebook is executed once (conftest.py): nbval runs its student release and then each graded
exercise's wrong answer and solution, each followed by its grader. These tests run that machinery on a
two-exercise notebook: a grader that accepts its wrong answer, a cell that writes to stderr or a lesson
cell that fails must each fail the notebook's test."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

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


CASES = {  # file stem: (wrong answer, extra lesson cell, what its test must say)
    "01_right": ("return x + 2", "print('lesson cell')", "passed"),
    "02_grader_accepts_wrong": ("return x * 2", "print('lesson cell')", "the grader rejects it"),
    "03_warning_on_stderr": ("return x + 2", "import warnings; warnings.warn('deprecated')", "stderr: "),
    "04_lesson_cell_fails": ("return x + 2", "raise ValueError('broken lesson')", "broken lesson"),
}


@pytest.fixture(scope="module")
def one_pytest_run(tmp_path_factory):
    """All four notebooks in one pytest process (one start-up): per notebook, (failed?, its report text)."""
    tmp_path = tmp_path_factory.mktemp("execute_once")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for stem, (wrong, extra, _) in CASES.items():
        nbformat.write(_notebook(wrong, extra), folder / f"{stem}.ipynb")
    env = {**os.environ, "PYTHONPATH": str(config.ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:xdist", "-p", "no:cacheprovider",
                           "-o", "addopts=", "--nbval-current-env", "-q", "--junitxml", str(tmp_path / "r.xml"),
                           str(folder)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    results = {stem: [False, ""] for stem in CASES}
    for case in ET.parse(tmp_path / "r.xml").iter("testcase"):
        stem = next(s for s in CASES if s in case.get("classname", "") + case.get("file", "") + case.get("name", ""))
        for bad in list(case.iter("failure")) + list(case.iter("error")):
            results[stem][0] = True
            results[stem][1] += (bad.get("message") or "") + (bad.text or "")
    return results, done.stdout + done.stderr


@pytest.mark.parametrize("stem", CASES)
def test_a_broken_notebook_fails_its_one_execution(one_pytest_run, stem):
    results, out = one_pytest_run
    failed, report = results[stem]
    expected = CASES[stem][2]
    assert failed == (stem != "01_right"), out[-3000:]
    assert expected in (report if failed else out), out[-3000:]
