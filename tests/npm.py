"""Node packages the tests need (MathJax for the formula test and the book), installed on first use.

README's test command is the whole set-up: when Node's npm is on the machine (a system package README
names) and a folder's ``node_modules`` is missing, the first test that needs it runs ``npm ci`` there,
under a lock so that two test workers never install into one folder at once. Without npm the test skips
with one sentence.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path


def ensure_node_modules(folder: Path, package: str) -> str | None:
    """Install ``folder``'s locked npm packages if ``package`` is missing; None when ready, else why not."""
    if (folder / "node_modules" / package).is_dir():
        return None
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return "needs Node and npm (system packages: see README); the test skips without them"
    with open(folder / ".npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "node_modules" / package).is_dir():
            done = subprocess.run([npm, "ci", "--prefix", str(folder), "--no-audit", "--no-fund",
                                   "--loglevel=error"], capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                return f"`npm ci --prefix {folder}` failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return None
