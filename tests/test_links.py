"""Colab links that lead somewhere: README's "publish your own copy" path, proven on a local bare repository.

A copy of the checkout runs `aicourse links --repo me/course --ref v1`; every badge and install cell (and
README's) then points at me/course@v1, and `aicourse/config.py` says so. The copy is committed, tagged v1 and
pushed to a bare repository; the install line of the rewritten Colab cell is then run with pip, GitHub's
address mapped to the bare repository (git's ``url.<base>.insteadOf``): the package installs from that
tag (``--no-deps`` into a folder). While REPO is the placeholder, `aicourse check` says so in one line.
"""

import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from aicourse import config
from aicourse.cli import main
from aicourse.notebooks import BADGE_URL_RE, INSTALL_RE, set_repo


def test_check_names_the_placeholder_in_one_line(capsys, monkeypatch):
    main(["check"])
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    if config.REPO == config.PLACEHOLDER_REPO:
        assert len(notes) == 1 and "aicourse/config.py" in notes[0] and "aicourse links" in notes[0], notes
    monkeypatch.setattr(config, "REPO", "me/course")
    assert config.placeholder_note() is None


def test_bad_repo_or_ref_is_one_sentence(tmp_path):
    with pytest.raises(ValueError, match=r"is not a GitHub owner/name"):
        set_repo("no-slash", None, tmp_path / "config.py")
    with pytest.raises(ValueError, match=r"is not a branch or tag name"):
        set_repo(None, "v1 beta", tmp_path / "config.py")


def _git(*args, cwd, env=None):
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org", **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_publish_your_own_copy_on_a_bare_repository(tmp_path):
    copy = tmp_path / "copy"
    tracked = _git("ls-files", "-z", cwd=config.ROOT).split("\0")
    for name in filter(None, tracked):
        source = config.ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    # `python -m aicourse` in the copy imports the copy's package (the current folder comes first on sys.path)
    done = subprocess.run([sys.executable, "-m", "aicourse", "links", "--repo", "me/course", "--ref", "v1"],
                          cwd=copy, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].endswith("now point at me/course@v1"), done.stdout
    assert 'REPO = "me/course"' in (copy / "aicourse" / "config.py").read_text()
    assert 'REF = "v1"' in (copy / "aicourse" / "config.py").read_text()
    notebooks = sorted((copy / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    installs = set()
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        head = nb.cells[0].source + nb.cells[1].source
        urls = [m.group(0) for m in BADGE_URL_RE.finditer(head)]
        assert urls == [f"https://colab.research.google.com/github/me/course/blob/v1/notebooks/{path.name}"], urls
        found = INSTALL_RE.findall(nb.cells[1].source)
        assert found and all(line == found[0] for line in found), f"{path.name}: {found}"
        installs.add(found[0])
    assert installs == {'%pip install -q "aicourse @ git+https://github.com/me/course@v1"'}
    readme = (copy / "README.md").read_text()
    assert "aicourse-dev/aicourse" not in readme and readme.count("github/me/course/blob/v1/notebooks/") >= len(
        notebooks)
    check = subprocess.run([sys.executable, "-m", "aicourse", "check"], cwd=copy, capture_output=True, text=True,
                           timeout=300)
    links = [line for line in check.stdout.splitlines() if "badge" in line or "install cell" in line
             or line.startswith("note:")]
    assert not links, links

    _git("init", "-q", "-b", "main", cwd=copy)
    _git("add", "-A", cwd=copy)
    _git("commit", "-q", "-m", "my copy of the course, term v1", cwd=copy)
    _git("tag", "v1", cwd=copy)
    github = tmp_path / "github"
    _git("clone", "-q", "--bare", str(copy), str(github / "me" / "course"), cwd=tmp_path)

    requirement = re.search(r'"(aicourse @ [^"]+)"', next(iter(installs))).group(1)
    target = tmp_path / "installed"
    env = {**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.file://{github}/.insteadOf",
           "GIT_CONFIG_VALUE_0": "https://github.com/", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    build = ["--no-build-isolation"] if _has_setuptools() else []
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *build, "--target",
                           str(target), requirement], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    installed = (target / "aicourse" / "config.py").read_text()
    assert 'REPO = "me/course"' in installed and 'REF = "v1"' in installed
    assert (target / "aicourse" / "lessons").is_dir() and (target / "aicourse" / "cli.py").is_file()


def _has_setuptools() -> bool:
    import importlib.util

    return importlib.util.find_spec("setuptools") is not None
