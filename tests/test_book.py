"""The book (`aicourse book`): built for three notebooks, then read by headless Chromium, offline.

Each page is opened from the file system with every host name unresolvable, and checked after MathJax
has run: no MathJax error (``mjx-merror``, ``data-mjx-error``), every formula typeset, no image whose
file is missing from the site, no relative link or asset that does not resolve to a file in the site, and
nothing loaded from outside it. Lesson pages carry their Colab badge (a local image) and a download
link; figures are shown; the table of contents is in syllabus order; search finds a lesson. Screenshots
go to the test's tmp folder and to ``executed/book-screenshots/``. Without Chromium, the book extra or
npm's MathJax (``npm ci --prefix docs/book``) the test is skipped locally and fails in CI.
"""

import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from aicourse import book, config
from aicourse.cli import main

LESSONS = ["00_setup_and_tour", "04_losses", "16_attention"]
SCREENSHOTS = config.ROOT / "executed" / "book-screenshots"


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what}: .ci/run installs it")
    pytest.skip(what)


class Page(HTMLParser):
    """Tags and attributes of one HTML document, and its MathJax output."""

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


def page_problems(site: Path, page: Path, dom: str) -> list[str]:
    """What is wrong with one page as the browser left it (after MathJax)."""
    parsed, problems = Page(dom), []
    if "<mjx-merror" in dom or "data-mjx-error=" in dom:
        errors = re.findall(r'data-mjx-error="([^"]*)"', dom) or ["mjx-merror"]
        problems.append(f"MathJax error: {errors[0]}")
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


VIEWS = {"figure": ".cell_output img", "solution": ".tag_hide-input"}
# A screenshot of a page scrolled down comes out blank in headless Chromium; so a copy of the page drops
# what comes before the section that holds the element, and that section is shot from the top.
SECTION_FIRST = """<script>window.addEventListener("load", () => {
  const hit = document.querySelector(%r);
  for (let n = hit && hit.closest("section"); n && n.tagName !== "ARTICLE"; n = n.parentElement)
    while (n.previousElementSibling) n.previousElementSibling.remove();
});</script></body>"""


def section_screenshot(page: Path, selector: str, png: Path, profile: Path) -> None:
    """A screenshot of the section of ``page`` that holds the first element ``selector`` matches."""
    copy = page.with_name(f"{png.stem}-view.html")
    copy.write_text(page.read_text().replace("</body>", SECTION_FIRST % selector))
    try:
        chromium(["--window-size=1280,2000", f"--screenshot={png}"], copy.as_uri(), profile)
    finally:
        copy.unlink()


def chromium(args: list[str], url: str, profile: Path) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--mute-audio", f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--virtual-time-budget=10000", *args, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        _missing("needs headless Chromium (apt-get install chromium)")
    try:
        book._check_sphinx()
        book.find_mathjax()
    except book.BookError as exc:
        _missing(str(exc))
    tmp = tmp_path_factory.mktemp("book")
    start = time.perf_counter()
    index = book.build([n[:2] for n in LESSONS], tmp / "site", tmp / "build", progress=False)
    print(f"book of {len(LESSONS)} notebooks built in {time.perf_counter() - start:.0f} s")
    return index.parent, tmp


@pytest.fixture(scope="module")
def browsed(site):
    """Every page of the check (home, three lessons, search) as Chromium left it, and a screenshot of each."""
    root, tmp = site
    shots = tmp / "screenshots"
    shots.mkdir()
    pages = [root / "index.html"] + [root / f"{n}.html" for n in LESSONS]

    def visit(i_page):
        i, page = i_page
        dom = chromium(["--dump-dom"], page.as_uri(), tmp / f"profile-dom-{i}")
        chromium(["--window-size=1280,2000", f"--screenshot={shots / (page.stem + '.png')}"], page.as_uri(),
                 tmp / f"profile-shot-{i}")
        for view, selector in VIEWS.items():
            if page.stem in LESSONS and (page.stem == "04_losses" or view == "figure"):
                section_screenshot(page, selector, shots / f"{page.stem}-{view}.png", tmp / f"profile-{view}-{i}")
        return page, dom

    def search(_):
        url = (root / "search.html").as_uri() + "?q=softmax"
        return root / "search.html", chromium(["--dump-dom"], url, tmp / "profile-search")

    with ThreadPoolExecutor(3) as pool:
        visited = list(pool.map(visit, enumerate(pages))) + [search(None)]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for png in shots.glob("*.png"):
        shutil.copy2(png, SCREENSHOTS / png.name)
    return dict(visited), shots


def test_every_page_renders_offline_without_errors(site, browsed):
    root, _ = site
    doms, shots = browsed
    problems = [f"{page.name}: {p}" for page, dom in doms.items() for p in page_problems(root, page, dom)]
    assert not problems, "\n".join(problems)
    for page in doms:
        if page.name != "search.html":
            assert (shots / f"{page.stem}.png").stat().st_size > 20_000, f"no screenshot of {page.name}"
    views = sorted(shots.glob("*-figure.png")) + sorted(shots.glob("*-solution.png"))
    assert len(views) >= 3 and all(png.stat().st_size > 20_000 for png in views), views


def test_every_formula_is_typeset_by_the_local_mathjax(site, browsed):
    root, _ = site
    doms, _ = browsed
    for name in LESSONS:
        page = root / f"{name}.html"
        static = page.read_text()
        assert '<script defer="defer" src="_static/mathjax/tex-chtml.js' in static
        formulas = len(re.findall(r'<(?:span|div) class="math notranslate nohighlight"', static))
        typeset = doms[page].count("<mjx-container")
        assert formulas > 5 and typeset >= formulas, f"{name}: {typeset} of {formulas} formulas typeset"
        assert not re.search(r'class="math notranslate nohighlight">\\[(\[]', doms[page]), f"raw TeX in {name}"


def test_lessons_show_badge_download_and_figures(site, browsed):
    root, tmp = site
    doms, _ = browsed
    for name in LESSONS:
        page = Page(doms[root / f"{name}.html"])
        colab = config.colab_url(f"notebooks/{name}.ipynb")
        badge = [i for i, (t, a) in enumerate(page.tags) if t == "a" and a.get("href") == colab]
        assert badge and page.tags[badge[0] + 1][0] == "img", f"{name}: no Colab badge"
        assert not page.tags[badge[0] + 1][1]["src"].startswith("http"), f"{name}: the badge is not local"
        downloads = [a["href"] for a in page.all("a") if a.get("href", "").startswith("_downloads/")
                     and a["href"].endswith(f"/{name}.ipynb")]
        assert downloads and (root / downloads[0]).is_file(), f"{name}: no download link"
        offered = nbformat.read(root / downloads[0], as_version=4)
        assert not any(c.get("outputs") for c in offered.cells), "the download is the notebook as committed"
        executed = nbformat.read(tmp / "build" / "executed" / f"{name}.ipynb", as_version=4)
        figures = sum("image/png" in o.get("data", {}) for c in executed.cells for o in c.get("outputs", []))
        shown = [a["src"] for a in page.all("img") if "colab-badge" not in a["src"]]
        assert len(shown) >= figures, f"{name}: {len(shown)} images shown, {figures} figures in the notebook"
        if name != "00_setup_and_tour":
            assert figures > 0, f"{name} has no figure to show"


def test_contents_in_syllabus_order_and_search_works(site, browsed):
    root, _ = site
    doms, _ = browsed
    home = Page(doms[root / "index.html"])
    linked = [a["href"] for a in home.all("a") if a.get("href", "").removesuffix(".html") in LESSONS]
    toc = list(dict.fromkeys(linked))
    assert [h.removesuffix(".html") for h in toc] == LESSONS, toc
    found = re.search(r'<ul[^>]*class="search"[^>]*>(.*?)</ul>', doms[root / "search.html"], re.S)
    hits = {urlsplit(a["href"]).path for a in Page(found.group(1) if found else "").all("a")}
    assert hits & {f"{n}.html" for n in LESSONS}, "search for 'softmax' found no lesson"


def test_the_checks_catch_a_broken_page(site):
    """A page with a TeX error, a missing image and a broken link fails all three checks."""
    root, tmp = site
    bad = root / "planted-bad.html"
    config = re.search(r"<script>window.MathJax = .*?</script>", (root / "04_losses.html").read_text()).group(0)
    bad.write_text(f'<html><head>{config}<script defer src="_static/mathjax/tex-chtml.js"></script></head><body>'
                   '<p>\\(\\undefinedmacro x\\)</p><img src="_images/no-such-figure.png">'
                   '<a href="no-such-page.html">x</a><a href="04_losses.html#fine">ok</a></body></html>')
    try:
        dom = chromium(["--dump-dom"], bad.as_uri(), tmp / "profile-bad")
        problems = page_problems(root, bad, dom)
    finally:
        bad.unlink()
    assert any(p.startswith("MathJax error") for p in problems), problems
    assert "missing image: _images/no-such-figure.png" in problems
    assert "broken a href: no-such-page.html" in problems and len(problems) == 3, problems


def test_unknown_notebook_and_missing_mathjax_are_one_sentence(tmp_path, capsys):
    assert main(["book", "99", "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aicourse: error: No notebook '99'") and err.count("\n") == 1
    assert not (tmp_path / "site").exists()
    with pytest.raises(book.BookError, match=r"^The book needs MathJax 3 from npm: run `npm ci --prefix .*`"):
        book.find_mathjax(tmp_path)
