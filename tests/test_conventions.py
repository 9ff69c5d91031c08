"""Every course notebook follows the conventions, and each convention's test can fail."""

import ast
import copy

import nbformat
import papermill
import pytest

from aicourse import config
from aicourse.notebooks import NAME_RE, all_notebooks, new_notebook, parameters_cells, problems

NOTEBOOKS = all_notebooks()


def test_there_are_notebooks_and_every_ipynb_is_numbered():
    assert NOTEBOOKS, "no notebooks found"
    strays = [p.name for p in config.NOTEBOOKS.glob("*.ipynb") if not NAME_RE.match(p.name)]
    assert not strays, f"notebooks not named NN_words.ipynb: {strays}"


def test_numbers_are_unique():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), numbers


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_conventions(path):
    assert problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter_with_type_and_help(path):
    params = papermill.inspect_notebook(str(path))
    assert {"seed", "device", "verbose"} <= set(params)
    # papermill skips a line it cannot read (a comment with a second "="): then `-p name` is refused
    declared = [s.target.id for s in ast.parse(parameters_cells(nbformat.read(path, 4))[0].source).body]
    assert list(params) == declared, f"papermill sees {list(params)}, the cell declares {declared}"
    for name, p in params.items():
        assert p["help"], f"{name} has no help comment"
        assert p["inferred_type_name"] not in ("None", None), f"{name} has no type annotation"


# Each convention, broken on purpose in a notebook made from the template, must be reported.
def _template():
    return new_notebook(42, "sample", "Sample")


def _set_param_source(src):
    def mutate(nb):
        nb.cells[2].source = src
    return mutate


BREAKS = {
    "kernelspec": (lambda nb: nb.metadata.kernelspec.update(name="julia"), "kernelspec"),
    "title": (lambda nb: setattr(nb.cells[0], "source", "no title here"), "Markdown title"),
    "badge": (lambda nb: setattr(nb.cells[0], "source", "# 42 · Sample\n\nno badge"), "Open-in-Colab"),
    "badge elsewhere": (lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source.replace(
        "42_sample", "41_other")), "Open-in-Colab"),
    "colab cell": (lambda nb: nb.cells.pop(1), "Colab install cell"),
    "no parameters": (lambda nb: nb.cells[2].metadata.update(tags=[]), "0 cells tagged"),
    "two parameters": (lambda nb: nb.cells.append(copy.deepcopy(nb.cells[2])), "2 cells tagged"),
    "unannotated": (_set_param_source("seed = 0  # seed\ndevice: str = 'auto'  # device"), "is not `name: type"),
    "uncommented": (_set_param_source("seed: int = 0\ndevice: str = 'auto'  # device"), "no trailing comment"),
    "no seed": (_set_param_source("device: str = 'auto'  # device\nverbose: bool = False  # v"), "lacks 'seed'"),
    "no verbose": (_set_param_source("seed: int = 0  # seed\ndevice: str = 'auto'  # device"), "lacks 'verbose'"),
    "outputs": (lambda nb: nb.cells[3].outputs.append(nbformat.v4.new_output("stream", text="hi")), "outputs"),
    "execution count": (lambda nb: nb.cells[3].update(execution_count=3), "outputs"),
}


def test_template_follows_conventions(tmp_path):
    path = tmp_path / "42_sample.ipynb"
    nbformat.write(_template(), path)
    assert problems(path) == []


@pytest.mark.parametrize("name", BREAKS)
def test_each_broken_convention_is_reported(name, tmp_path):
    mutate, expected = BREAKS[name]
    nb = _template()
    mutate(nb)
    found = problems(tmp_path / "42_sample.ipynb", nb)
    assert any(expected in p for p in found), found


def test_bad_file_name_is_reported(tmp_path):
    assert any("file name" in p for p in problems(tmp_path / "Sample.ipynb", _template()))


def test_readme_syllabus_lists_every_notebook_with_its_badge():
    readme = (config.ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert f"(notebooks/{path.name})" in readme, f"README's syllabus lacks {path.name}"
        assert config.colab_url(f"notebooks/{path.name}") in readme, f"README lacks the Colab badge of {path.name}"


def test_links_rewrite_every_badge_and_install_cell(tmp_path, monkeypatch):
    from aicourse.notebooks import sync_links

    path = tmp_path / "42_sample.ipynb"
    nbformat.write(_template(), path)
    readme = tmp_path / "README.md"
    readme.write_text(f"| 42 | {config.colab_badge('notebooks/42_sample.ipynb')} |\n")
    assert sync_links(readme, [path]) == []  # already in step
    monkeypatch.setattr(config, "REPO", "someone/their-course")
    monkeypatch.setattr(config, "REF", "term-2027")
    monkeypatch.setattr(config, "COLAB_INSTALL",
                        '%pip install -q "aicourse @ git+https://github.com/someone/their-course@term-2027"')
    assert problems(path)  # the badge and install cell disagree with the new config ...
    assert sync_links(readme, [path]) == [str(path), str(readme)]
    assert problems(path) == []  # ... until `aicourse links` rewrites them
    assert "github/someone/their-course/blob/term-2027/notebooks/42_sample.ipynb" in readme.read_text()
