"""The course as a book: `aicourse book [NOTEBOOK ...] --out DIR` writes a static HTML site that needs no network.

The notebooks are executed with the course's runner into a build folder (``--no-execute``: taken as
committed), given a local Colab badge and two labelled downloads (the student version, exercises to
solve, and the notebook with its solutions), stripped of hidden tests and solution markers, and rendered by
Sphinx with myst-nb (execution off) and sphinx-book-theme, with MathJax 3 copied from npm's ``mathjax``
package (``npm ci --prefix docs/book``) into the site. The Sphinx configuration is ``docs/book/conf.py``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from . import config
from .exercises import (CODE_BEGIN, CODE_END, HIDDEN_BEGIN, HIDDEN_END, TEXT_BEGIN, TEXT_END, _cut,
                        student_version)
from .runner import notebooks_folder, plan, prepare_out, run

BOOK = config.ROOT / "docs" / "book"
#: Pages of docs/ the book carries after the syllabus (the teaching guide, with every answer, is not one).
REFERENCE = ("notation", "mistakes")
MATHJAX = BOOK / "node_modules" / "mathjax"
BADGE = re.compile(r"\[!\[Open In Colab\]\([^)\s]+\)\]\(([^)\s]+)\)")
# Combined MathJax files the book does not load (it loads tex-chtml.js): left out of the copy.
MATHJAX_UNUSED = ("mml-*", "tex-mml-*", "tex-svg*", "tex-chtml-full*", "node-main.js", "svg")


class BookError(ValueError):
    """The book cannot be built; the message is one sentence."""


def find_mathjax(root: Path | None = None) -> Path:
    """The ``es5`` folder of npm's ``mathjax`` 3, or a one-sentence BookError saying how to install it."""
    package = Path(root or MATHJAX)
    try:
        version = json.loads((package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        version = None
    if not version or not version.startswith("3.") or not (package / "es5" / "tex-chtml.js").is_file():
        found = f" (found {version})" if version else ""
        raise BookError(f"The book needs MathJax 3 from npm{found}: run `npm ci --prefix {_shown(BOOK)}` "
                        "(Node's npm) first.")
    return package / "es5"


def _shown(path: Path) -> str:
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _check_sphinx() -> None:
    missing = [m for m in ("sphinx", "myst_nb", "sphinx_book_theme") if importlib.util.find_spec(m) is None]
    if missing:
        raise BookError(f"The book needs {', '.join(missing)}: install the book extra "
                        "(pip install -e \".[book]\").")


def _prepare_site(out: Path) -> Path:
    """A writable folder that is empty or holds an earlier book (replaced once the notebooks have run)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BookError(f"{str(out)!r} is a file: choose a folder for the book with --out.")
    if out.exists() and any(out.iterdir()) and not (out / ".buildinfo").is_file():
        raise BookError(f"{str(out)!r} is not empty and holds no earlier book: choose another folder with --out.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".aicourse-write-test").write_text("")
        (out / ".aicourse-write-test").unlink()
    except OSError as exc:
        raise BookError(f"Cannot write the book to {str(out)!r}: {(exc.strerror or type(exc).__name__).lower()} "
                        "(choose another folder with --out).") from None
    return out


def solutions_name(path: Path) -> str:
    """``16_attention.ipynb`` -> ``16_attention-solutions.ipynb``: the download that holds the solutions."""
    return f"{Path(path).stem}-solutions.ipynb"


def page_source(executed: Path, original: Path) -> nbformat.NotebookNode:
    """A notebook as the book shows it: the Colab badge's image local; beside it a download of the student
    version (exercises as stubs) and one of the notebook with its solutions, labelled so; the cells
    collapsed in JupyterLab collapsed on the page too; no hidden tests or solution markers; and its
    Markdown made safe for the book's parser (:func:`book_markdown`)."""
    nb = nbformat.read(executed, as_version=4)
    title = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    link = (f"[Download the notebook (.ipynb)](path:downloads/{original.name}) (exercises to solve) "
            f"&nbsp; [Download with solutions (.ipynb)](path:downloads/{solutions_name(original)})")
    if title is not None:
        if BADGE.search(title.source):
            title.source = BADGE.sub(lambda m: f"[![Open In Colab](_static/colab-badge.svg)]({m.group(1)}) "
                                               f"&nbsp; {link}", title.source, count=1)
        else:
            title.source += f"\n\n{link}"
    for cell in nb.cells:
        if cell.cell_type == "code":
            try:  # the hidden tests are nbgrader's, the markers the releases'; neither belongs on a page
                cell.source = _cut(cell.source, HIDDEN_BEGIN, HIDDEN_END, None)
            except ValueError:
                pass
            cell.source = "\n".join(line for line in cell.source.split("\n")
                                    if line.strip() not in (CODE_BEGIN, CODE_END))
        elif cell.cell_type == "markdown":
            cell.source = book_markdown("\n".join(line for line in cell.source.split("\n")
                                                  if line.strip() not in (TEXT_BEGIN, TEXT_END)))
        if not cell.get("metadata", {}).get("jupyter", {}).get("source_hidden"):
            continue
        if cell.cell_type == "code":  # a solution: the source behind a toggle, its output shown
            tags = cell.metadata.setdefault("tags", [])
            if "hide-input" not in tags:
                tags.append("hide-input")
        elif cell.cell_type == "markdown":  # a model answer: one click opens it, as in JupyterLab
            cell.source = (f'<details class="aicourse-hidden"><summary>Show the answer</summary>\n\n'
                           f"{cell.source}\n\n</details>")
    return nb


def book_markdown(text: str) -> str:
    """A Markdown cell as the book's parser (MyST) needs it to render what JupyterLab renders.

    - ``|`` inside math in a table row is ``\\vert`` (``\\|`` is ``\\Vert``): a bare ``|`` would end the cell;
    - a link to ``../docs/NAME.md`` points at the book's own page of that reference (:data:`REFERENCE`).
    (``$$...$$`` inside a paragraph is display math by the configuration: ``myst_dmath_double_inline``.)
    """
    text = re.sub(r"\]\(\.\./docs/([\w-]+)\.md(#[^)\s]*)?\)", r"](\1.md\2)", text)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.lstrip().startswith("|") and "$" in line:
            lines[i] = _table_math(line)
    return "\n".join(lines)


def _table_math(row: str) -> str:
    """A table row with every ``|`` inside ``$...$`` written as TeX (``\\vert``, ``\\Vert``)."""
    out, i = [], 0
    for m in re.finditer(r"(?<!\\)\$(?!\$)(.+?)(?<!\\)\$", row):
        math = m.group(1).replace("\\|", "\\Vert ").replace("|", "\\vert ")
        out += [row[i:m.start()], f"${math}$"]
        i = m.end()
    return "".join(out + [row[i:]])


def index_page(pages: list[Path], extra: list[str], executed: bool = True) -> str:
    readme = (config.ROOT / "README.md").read_text() if (config.ROOT / "README.md").is_file() else ""
    intro = next((p for p in readme.split("\n\n")[1:] if p.strip() and not p.startswith("#")), "")
    toctree = "\n".join(p.stem for p in pages)
    appendix = ("\n\n```{toctree}\n:maxdepth: 1\n:caption: Reference\n\n" + "\n".join(extra) + "\n```"
                if extra else "")
    shown = ("Every page is a notebook as the course's runner executed it, with its outputs and figures. "
             if executed else "Every page is a notebook as committed (this build ran none of them: no outputs). ")
    return (f"# aicourse — deep learning, derived and proven\n\n{intro}\n\n{shown}"
            "Its **Open in Colab** badge opens it in Colab; beside it, one download gives the notebook with its "
            "exercises to solve, the other the notebook with the course's solutions.\n\n"
            f"```{{toctree}}\n:maxdepth: 1\n:caption: Syllabus\n\n{toctree}\n```{appendix}\n")


def build(names: list[str] | None = None, out: Path | str = "_build/book", build_dir: Path | str | None = None,
          progress: bool = True, execute: bool = True) -> Path:
    """Execute the notebooks with the course's runner, then render the site into ``out``; return its index.

    With ``execute=False`` the pages are the notebooks as committed (no outputs): every word and formula,
    in seconds rather than minutes (the book test reads every page so, since each notebook runs once per
    CI run, under nbval)."""
    folder = notebooks_folder()
    jobs = plan(names, {}, folder)  # an unknown notebook: one sentence, before anything runs
    _check_sphinx()
    mathjax = find_mathjax()
    if not (BOOK / "conf.py").is_file():
        raise BookError(f"The book is built from a checkout of the course ({BOOK / 'conf.py'} is missing): "
                        "run it there after pip install -e \".[book]\".")
    out = Path(out).absolute()
    work = Path(build_dir).absolute() if build_dir else out.parent / f"{out.name}-build"
    if work == out or work.is_relative_to(out):
        raise BookError("The build folder must lie outside the site folder (--out).")
    site = _prepare_site(out)
    pages = [p for p, _ in jobs]
    if execute:
        executed = prepare_out(work / "executed")
        results = run([str(p) for p in pages], {}, executed, progress=progress, folder=folder)
        failed = [r for r in results if r.status != "ok"]
        if failed:
            raise BookError(f"{failed[0].notebook} did not run ({failed[0].status}), so the book was not built; "
                            f"its executed copy is {failed[0].output}.")
        shown = {path: executed / path.name for path in pages}
    else:
        shown = {path: path for path in pages}

    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(BOOK, src, ignore=shutil.ignore_patterns("node_modules", "package*.json", "__pycache__"))
    shutil.copytree(mathjax, src / "_mathjax" / "mathjax", ignore=shutil.ignore_patterns(*MATHJAX_UNUSED))
    (src / "downloads").mkdir()
    for path in pages:
        nbformat.write(page_source(shown[path], path), src / path.name)
        committed = nbformat.read(path, as_version=4)
        nbformat.write(student_version(committed), src / "downloads" / path.name)
        shutil.copy2(path, src / "downloads" / solutions_name(path))
    extra = []
    for name in REFERENCE:
        page = config.ROOT / "docs" / f"{name}.md"
        if page.is_file():
            (src / page.name).write_text(book_markdown(page.read_text()))
            extra.append(name)
    (src / "index.md").write_text(index_page(pages, extra, executed=execute))

    if (site / ".buildinfo").is_file():  # an earlier book: no page of it stays behind
        shutil.rmtree(site)
        site.mkdir()
    start = time.perf_counter()
    print(f"building the book of {len(pages)} notebook(s) with Sphinx ...", flush=True)
    done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", "-d", str(work / "doctrees"),
                           str(src), str(site)])
    if done.returncode != 0:
        raise BookError(f"Sphinx could not build the book (its messages are above; the sources are in {src}).")
    index = site / "index.html"
    print(f"wrote the book to {_shown(site)} in {time.perf_counter() - start:.0f} s; open {index.as_uri()}")
    return index
