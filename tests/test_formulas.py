"""Every formula of every notebook renders in MathJax, the engine JupyterLab and the book use.

The formulas are cut out of the Markdown cells the way JupyterLab finds them (``$...$``, ``$$...$$``,
``\\begin{env}...\\end{env}``; nothing inside code) and rendered by MathJax 3 under Node
(``tests/mathjax/render.js``, the version JupyterLab 4 ships) with every TeX package on. A TeX error or
an undefined macro — which JupyterLab shows as raw red TeX — fails the test, naming notebook, cell and
formula. The first run installs MathJax with ``npm ci`` in tests/mathjax (tests/npm.py); without Node the
test is skipped locally and fails in CI.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from npm import ensure_node_modules

from aicourse.notebooks import all_notebooks

MATHJAX = Path(__file__).parent / "mathjax"
CODE = re.compile(r"```.*?```|~~~.*?~~~|`[^`\n]*`", re.S)
MATH = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$"                       # $$ display $$
                  r"|\\begin\{([a-z]+\*?)\}(.+?)\\end\{\2\}"           # \begin{env} ... \end{env}
                  r"|(?<![\\$])\$(?!\$)((?:\\.|[^$\\])+?)(?<!\\)\$", re.S)  # $ inline $


def formulas(markdown: str) -> list[tuple[str, bool]]:
    """(TeX, display?) for every formula of a Markdown text; a ``$`` inside code starts no formula."""
    text = CODE.sub(lambda m: m.group(0).replace("$", " "), markdown)  # as JupyterLab: no math in code
    found = []
    for m in MATH.finditer(text):
        if m.group(1) is not None:
            found.append((m.group(1), True))
        elif m.group(2) is not None:
            found.append((f"\\begin{{{m.group(2)}}}{m.group(3)}\\end{{{m.group(2)}}}", True))
        else:
            found.append((m.group(4), False))
    return found


def render_failures(items: list[tuple[str, str, bool]]) -> list[str]:
    """Render (where, tex, display) items; one line per formula that MathJax refuses."""
    why_not = ensure_node_modules(MATHJAX, "mathjax-full")
    if why_not:
        if os.environ.get("CI"):
            pytest.fail(f"MathJax: {why_not} (.ci/run installs Node)")
        pytest.skip(why_not)
    node = shutil.which("node")
    payload = json.dumps([{"id": i, "tex": tex, "display": display} for i, (_, tex, display) in enumerate(items)])
    done = subprocess.run([node, str(MATHJAX / "render.js")], input=payload, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return [f"{items[f['id']][0]}: {f['error']}: {items[f['id']][1]!r}" for f in json.loads(done.stdout)]


def course_formulas() -> list[tuple[str, str, bool]]:
    items = []
    for path in all_notebooks():
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown":
                items += [(f"{path.name} cell {i}", tex, display) for tex, display in formulas(cell.source)]
    notation = Path(__file__).parent.parent / "docs" / "notation.md"
    items += [(f"docs/{notation.name}", tex, display) for tex, display in formulas(notation.read_text())]
    return items


def test_every_formula_renders():
    items = course_formulas()
    assert len(items) > 500, "the extraction found too few formulas"
    failures = render_failures(items)
    assert not failures, f"{len(failures)} formula(s) do not render:\n" + "\n".join(failures)


def test_a_planted_bad_formula_fails_with_its_place():
    md = ("The output is $O = \\text{concat}(\\text{head_1}, \\dots)W^O$; fine: $x^2$, `$not math$`,\n"
          "$$\\frac{a}{b$$ and \\begin{aligned} a &= \\undefinedmacro b \\end{aligned}")
    found = formulas(md)
    assert [tex for tex, _ in found] == ["O = \\text{concat}(\\text{head_1}, \\dots)W^O", "x^2", "\\frac{a}{b",
                                         "\\begin{aligned} a &= \\undefinedmacro b \\end{aligned}"]
    failures = render_failures([(f"planted.ipynb cell {i}", tex, d) for i, (tex, d) in enumerate(found)])
    assert len(failures) == 3
    assert failures[0].startswith("planted.ipynb cell 0: '_' allowed only in math mode")
    assert "Missing close brace" in failures[1] and "Undefined control sequence" in failures[2]
