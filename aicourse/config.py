"""Project-wide settings, kept in one place."""

from pathlib import Path

#: GitHub owner/name of the course repository, and the ref (a branch or, for a term, a tag) that
#: the Colab badges open and the Colab install cell installs. The one place to change them: then
#: `aicourse links` rewrites every badge and install cell (README's syllabus too) to agree.
REPO = "aicourse-dev/aicourse"
REF = "main"

ROOT = Path(__file__).resolve().parent.parent
# The repository's notebooks for an editable install; for a plain install (site-packages has none),
# the notebooks/ folder of the directory `aicourse` is run from.
NOTEBOOKS = ROOT / "notebooks" if (ROOT / "notebooks").is_dir() else Path.cwd() / "notebooks"
LESSONS = Path(__file__).resolve().parent / "lessons"


def colab_url(notebook_relpath: str) -> str:
    """URL that opens ``notebook_relpath`` (relative to the repo root) in Colab."""
    return f"https://colab.research.google.com/github/{REPO}/blob/{REF}/{notebook_relpath}"


def colab_badge(notebook_relpath: str) -> str:
    """Markdown for the Open-in-Colab badge of one notebook."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook_relpath)})")


#: The install line of the Colab cell (a no-op everywhere else).
COLAB_INSTALL = f'%pip install -q "aicourse @ git+https://github.com/{REPO}@{REF}"'
