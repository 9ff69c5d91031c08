"""One source for each derived function: the package's lessons equal the notebooks' export cells."""

import importlib

import nbformat
import pytest

from aicourse import config
from aicourse.notebooks import all_notebooks, export, new_notebook, slug


def test_package_and_notebooks_have_not_drifted():
    drift = export(check=True)
    assert drift == [], "run `aicourse export` and commit: " + "; ".join(drift)


@pytest.mark.parametrize("module", sorted(p.stem for p in config.LESSONS.glob("*.py") if p.stem != "__init__"))
def test_every_lesson_module_imports_on_its_own(module):
    importlib.import_module(f"aicourse.lessons.{module}")


def test_lesson_modules_are_named_after_notebooks():
    assert slug(config.NOTEBOOKS / "10_convolution.ipynb") == "convolution"
    exporting = {slug(p) for p in all_notebooks()
                 if any(c.source.startswith("#| export") for c in nbformat.read(p, 4).cells)}
    assert exporting == {p.stem for p in config.LESSONS.glob("*.py")} - {"__init__"}


def test_drift_is_detected(tmp_path):
    nbs, lessons = tmp_path / "notebooks", tmp_path / "lessons"
    nbs.mkdir(), lessons.mkdir()
    nb = new_notebook(5, "thing", "Thing")
    nb.cells.append(nbformat.v4.new_code_cell("#| export\ndef double(x):\n    return 2 * x"))
    path = nbs / "05_thing.ipynb"
    nbformat.write(nb, path)
    assert export([path], lessons, check=True) == ["thing.py: missing its notebook"]
    export([path], lessons)
    assert "def double(x):" in (lessons / "thing.py").read_text()
    assert export([path], lessons, check=True) == []
    nb.cells[-1].source = nb.cells[-1].source.replace("2 * x", "x + x")   # the notebook changes ...
    nbformat.write(nb, path)
    assert export([path], lessons, check=True) == ["thing.py: differs from its notebook"]
    (lessons / "thing.py").write_text("edited by hand\n")                 # ... or the module does
    export([path], lessons)
    assert "x + x" in (lessons / "thing.py").read_text()
