"""Sphinx configuration of the course book. `aicourse book` copies this file into its build folder,
beside the executed notebooks, the index it writes and a local MathJax; nothing here reaches the network,
neither when the book is built nor when it is read."""

from aicourse import config

project = "aicourse"
author = "the aicourse authors"
html_title = "aicourse"

extensions = ["myst_nb", "sphinx.ext.githubpages"]  # githubpages: writes .nojekyll
root_doc = "index"
exclude_patterns = ["downloads", "_mathjax", "**.ipynb_checkpoints"]

# The notebooks were executed by the course's runner (aicourse.runner.run): render their outputs as they are.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no widget manager from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]  # $...$, $$...$$ and \begin{aligned} as in JupyterLab
# $$...$$ inside a paragraph (on its own line between two lines of text, as JupyterLab allows) is display math:
# without this the parser pairs its dollars as inline math and the rest of the paragraph turns into raw TeX.
myst_dmath_double_inline = True
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # a notebook may go from # to ###: fine on the page

# MathJax 3 (the major version JupyterLab 4 uses) from the site itself: _static/mathjax/.
mathjax_path = "mathjax/tex-chtml.js"
# An undefined macro is a MathJax error on the page (merror), not quiet red text: tests/test_book.py sees it.
mathjax3_config = {"tex": {"packages": {"[-]": ["noundefined"]}}}
html_static_path = ["_mathjax", "_static"]
html_css_files = ["book.css"]
html_js_files = [("book.js", {"defer": "defer"})]  # search snippets: formulas typeset, none cut in half

html_theme = "sphinx_book_theme"
# No copy of the page's source and no download button: the source is the notebook with its solutions.
# Each lesson's title offers its two downloads instead, labelled: the exercises to solve, and the solutions.
html_copy_source = False
html_theme_options = {
    "repository_url": f"https://github.com/{config.REPO}",
    "repository_branch": config.REF,
    "use_repository_button": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "navbar_persistent": [],  # the search field lives in the sidebar: no empty header bar above the page
}
html_show_sphinx = False


def setup(app):
    # MathJax on every page, the search page too: its snippets hold formulas (_static/book.js typesets them).
    app.set_html_assets_policy("always")
