"""The book (`aicourse book`): every notebook's page, whole and offline; a sample read by headless Chromium.

The course notebooks run once per CI run (under nbval), so the book of *every* notebook is built here from
the notebooks as committed (``execute=False``): every word and formula, no outputs. Every page (home, every
lesson, the reference pages) is read as built: every formula the page hands MathJax (the ``\\(...\\)`` and
``\\[...\\]`` of its math spans, the only elements the book's MathJax typesets) is compiled by MathJax 3 under
Node (tests/test_formulas.py's renderer: a TeX error or an undefined macro fails), no TeX is left in the
text around them (``$$``, ``\\frac``, ``^{``, ``\\top``, a ``\\(`` or any other backslash command), no image,
asset or relative link fails to resolve inside the site, nothing is loaded from outside it, no hidden-test or
solution marker shows, and a lesson has its Colab badge (a local image) beside two labelled downloads: the
student version and the solutions. One Chromium then loads a sample — the home page, the lesson with the
most formulas, 16 (an exercise's screenshot) and a reference page — and keeps each DOM after MathJax ran:
no MathJax error, every formula typeset, no TeX left, a code column wide enough for a 100-character line at a
1280-pixel window (the pages share one style sheet and one MathJax configuration, so the sample stands for
the rest; the static pass above covers every page). Search finds a lesson and its snippets show typeset
formulas. A small generated notebook, executed, shows a figure, a solution behind a toggle and a
100-character printed line. Screenshots go to the test's tmp folder and to ``executed/book-screenshots/``.
Without Chromium, Node, the book extra or npm's MathJax (``npm ci --prefix docs/book``) the test is skipped
locally and fails in CI.
"""

import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from npm import ensure_node_modules
from test_formulas import render_failures

from aicourse import book, config
from aicourse.cli import main
from aicourse.exercises import CODE_BEGIN, HIDDEN_BEGIN
from aicourse.notebooks import all_notebooks, new_notebook

LESSONS = [p.stem for p in all_notebooks()]
REFERENCE = [name for name in book.REFERENCE if (config.ROOT / "docs" / f"{name}.md").is_file()]
SCREENSHOTS = config.ROOT / "executed" / "book-screenshots"
WIDTH = 1280  # pixels: a laptop's window, in which a 100-character line must fit the code column
#: What MathJax leaves of no formula it typeset: TeX in the page's rendered text is a formula that did not render.
LEFTOVER_TEX = re.compile(r"\$\$|\\frac|\^\{|\\top\b|\\[(\[]|\\[a-zA-Z]{2,}|(?<![\w$])\$(?=[^\s$\d])")
#: What the book hands MathJax: its configuration processes these elements and nothing else.
MATH_SPAN = re.compile(r'<(span|div) class="math notranslate nohighlight"[^>]*>(.*?)</\1>', re.S)
MARKERS = (HIDDEN_BEGIN, "### END HIDDEN TESTS", CODE_BEGIN, "### END SOLUTION", "BEGIN SOLUTION")


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what}: .ci/run installs it")
    pytest.skip(what)


def _browser() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        _missing("needs headless Chromium (apt-get install chromium)")
    why_not = ensure_node_modules(book.BOOK, "mathjax")  # npm ci --prefix docs/book, once, when npm is here
    if why_not:
        _missing(why_not)
    try:
        book._check_sphinx()
        book.find_mathjax()
    except book.BookError as exc:
        _missing(str(exc))
    return exe


class Page(HTMLParser):
    """Tags and attributes of one HTML document."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


def _target(site: Path, page: Path, ref: str) -> Path | None:
    """The file a relative URL of ``page`` points to; None for an external or page-local one."""
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return (page.parent / unquote(parts.path)).resolve()


def rendered_text(dom: str) -> str:
    """The text a reader sees outside code and typeset formulas."""
    dom = re.sub(r"(?is)<(script|style|pre|code|mjx-container|textarea|kbd)\b.*?</\1>", " ", dom)
    return html.unescape(re.sub(r"(?s)<[^>]+>", " ", dom))


def page_formulas(static: str) -> list[tuple[str, bool | None]]:
    """(TeX, display?) of every formula a built page hands MathJax; display is None for an undelimited one."""
    found = []
    for m in MATH_SPAN.finditer(static):
        body = html.unescape(m.group(2)).strip()
        delimited = {"\\(": ("\\)", False), "\\[": ("\\]", True)}.get(body[:2])
        if delimited and body.endswith(delimited[0]):
            found.append((body[2:-2], delimited[1]))
        else:
            found.append((body, None))
    return found


def static_problems(site: Path, page: Path) -> list[str]:
    """What is wrong with one page as built, before any script runs; its formulas are compiled separately."""
    static = page.read_text()
    problems = page_problems(site, page, MATH_SPAN.sub(" ", static))
    undelimited = [tex for tex, display in page_formulas(static) if display is None]
    if undelimited:
        problems.append(f"a math span MathJax would not read: {undelimited[0][:60]!r}")
    return problems


def page_problems(site: Path, page: Path, dom: str) -> list[str]:
    """What is wrong with one page as the browser left it (after MathJax)."""
    parsed, problems = Page(dom), []
    if "<mjx-merror" in dom or "data-mjx-error=" in dom:
        errors = re.findall(r'data-mjx-error="([^"]*)"', dom) or ["mjx-merror"]
        problems.append(f"MathJax error: {errors[0]}")
    text = rendered_text(dom)
    for m in LEFTOVER_TEX.finditer(text):
        context = " ".join(text[max(0, m.start() - 40):m.end() + 40].split())
        problems.append(f"TeX left in the text: {m.group(0)!r} in '{context}'")
        break
    for marker in MARKERS:
        if marker in dom:
            problems.append(f"a marker on the page: {marker}")
    clipped = re.search(r'data-clipped="(\d+)"', dom)
    if clipped and int(clipped.group(1)):
        problems.append(f"{clipped.group(1)} code block(s) clip a 100-character line at {WIDTH} px")
    for tag, attr in [("img", "src"), ("script", "src"), ("link", "href"), ("a", "href"),
                      ("source", "src"), ("iframe", "src")]:
        for attrs in parsed.all(tag):
            ref = attrs.get(attr)
            if not ref or ref.startswith(("#", "data:", "mailto:", "javascript:")):
                continue
            external = bool(urlsplit(ref).scheme in ("http", "https") or ref.startswith("//"))
            if external:
                if tag != "a":  # a link out (Colab, GitHub) is fine; loading from outside is not
                    problems.append(f"<{tag}> loads {ref} from outside the site")
                continue
            target = _target(site, page, ref)
            if target is None:
                continue
            if not target.is_relative_to(site.resolve()) or not target.is_file():
                kind = "missing image" if tag == "img" else f"broken {tag} {attr}"
                problems.append(f"{kind}: {ref}")
    return problems


def chromium(args: list[str], url: str, profile: Path, timeout: int = 180) -> str:
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--mute-audio", f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--virtual-time-budget=10000", *args, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# One browser for every page: a driver page loads each in an iframe as wide as a laptop's window, waits for
# MathJax, puts a 100-character line into a copy of every code block to see whether it fits, and keeps the DOM.
DRIVER = """<!DOCTYPE html><html><body><script>
const pages = %s, width = %d;
function visit(page) {
  return new Promise(resolve => {
    const frame = document.createElement("iframe");
    frame.style.width = width + "px"; frame.style.height = "900px";
    frame.onload = async () => {
      const w = frame.contentWindow, doc = frame.contentDocument;
      try { if (w.MathJax && w.MathJax.startup) await w.MathJax.startup.promise; } catch (e) {}
      let clipped = 0;
      doc.querySelectorAll("div.cell div.highlight pre, div.cell_output pre").forEach(pre => {
        const probe = pre.cloneNode(false);
        probe.textContent = "x".repeat(100);
        pre.parentNode.insertBefore(probe, pre);
        if (probe.scrollWidth > probe.clientWidth) clipped += 1;
        probe.remove();
      });
      doc.body.dataset.clipped = clipped;
      const out = document.createElement("pre");
      out.dataset.page = page;
      out.textContent = doc.documentElement.outerHTML;
      document.body.appendChild(out);
      frame.remove();
      resolve();
    };
    frame.src = page;
    document.body.appendChild(frame);
  });
}
(async () => { for (const page of pages) await visit(page); document.body.dataset.done = "yes"; })();
</script></body></html>"""


def browse(root: Path, pages: list[Path], profile: Path) -> dict[Path, str]:
    """Every page's DOM after MathJax, read by one Chromium (each page in an iframe of WIDTH pixels)."""
    driver = root / "_aicourse-driver.html"
    driver.write_text(DRIVER % (json.dumps([p.relative_to(root).as_posix() for p in pages]), WIDTH))
    try:
        out = chromium([f"--window-size={WIDTH + 40},1000", "--disable-web-security",
                        "--allow-file-access-from-files", "--virtual-time-budget=1200000", "--dump-dom"],
                       driver.as_uri(), profile, timeout=900)
    finally:
        driver.unlink()
    assert 'data-done="yes"' in out, "the driver did not visit every page"
    doms = {root / m.group(1): html.unescape(m.group(2))
            for m in re.finditer(r'<pre data-page="([^"]+)">(.*?)</pre>', out, re.S)}
    assert sorted(doms) == sorted(pages), sorted(set(pages) - set(doms))
    return doms


# A screenshot of a page scrolled down comes out blank in headless Chromium; so a copy of the page drops what
# comes before the element (at every level up to the article), and is shot from the top.
ELEMENT_FIRST = """<script>window.addEventListener("load", () => {
  const hit = [...document.querySelectorAll(%s)].find(e => e.textContent.includes(%s));
  for (let n = hit; n && n.tagName !== "ARTICLE"; n = n.parentElement)
    while (n.previousElementSibling) n.previousElementSibling.remove();
});</script></body>"""


def screenshot(page: Path, png: Path, profile: Path, selector: str | None = None, text: str = "") -> None:
    """A screenshot of ``page`` (from the element ``selector`` whose text holds ``text``, if given)."""
    copy = page.with_name(f"_{png.stem}-view.html")
    script = ELEMENT_FIRST % (json.dumps(selector), json.dumps(text)) if selector else "</body>"
    copy.write_text(page.read_text().replace("</body>", script))
    try:
        chromium([f"--window-size={WIDTH},1400", f"--screenshot={png}"], copy.as_uri(), profile)
    finally:
        copy.unlink()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    _browser()
    tmp = tmp_path_factory.mktemp("book")
    index = book.build(None, tmp / "site", tmp / "build", progress=False, execute=False)
    return index.parent, tmp


def sample(root: Path) -> list[Path]:
    """The pages Chromium reads: home, the lesson with the most formulas, 16 and the first reference page."""
    most = max(LESSONS, key=lambda n: len(MATH_SPAN.findall((root / f"{n}.html").read_text())))
    names = ["index", most, *(["16_attention"] if "16_attention" in LESSONS else []), *REFERENCE[:1]]
    return [root / f"{n}.html" for n in dict.fromkeys(names)]


@pytest.fixture(scope="module")
def browsed(site):
    """The sampled pages and a search as Chromium left them, and screenshots."""
    root, tmp = site
    doms = browse(root, sample(root), tmp / "profile-pages")
    search = chromium(["--allow-file-access-from-files", "--virtual-time-budget=30000", "--dump-dom"],
                      (root / "search.html").as_uri() + "?q=softmax", tmp / "profile-search")
    shots = tmp / "screenshots"
    shots.mkdir()
    screenshot(root / "index.html", shots / "index.png", tmp / "profile-shot-0")
    if "16_attention" in LESSONS:
        screenshot(root / "16_attention.html", shots / "16_attention-exercise-4.png", tmp / "profile-shot-1",
                   "p", "Exercise 4 (graded)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for png in shots.glob("*.png"):
        shutil.copy2(png, SCREENSHOTS / png.name)
    return doms, search, shots


def test_every_page_is_whole_offline_and_its_formulas_compile(site):
    root, _ = site
    pages = [root / "index.html"] + [root / f"{n}.html" for n in LESSONS + REFERENCE]
    assert len(LESSONS) >= 26 and all(page.is_file() for page in pages)
    problems = [f"{page.name}: {p}" for page in pages for p in static_problems(root, page)]
    assert not problems, "\n".join(problems)
    formulas = [(page.name, tex, display) for page in pages for tex, display in page_formulas(page.read_text())]
    assert len(formulas) > 5000, "the extraction found too few formulas"
    failures = render_failures(formulas)
    assert not failures, f"{len(failures)} formula(s) do not compile:\n" + "\n".join(failures[:20])


def test_sampled_pages_render_their_math_in_chromium_without_errors(site, browsed):
    root, _ = site
    doms, _, shots = browsed
    assert sorted(doms) == sorted(sample(root)) and len(doms) >= 3
    problems = [f"{page.name}: {p}" for page, dom in doms.items() for p in page_problems(root, page, dom)]
    assert not problems, "\n".join(problems)
    assert all(png.stat().st_size > 20_000 for png in shots.glob("*.png")), list(shots.glob("*.png"))


def test_every_formula_is_typeset_by_the_local_mathjax(site, browsed):
    root, _ = site
    doms, _, _ = browsed
    for name in LESSONS:
        static = (root / f"{name}.html").read_text()
        assert '<script defer="defer" src="_static/mathjax/tex-chtml.js' in static, name
        assert len(page_formulas(static)) > 5, f"{name}: too few formulas"
    for page, dom in doms.items():
        formulas = len(page_formulas(page.read_text()))
        typeset = dom.count("<mjx-container")
        assert typeset >= formulas, f"{page.name}: {typeset} of {formulas} formulas typeset"


def test_math_in_a_table_keeps_its_bars(site):
    """00's table holds |a_i - b_i| in math: a bare | would have ended its cell and cut the formula."""
    root, _ = site
    static = (root / "00_setup_and_tour.html").read_text()
    assert r"\max_i \vert a_i - b_i\vert" in static


def test_lessons_offer_the_student_version_and_the_labelled_solutions(site):
    root, _ = site
    for name in LESSONS:
        dom = (root / f"{name}.html").read_text()
        page = Page(dom)
        colab = config.colab_url(f"notebooks/{name}.ipynb")
        badge = [i for i, (t, a) in enumerate(page.tags) if t == "a" and a.get("href") == colab]
        assert badge and page.tags[badge[0] + 1][0] == "img", f"{name}: no Colab badge"
        assert not page.tags[badge[0] + 1][1]["src"].startswith("http"), f"{name}: the badge is not local"
        links = {re.sub(r"<[^>]+>", "", label).strip(): href for href, label in
                 re.findall(r'<a [^>]*href="(_downloads/[^"]+)"[^>]*>(.*?)</a>', dom, re.S)}
        student = links.get("Download the notebook (.ipynb)", "")
        solutions = links.get("Download with solutions (.ipynb)", "")
        assert student.endswith(f"/{name}.ipynb") and solutions.endswith(f"/{name}-solutions.ipynb"), links
        offered = json.loads((root / student).read_text())  # (nbformat.read would validate 37 notebooks: ~5 s)
        text = "\n".join("".join(c["source"]) for c in offered["cells"])
        assert CODE_BEGIN not in text and "raise NotImplementedError()" in text, f"{name}: not the student version"
        assert CODE_BEGIN in (root / solutions).read_text(), f"{name}: the solutions download has none"
        assert "_sources/" not in dom, f"{name}: the page offers its source (with the solutions)"


def test_contents_in_syllabus_order_and_search_shows_typeset_snippets(site, browsed):
    root, _ = site
    doms, search, _ = browsed
    home = Page(doms[root / "index.html"])
    linked = [a["href"] for a in home.all("a") if a.get("href", "").removesuffix(".html") in LESSONS]
    assert [h.removesuffix(".html") for h in dict.fromkeys(linked)] == LESSONS
    found = re.search(r'<ul[^>]*class="search"[^>]*>(.*?)</ul>', search, re.S)
    hits = {urlsplit(a["href"]).path for a in Page(found.group(1) if found else "").all("a")}
    assert hits & {f"{n}.html" for n in LESSONS}, "search for 'softmax' found no lesson"
    snippets = re.findall(r'<p class="context[^"]*"[^>]*>(.*?)</p>', search, re.S)
    assert snippets, "search shows no snippet"
    raw = [s for s in snippets if LEFTOVER_TEX.search(rendered_text(s))]
    assert not raw, f"{len(raw)} of {len(snippets)} snippets show raw TeX, e.g. {rendered_text(raw[0])[:200]}"
    assert any("<mjx-container" in s for s in snippets), "no snippet has a typeset formula"


def test_the_checks_catch_a_broken_page(site):
    """A page with a TeX error, TeX left as text, a marker, a narrow code column, a missing image and a
    broken link fails each check: as built (an undelimited math span too) and in Chromium."""
    root, tmp = site
    bad = root / "planted-bad.html"
    mathjax = re.search(r"<script>window.MathJax = .*?</script>", (root / "04_losses.html").read_text()).group(0)
    bad.write_text(f'<html><head>{mathjax}<script defer src="_static/mathjax/tex-chtml.js"></script></head><body>'
                   '<p><span class="math notranslate nohighlight">\\(\\undefinedmacro x\\)</span></p>'
                   '<p>where Q^{(h)}holds columns</p><img src="_images/no-such.png">'
                   f'<div class="cell"><div class="highlight" style="width: 300px"><pre>{HIDDEN_BEGIN}</pre></div></div>'
                   '<a href="no-such-page.html">x</a><a href="04_losses.html#fine">ok</a></body></html>')
    try:
        static = static_problems(root, bad)
        formulas = page_formulas(bad.read_text())
        bad.write_text(bad.read_text().replace("</body>", '<div class="math notranslate nohighlight">x^2</div></body>'))
        undelimited = static_problems(root, bad)
        problems = page_problems(root, bad, browse(root, [bad], tmp / "profile-bad")[bad])
    finally:
        bad.unlink()
    assert formulas == [("\\undefinedmacro x", False)]
    [failure] = render_failures([("planted-bad.html", *formulas[0])])
    assert failure.startswith("planted-bad.html: Undefined control sequence \\undefinedmacro"), failure
    assert any(p.startswith("TeX left in the text: '^{'") for p in static), static
    assert f"a marker on the page: {HIDDEN_BEGIN}" in static and "missing image: _images/no-such.png" in static
    assert "broken a href: no-such-page.html" in static and len(static) == 4, static
    assert undelimited == static + ["a math span MathJax would not read: 'x^2'"], undelimited
    assert any(p.startswith("MathJax error") for p in problems), problems
    assert any(p.startswith("TeX left in the text: '^{'") for p in problems), problems
    assert f"a marker on the page: {HIDDEN_BEGIN}" in problems
    assert f"1 code block(s) clip a 100-character line at {WIDTH} px" in problems
    assert "missing image: _images/no-such.png" in problems
    assert "broken a href: no-such-page.html" in problems and len(problems) == 6, problems


@pytest.fixture(scope="module")
def small_book(tmp_path_factory):
    """The book of one small generated notebook, executed: a figure, a 100-character printed line, an
    exercise with its solution collapsed and a hidden test."""
    _browser()
    tmp = tmp_path_factory.mktemp("small-book")
    (tmp / "notebooks").mkdir()
    nb = new_notebook(1, "figure", "Figure")
    nb.cells[3].source += "\nfrom aicourse import grade, assert_solved\nimport matplotlib.pyplot as plt"
    nb.cells += [
        nbformat.v4.new_code_cell("plt.plot([0, 1], [1, 0]); plt.show()\nprint('PASS ' + 'x' * 95)"),
        nbformat.v4.new_markdown_cell("**Exercise 1 (graded) · Double it.** Return $2x$."),
        nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                                  metadata={"aicourse": {"wrong": "    return x + 2"},
                                            "jupyter": {"source_hidden": True}}),
        nbformat.v4.new_code_cell("grade('1 · double', lambda: check('double', double(np.ones(2)), 2 * np.ones(2)))"
                                  "\n### BEGIN HIDDEN TESTS\nassert_solved('1 · double')\n### END HIDDEN TESTS"),
    ]
    for cell in nb.cells:
        cell.pop("id", None)
    nbformat.write(nb, tmp / "notebooks" / "01_figure.ipynb")
    here = Path.cwd()
    os.chdir(tmp)  # the runner and the book take the notebooks of the folder you stand in
    try:
        index = book.build(None, tmp / "site", tmp / "build", progress=False)
    finally:
        os.chdir(here)
    page = index.parent / "01_figure.html"
    return page, browse(index.parent, [page], tmp / "profile")[page], tmp


def test_an_executed_page_shows_its_figure_solution_toggle_and_full_lines(small_book):
    page, dom, tmp = small_book
    assert page_problems(page.parent, page, dom) == []
    shown = [a["src"] for a in Page(dom).all("img") if "colab-badge" not in a["src"]]
    assert shown and all((page.parent / src).is_file() for src in shown), "no figure shown"
    assert "tag_hide-input" in dom and "exercise 1 · double: solved (1 check passed)" in dom
    assert 'data-clipped="0"' in dom and "PASS " + "x" * 95 in dom
    screenshot(page, tmp / "solution.png", tmp / "profile-shot", ".tag_hide-input", "")
    assert (tmp / "solution.png").stat().st_size > 10_000


def test_unknown_notebook_and_missing_mathjax_are_one_sentence(tmp_path, capsys):
    assert main(["book", "99", "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aicourse: error: No notebook '99'") and err.count("\n") == 1
    assert not (tmp_path / "site").exists()
    with pytest.raises(book.BookError, match=r"^The book needs MathJax 3 from npm: run `npm ci --prefix .*`"):
        book.find_mathjax(tmp_path)
