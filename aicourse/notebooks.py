"""Reading, creating, checking and exporting the course notebooks (nbformat)."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import nbformat

from . import config

NAME_RE = re.compile(r"^(\d{2})_([a-z0-9]+(?:_[a-z0-9]+)*)\.ipynb$")
EXPORT_MARK = "#| export"
REQUIRED_PARAMS = ("seed", "device", "verbose", "threads")


# ----------------------------------------------------------------------------- finding
def all_notebooks(folder: Path | None = None) -> list[Path]:
    """The course notebooks in syllabus order (by their number prefix)."""
    folder = Path(folder or config.NOTEBOOKS)
    return sorted(p for p in folder.glob("*.ipynb") if NAME_RE.match(p.name))


def find_notebook(name: str, folder: Path | None = None) -> Path:
    """Resolve ``"07"``, ``"10_convolution"``, ``"10_convolution.ipynb"`` or a path.

    A name with a folder in it (``./my-work/22_gpt``, ``my-work/22_gpt.ipynb``) is a path and means that
    file (``.ipynb`` may be left out), never the notebook of the same name in ``folder``. An unknown name
    or a missing path raises FileNotFoundError in one sentence.
    """
    p = Path(name)
    if p.suffix == ".ipynb" and p.is_file():
        return p.resolve()
    if len(p.parts) > 1 or name.startswith(".") or "/" in name or "\\" in name:
        for candidate in (p, p.with_name(p.name + ".ipynb")):
            if candidate.suffix == ".ipynb" and candidate.is_file():
                return candidate.resolve()
        tried = name if name.endswith(".ipynb") else f"{name} (nor {name}.ipynb)"
        raise FileNotFoundError(f"No notebook at {tried}.")
    notebooks = all_notebooks(folder)
    stem = p.name[:-6] if p.name.endswith(".ipynb") else p.name
    hits = [nb for nb in notebooks if nb.stem == stem or nb.name.split("_", 1)[0] == stem]
    if len(hits) != 1:
        known = ", ".join(nb.stem for nb in notebooks) or "none"
        raise FileNotFoundError(f"No notebook {name!r} in {folder or config.NOTEBOOKS} (known: {known}).")
    return hits[0]


def slug(path: Path) -> str:
    """``10_convolution.ipynb`` -> ``convolution`` (the name of its exported module)."""
    m = NAME_RE.match(Path(path).name)
    if not m:
        raise ValueError(f"{Path(path).name} is not named NN_words.ipynb")
    return m.group(2)


def parameters_cells(nb) -> list:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


# ----------------------------------------------------------------------------- conventions
def _param_problems(source: str) -> list[str]:
    problems = []
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"parameters cell is not valid Python ({exc.msg})"]
    comments = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    names = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name) or stmt.value is None:
            problems.append(f"parameters cell line {stmt.lineno} is not `name: type = value  # comment`")
            continue
        names.append(stmt.target.id)
        if stmt.lineno not in comments:
            problems.append(f"parameter {stmt.target.id!r} has no trailing comment (papermill shows it as help)")
    for required in REQUIRED_PARAMS:
        if required not in names:
            problems.append(f"parameters cell lacks {required!r}")
    return problems


def problems(path: Path, nb=None) -> list[str]:
    """Every way the notebook at ``path`` breaks the course conventions ([] if none)."""
    path = Path(path)
    nb = nb if nb is not None else nbformat.read(path, as_version=4)
    out = []
    if not NAME_RE.match(path.name):
        out.append(f"file name {path.name!r} is not NN_lowercase_words.ipynb")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        out.append("kernelspec is not python3")
    cells = nb.cells
    if not cells or cells[0].cell_type != "markdown" or not cells[0].source.lstrip().startswith("# "):
        out.append("first cell is not a Markdown title ('# ...')")
    elif config.colab_url(f"notebooks/{path.name}") not in cells[0].source:
        out.append(f"title cell has no Open-in-Colab badge for notebooks/{path.name}")
    if len(cells) < 2 or cells[1].cell_type != "code" or "google.colab" not in cells[1].source \
            or config.COLAB_INSTALL not in cells[1].source:
        out.append("second cell is not the Colab install cell")
    params = parameters_cells(nb)
    if len(params) != 1:
        out.append(f"{len(params)} cells tagged 'parameters' (exactly one wanted)")
    else:
        out += _param_problems(params[0].source)
    for i, c in enumerate(cells):
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            out.append(f"cell {i} is committed with outputs")
    return out


# ----------------------------------------------------------------------------- creating
COLAB_CELL = f'''# Installs the course's helper package when this runs on Colab; does nothing elsewhere.
import sys
if "google.colab" in sys.modules:
    {config.COLAB_INSTALL}'''


def new_notebook(number: int, name: str, title: str, summary: str = "One paragraph: what this notebook derives.") -> "nbformat.NotebookNode":
    """A notebook that already satisfies every convention; fill in the lesson."""
    filename = f"{number:02d}_{name}.ipynb"
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        v4.new_markdown_cell(f"# {number:02d} · {title}\n\n{config.colab_badge('notebooks/' + filename)}\n\n"
                             f"{summary}\n\n**You will learn**\n- ...\n\n**Prerequisites**: ..."),
        v4.new_code_cell(COLAB_CELL),
        v4.new_code_cell('seed: int = 0  # random seed for NumPy and torch\n'
                         'device: str = "auto"  # "auto", "cpu", "cuda" or "mps"\n'
                         "verbose: bool = False  # print every check's own line, not one line per group\n"
                         "threads: int = 0  # torch and BLAS threads (0: cores / notebooks running at once)",
                         metadata={"tags": ["parameters"]}),
        v4.new_code_cell("import numpy as np\nimport torch\n\nimport aicourse\n"
                         "from aicourse import check, expect_failure, grad_check, group, settings, tensor\n\n"
                         "dev = aicourse.setup(seed=seed, device=device, verbose=verbose, threads=threads)"),
    ]
    for c in nb.cells:  # stable ids: clean diffs
        c.pop("id", None)
    nb.nbformat_minor = 4
    return nb


# ----------------------------------------------------------------------------- export
def export_cells(nb) -> list[str]:
    """Sources of the cells marked ``#| export`` (marker line removed)."""
    return [c.source.split("\n", 1)[1] if "\n" in c.source else ""
            for c in nb.cells if c.cell_type == "code" and c.source.startswith(EXPORT_MARK)]


def render_module(path: Path, nb=None) -> str | None:
    """The text of ``aicourse/lessons/<slug>.py`` for one notebook (None: nothing exported)."""
    nb = nb if nb is not None else nbformat.read(path, as_version=4)
    cells = export_cells(nb)
    if not cells:
        return None
    title = nb.cells[0].source.splitlines()[0].lstrip("# ").strip() if nb.cells else path.stem
    head = (f'"""{title}: code exported from notebooks/{Path(path).name}.\n\n'
            f"Generated by `aicourse export`; edit the notebook, not this file.\n\"\"\"\n")
    body = "\n\n\n".join(cell.strip("\n") for cell in cells)
    return f"{head}\n{body}\n"


def export(notebooks: list[Path] | None = None, lessons: Path | None = None, *, check: bool = False) -> list[str]:
    """Write every notebook's exported cells to ``aicourse/lessons``.

    With ``check=True`` nothing is written; the return value lists each module
    that differs from its notebook (the drift test asserts it is empty).
    """
    lessons = Path(lessons or config.LESSONS)
    whole_course = notebooks is None
    notebooks = all_notebooks() if whole_course else notebooks
    wanted = {}
    for path in notebooks:
        text = render_module(path)
        if text is not None:
            wanted[lessons / f"{slug(path)}.py"] = text
    drift = []
    for target, text in wanted.items():
        current = target.read_text() if target.exists() else None
        if current != text:
            drift.append(f"{target.name}: {'missing' if current is None else 'differs from'} its notebook")
            if not check:
                target.write_text(text)
    for stale in sorted(lessons.glob("*.py")) if whole_course else []:
        if stale.name != "__init__.py" and stale not in wanted:
            drift.append(f"{stale.name}: no notebook exports it")
            if not check:
                stale.unlink()
    return drift


# ----------------------------------------------------------------------------- Colab links
BADGE_URL_RE = re.compile(r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[^/\s)]+/"
                          r"(notebooks/[\w.-]+\.ipynb)")
INSTALL_RE = re.compile(r'%pip install -q "aicourse @ git\+https://github\.com/[\w.-]+/[\w.-]+@[^"\s]+"')


def rewrite_links(text: str) -> str:
    """Every Colab badge URL and install line in ``text`` pointed at ``config.REPO`` and ``config.REF``."""
    text = BADGE_URL_RE.sub(lambda m: config.colab_url(m.group(1)), text)
    return INSTALL_RE.sub(lambda m: config.COLAB_INSTALL, text)


REPO_RE, REF_RE = re.compile(r"^[\w.-]+/[\w.-]+$"), re.compile(r"^[\w.-]+$")


def set_repo(repo: str | None = None, ref: str | None = None, config_file: Path | None = None) -> list[str]:
    """Write ``repo`` (GitHub owner/name) and ``ref`` (a branch or tag) into ``aicourse/config.py`` and use
    them in this process; returns the file if it changed. A malformed value is one sentence."""
    if repo is not None and not REPO_RE.match(repo):
        raise ValueError(f"--repo {repo!r} is not a GitHub owner/name such as alice/aicourse.")
    if ref is not None and not REF_RE.match(ref):
        raise ValueError(f"--ref {ref!r} is not a branch or tag name (letters, digits, '.', '_', '-').")
    path = Path(config_file or Path(config.__file__))
    text = new = path.read_text()
    for name, value in (("REPO", repo), ("REF", ref)):
        if value is not None:
            new, n = re.subn(rf'^{name} = "[^"\n]*"$', f'{name} = "{value}"', new, count=1, flags=re.M)
            if n != 1:
                raise ValueError(f"{path} has no line {name} = \"...\" to set.")
    config.use(repo, ref)
    if new != text:
        path.write_text(new)
        return [str(path)]
    return []


def sync_links(readme: Path | None = None, notebooks: list[Path] | None = None) -> list[str]:
    """Rewrite the badges and install cells of every notebook, and README's badges, from config.

    Returns the files changed. Only the title and Colab cells of a notebook are touched.
    """
    changed = []
    for path in notebooks if notebooks is not None else all_notebooks():
        nb = nbformat.read(path, as_version=4)
        before = [c.source for c in nb.cells[:2]]
        for cell in nb.cells[:2]:
            cell.source = rewrite_links(cell.source)
        if [c.source for c in nb.cells[:2]] != before:
            nbformat.write(nb, path)
            changed.append(str(path))
    readme = Path(readme or config.ROOT / "README.md")
    if readme.exists():
        text = readme.read_text()
        if rewrite_links(text) != text:
            readme.write_text(rewrite_links(text))
            changed.append(str(readme))
    return changed
