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
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # a notebook may go from # to ###: fine on the page

# MathJax 3 (the major version JupyterLab 4 uses) from the site itself: _static/mathjax/.
mathjax_path = "mathjax/tex-chtml.js"
# An undefined macro is a MathJax error on the page (merror), not quiet red text: tests/test_book.py sees it.
mathjax3_config = {"tex": {"packages": {"[-]": ["noundefined"]}}}
html_static_path = ["_mathjax", "_static"]
html_css_files = ["book.css"]

html_theme = "sphinx_book_theme"
html_copy_source = True
html_sourcelink_suffix = ""  # the theme's download button then offers the executed .ipynb itself
html_theme_options = {
    "repository_url": f"https://github.com/{config.REPO}",
    "repository_branch": config.REF,
    "use_repository_button": True,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "navbar_persistent": [],  # the search field lives in the sidebar: no empty header bar above the page
}
html_show_sphinx = False
