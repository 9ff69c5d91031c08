"""`aicourse progress`: every exercise of a handout folder, solved / wrong / not attempted / discussion, per
notebook and in total; a notebook is executed again only when its cells changed. `aicourse run` of a
handout adds an exercises column to its summary. Small generated notebooks, not the course's."""

import nbformat
import pytest

from aicourse.cli import main
from aicourse.exercises import PROGRESS_CACHE, exercises, handout, with_answer
from aicourse.notebooks import new_notebook
from aicourse.runner import run


def _course(folder):
    """Two course notebooks: 01 with three graded exercises and a discussion, 02 with one graded exercise."""
    folder.mkdir()
    hidden = "\n### BEGIN HIDDEN TESTS\nassert_solved({!r})\n### END HIDDEN TESTS"

    def graded(n, title, solution, wrong, test):
        return [nbformat.v4.new_markdown_cell(f"**Exercise {n} (graded) · {title}.**"),
                nbformat.v4.new_code_cell(solution, metadata={"aicourse": {"wrong": wrong},
                                                              "jupyter": {"source_hidden": True}}),
                nbformat.v4.new_code_cell(test + hidden.format(test.split("'")[1]))]

    one = new_notebook(1, "ex", "Ex")
    one.cells[3].source += "\nfrom aicourse import grade, assert_solved"
    one.cells += [nbformat.v4.new_markdown_cell("## Exercises")]
    one.cells += graded(1, "Double it", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                        "    return x + 2", "grade('1 · double', lambda: check('double', double(np.ones(2)), 2 * np.ones(2)))")
    one.cells += graded(2, "Count", "def count(n):\n    ### BEGIN SOLUTION\n    return n * (n + 1) // 2\n"
                        "    ### END SOLUTION", "    return n * n // 2",
                        "grade('2 · count', lambda: check('sum of 1..100', count(100), 5050))")
    one.cells += graded(3, "Outer product", "def outer(a, b):\n    ### BEGIN SOLUTION\n    return np.outer(a, b)\n"
                        "    ### END SOLUTION", "    return np.outer(b, a)",
                        "grade('3 · outer', lambda: check('outer', outer(np.ones(4), np.ones(5)), np.ones((4, 5))))")
    one.cells += [nbformat.v4.new_markdown_cell("**Exercise 4 (discussion) · Why?**"),
                  nbformat.v4.new_markdown_cell("<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->")]
    two = new_notebook(2, "more", "More")
    two.cells[3].source += "\nfrom aicourse import grade, assert_solved"
    two.cells += graded(1, "Square", "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
                        "    return 2 * x", "grade('1 · square', lambda: check('square of 3', square(3.0), 9.0))")
    for nb, name in ((one, "01_ex.ipynb"), (two, "02_more.ipynb")):
        for c in nb.cells:
            c.pop("id", None)
        nbformat.write(nb, folder / name)
    return one


def _answer(path, number, answer):
    nb = nbformat.read(path, as_version=4)
    e = next(e for e in exercises(nb) if e.number == number)
    nb.cells[e.solution].source = answer
    nbformat.write(nb, path)


@pytest.fixture()
def work(tmp_path):
    source = _course(tmp_path / "notebooks")
    out = tmp_path / "my-work"
    handout([str(tmp_path / "notebooks" / n) for n in ("01_ex.ipynb", "02_more.ipynb")], out)
    found = {e.number: e for e in exercises(source)}
    _answer(out / "01_ex.ipynb", 1, source.cells[found[1].solution].source)            # solved
    _answer(out / "01_ex.ipynb", 2, with_answer(source.cells[found[2].solution].source,  # wrong
                                                "    return n * n // 2"))
    _answer(out / "01_ex.ipynb", 4, "Because I say so.")                                # answered
    return out


def test_progress_lists_every_exercise_and_reruns_only_what_changed(work, capsys):
    assert main(["progress", str(work)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert "[1/2] 01_ex: running ..." in printed and "[2/2] 02_more: running ..." in printed, printed
    row = {line.split("  ")[-1].strip(): line for line in lines}
    assert any("1 · Double it" in line and line.endswith("solved") for line in lines), printed
    assert any("2 · Count" in line and "wrong: got 5,000, expected 5,050 (check: sum of 1..100)" in line
               for line in lines), printed
    assert any("3 · Outer product" in line and line.endswith("not attempted") for line in lines), printed
    assert any("4 · Why?" in line and line.endswith("discussion (answered)") for line in lines), printed
    assert any("1 · Square" in line and line.endswith("not attempted") for line in lines), printed
    assert "01_ex: 1 of 3 solved, 1 wrong, 1 not attempted; 1 discussion (1 answered)" in printed
    assert lines[-1] == "all 2 notebook(s): 1 of 4 solved, 1 wrong, 2 not attempted; 1 discussion (1 answered)"
    assert all(len(line) <= 100 for line in lines), row
    assert (work / PROGRESS_CACHE).is_file()

    assert main(["progress", str(work)]) == 0  # nothing changed: nothing runs
    again = capsys.readouterr().out
    assert "running" not in again and again.count("unchanged since the last run") == 2
    assert again.splitlines()[-1] == lines[-1]

    nb = nbformat.read(work / "01_ex.ipynb", as_version=4)  # JupyterLab saved outputs only: still unchanged
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="a saved output\n")]
    nbformat.write(nb, work / "01_ex.ipynb")
    _answer(work / "02_more.ipynb", 1, "def square(x):\n    return x * x")  # a new answer: only 02 reruns
    assert main(["progress", str(work)]) == 0
    third = capsys.readouterr().out
    assert "[1/2] 01_ex: unchanged since the last run" in third and "[2/2] 02_more: running ..." in third
    assert third.splitlines()[-1].startswith("all 2 notebook(s): 2 of 4 solved, 1 wrong, 1 not attempted")


def test_a_missing_folder_is_one_sentence(tmp_path, capsys):
    assert main(["progress", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "aicourse handout --out" in err[0]


def test_run_of_a_handout_counts_its_exercises(work, tmp_path):
    [result] = run([str(work / "01_ex.ipynb")], {}, tmp_path / "out", progress=False)
    assert result.status == "ok"
    summary = (tmp_path / "out" / "summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| notebook"))
    row = next(line for line in summary.splitlines() if line.startswith("| 01_ex"))
    assert header.endswith("| exercises |") and row.endswith("| 1/3 solved |"), (header, row)
    assert "1 of 3 graded exercises solved" in summary
