"""Project-wide settings, kept in one place."""

from pathlib import Path

#: GitHub owner/name of the course repository, and the ref (a branch or, for a term, a tag) that
#: the Colab badges open and the Colab install cell installs. The one place to change them: then
#: `aicourse links` rewrites every badge and install cell (README's syllabus too) to agree.
REPO = "aicourse-dev/aicourse"
REF = "main"
#: The REPO this file ships with. No such repository exists on GitHub: until REPO names a real copy,
#: `aicourse check` says so (and every Colab badge leads to "not found").
PLACEHOLDER_REPO = "aicourse-dev/aicourse"

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


def colab_install() -> str:
    """The install line of the Colab cell (a no-op everywhere else)."""
    return f'%pip install -q "aicourse @ git+https://github.com/{REPO}@{REF}"'


#: The install line of the Colab cell for REPO and REF as this file sets them (see :func:`use`).
COLAB_INSTALL = colab_install()


def use(repo: str | None = None, ref: str | None = None) -> None:
    """Point this process's badges and install line at ``repo`` and ``ref`` (``aicourse links --repo --ref``)."""
    global REPO, REF, COLAB_INSTALL
    REPO, REF = repo or REPO, ref or REF
    COLAB_INSTALL = colab_install()


def placeholder_note() -> str | None:
    """One line while REPO is still the placeholder; None once it names a real repository."""
    if REPO != PLACEHOLDER_REPO:
        return None
    return (f"note: the Colab badges and install cells point at {REPO}, a placeholder that does not exist: "
            "set REPO and REF in aicourse/config.py and run `aicourse links` "
            "(or `aicourse links --repo OWNER/NAME --ref main`)")
