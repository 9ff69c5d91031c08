"""`aicourse handout` never destroys a learner's work, and the student release reads as a student's copy.

A second `handout` into the same folder keeps every notebook already there (one line says which);
`--force` first moves them to a timestamped backup folder. The release's words about the repository's
collapsed solutions are replaced, and a grader's source is collapsed (its test may compute the answer).
Nothing here executes a notebook.
"""

import re
from pathlib import Path

import nbformat
import pytest

from aicourse import config
from aicourse.cli import main
from aicourse.exercises import HANDOUT_NOTE, exercises, handout_prose, student_version
from aicourse.notebooks import all_notebooks

NOTEBOOKS = all_notebooks()


def _solve(path: Path) -> str:
    """Write an answer into the handout's first exercise cell, as a learner would; return it."""
    nb = nbformat.read(path, as_version=4)
    first = next(e for e in exercises(nb) if e.kind == "graded")
    nb.cells[first.solution].source = nb.cells[first.solution].source.replace(
        "raise NotImplementedError()", "return 'my answer'  # a learner's work")
    nbformat.write(nb, path)
    return nb.cells[first.solution].source


def test_a_second_handout_keeps_the_learners_work(tmp_path, capsys):
    out = tmp_path / "my-work"
    assert main(["handout", "16", "22", "--out", str(out)]) == 0
    assert "wrote 2 notebook(s)" in capsys.readouterr().out
    mine = _solve(out / "22_gpt.ipynb")
    before = (out / "22_gpt.ipynb").read_bytes()

    assert main(["handout", "--out", str(out)]) == 0  # the whole course, into the same folder
    printed = capsys.readouterr().out.splitlines()
    kept = [line for line in printed if line.startswith("kept ")]
    assert len(kept) == 1 and "kept 2 file(s) already in" in kept[0] and "22_gpt.ipynb" in kept[0], printed
    assert "--force" in kept[0]
    assert (out / "22_gpt.ipynb").read_bytes() == before, "a solved handout was overwritten"
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]

    assert main(["handout", "22", "--out", str(out), "--force"]) == 0
    printed = capsys.readouterr().out
    [backup] = out.glob("backup-*")
    assert re.fullmatch(r"backup-\d{8}-\d{6}", backup.name) and f"moved 1 existing file(s) to" in printed
    assert (backup / "22_gpt.ipynb").read_bytes() == before, "--force lost the old notebook"
    fresh = nbformat.read(out / "22_gpt.ipynb", as_version=4)
    assert mine not in [c.source for c in fresh.cells], "--force did not write a fresh handout"


def test_nbgrader_sources_are_kept_too(tmp_path, capsys):
    course = tmp_path / "course"
    assert main(["handout", "16", "--nbgrader", "--out", str(course)]) == 0
    config_file = course / "nbgrader_config.py"
    config_file.write_text(config_file.read_text() + "\n# the teacher's own setting\n")
    assert main(["handout", "16", "--nbgrader", "--out", str(course)]) == 0
    assert "kept 2 file(s)" in capsys.readouterr().out
    assert "the teacher's own setting" in config_file.read_text()


def test_my_work_is_not_tracked():
    ignored = (config.ROOT / ".gitignore").read_text().split()
    assert "my-work/" in ignored


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_student_release_speaks_of_the_students_copy(path):
    source = nbformat.read(path, as_version=4)
    student = student_version(source)
    assert len(student.cells) == len(source.cells)
    prose = "\n".join(c.source for c in student.cells if c.cell_type == "markdown").replace(HANDOUT_NOTE, "")
    for wrong in ("collapsed cell", "model answer", "solution is in it", "solutions are in the collapsed"):
        assert wrong not in prose, f"the student release of {path.name} still says {wrong!r}"
    assert sum(c.source.count(HANDOUT_NOTE) for c in student.cells) == 1
    for e in exercises(source):
        if e.grader is not None:
            assert student.cells[e.grader].metadata["jupyter"]["source_hidden"], "a grader's source is open"
            assert "source_hidden" not in student.cells[e.solution].metadata.get("jupyter", {})


def test_handout_prose_keeps_the_rest_of_a_sentence():
    text = ("Each graded exercise gives a task, a cell for your code — the course's solution is in it, collapsed "
            "(one click\nopens it; try first) — and a grader cell. The exercises rise in difficulty. The last "
            "one is a question to think through; its model answer is in the collapsed cell below it.\n\n"
            "In this repository the solutions are filled in and their cells collapsed (click the bar beside a "
            "collapsed cell); the student release replaces each one. The loss collapses to $s - y$.")
    assert handout_prose(text) == (
        "Each graded exercise gives a task, a cell for your code and a grader cell. The exercises rise in "
        "difficulty. The last one is a question to think through.\n\nThe loss collapses to $s - y$.")


def test_collapse_graders_hides_only_the_graders(tmp_path):
    """The mechanical change proposed for notebooks/ (a grader's source collapsed: its test may compute the
    answer); the book then shows the grader's printed line with its source behind a toggle."""
    from aicourse.book import page_source
    from aicourse.exercises import collapse_graders
    from aicourse.notebooks import new_notebook

    nb = new_notebook(1, "ex", "Ex")
    nb.cells += [nbformat.v4.new_markdown_cell("**Exercise 1 (graded) · Double it.**"),
                 nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n"
                                           "    ### END SOLUTION", metadata={"jupyter": {"source_hidden": True}}),
                 nbformat.v4.new_code_cell("grade('1 · double', lambda: check('double', double(1.0), 2.0))\n"
                                           "### BEGIN HIDDEN TESTS\nassert_solved('1 · double')\n### END HIDDEN TESTS")]
    for cell in nb.cells:
        cell.pop("id", None)
    before = [dict(c.metadata) for c in nb.cells]
    assert collapse_graders(nb) == [6] and collapse_graders(nb) == []
    assert nb.cells[6].metadata["jupyter"]["source_hidden"] is True
    assert [dict(c.metadata) for c in nb.cells[:6]] == before[:6], "only the grader changed"
    nbformat.write(nb, tmp_path / "01_ex.ipynb")
    page = page_source(tmp_path / "01_ex.ipynb", tmp_path / "01_ex.ipynb")
    assert "hide-input" in page.cells[6].metadata["tags"] and "HIDDEN TESTS" not in page.cells[6].source
    assert "BEGIN SOLUTION" not in page.cells[5].source and "return 2 * x" in page.cells[5].source
