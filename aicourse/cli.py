"""Command line: `aicourse run|export|check|new|handout|progress|links|env|bench|book` (also `python -m aicourse ...`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from . import config


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="aicourse", description="Run, check and export the course notebooks.")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute notebooks headless with papermill and print a summary")
    r.add_argument("notebooks", nargs="*", help="numbers or names (e.g. 01 10_convolution); default: all, in order")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="set a notebook parameter (repeatable)")
    r.add_argument("--device", help="shorthand for -p device D (auto, cpu, cuda, mps)")
    r.add_argument("--out", default="executed", help="folder for executed notebooks and summary.md (default: executed)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    e = sub.add_parser("export", help="write the notebooks' '#| export' cells to aicourse/lessons")
    e.add_argument("--check", action="store_true", help="write nothing; exit 1 if package and notebooks drifted")
    sub.add_parser("check", help="check every notebook against the course conventions")
    n = sub.add_parser("new", help="create a notebook that follows the conventions")
    n.add_argument("number", type=int)
    n.add_argument("name", help="lowercase_words, e.g. batch_norm")
    n.add_argument("title")
    h = sub.add_parser("handout", help="write the student release (solutions as stubs) or, with --solutions, "
                                       "the executed instructor release")
    h.add_argument("notebooks", nargs="*", help="numbers or names; default: all")
    h.add_argument("--out", required=True, help="folder to write the release to")
    h.add_argument("--solutions", action="store_true", help="the instructor release: solutions in, executed")
    h.add_argument("--nbgrader", action="store_true",
                   help="an nbgrader course folder (source/<notebook>/ and nbgrader_config.py) instead")
    h.add_argument("--force", action="store_true",
                   help="replace notebooks already in OUT, after moving them to OUT/backup-<date>-<time>/ "
                        "(without it they are kept: they may hold your work)")
    g = sub.add_parser("progress", help="every exercise of a handout folder: solved, wrong (with the failing "
                                        "check), not attempted, or discussion (reruns only changed notebooks)")
    g.add_argument("folder", nargs="?", default="my-work", help="the handout folder (default: my-work)")
    li = sub.add_parser("links", help="rewrite every Colab badge and install cell from aicourse/config.py (REPO, REF)")
    li.add_argument("--repo", help="GitHub owner/name of your copy: written to aicourse/config.py's REPO first")
    li.add_argument("--ref", help="branch or tag (e.g. a term's tag): written to aicourse/config.py's REF first")
    sub.add_parser("env", help="print the one-line environment summary")
    b = sub.add_parser("bench", help="time the course's NumPy operations against torch on the CPU and the device")
    b.add_argument("ops", nargs="*", help="op names or families (e.g. linear-fwd conv2d lstm); default: all")
    b.add_argument("--device", default="auto", help="device of the third column (auto, cpu, cuda, mps; default: auto)")
    b.add_argument("--threads", type=int, help="CPU threads for NumPy and torch alike (default: torch's)")
    b.add_argument("--out", default="executed/bench", help="folder for bench.md and bench.png")
    b.add_argument("--quick", action="store_true", help="tiny sizes, short runs: proves it works, measures nothing")
    k = sub.add_parser("book", help="build the course as a static HTML site that needs no network "
                                    "(executes the notebooks first)")
    k.add_argument("notebooks", nargs="*", help="numbers or names; default: all, in order")
    k.add_argument("--out", default="_build/book", help="folder for the site (default: _build/book)")
    k.add_argument("--build", help="folder for the executed notebooks and Sphinx sources (default: OUT-build)")
    k.add_argument("--no-progress", action="store_true", help="no progress bars")
    k.add_argument("--no-execute", action="store_true",
                   help="the notebooks as committed, without outputs (seconds instead of minutes)")
    return ap


def _ctrl_c_stops() -> None:
    """Make Ctrl-C reach the runner even where the parent ignores or blocks SIGINT (a shell's background job,
    a test runner's worker): both are inherited by a child process, and Python keeps an inherited SIG_IGN."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (FileNotFoundError, ValueError) as exc:  # ParameterError is a ValueError
        print(f"aicourse: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command == "run":
        from .runner import Interrupted, run
        _ctrl_c_stops()
        params = dict(args.parameter)
        if args.device:
            params["device"] = args.device
        try:
            results = run(args.notebooks or None, params, args.out, progress=not args.no_progress)
        except Interrupted as stop:
            stopped = next(r for r in stop.results if r.status == "INTERRUPTED")
            copy = (f"its partial copy, marked INTERRUPTED, is {stopped.output}" if stopped.output.exists()
                    else "it left no executed copy")
            print(f"\naicourse: interrupted during {stopped.notebook}; {copy}; the summary is "
                  f"{stopped.output.parent / 'summary.md'}.", file=sys.stderr)
            return 130
        return 0 if all(r.status == "ok" for r in results) else 1
    if args.command == "export":
        from .notebooks import export
        drift = export(check=args.check)
        for line in drift:
            print(("drift: " if args.check else "wrote: ") + line)
        return 1 if (args.check and drift) else 0
    if args.command == "check":
        from .notebooks import all_notebooks, problems
        bad = [(nb.name, p) for nb in all_notebooks() for p in problems(nb)]
        for name, p in bad:
            print(f"{name}: {p}")
        if config.placeholder_note():
            print(config.placeholder_note())
        return 1 if bad else 0
    if args.command == "new":
        from .notebooks import NAME_RE, new_notebook
        target = config.NOTEBOOKS / f"{args.number:02d}_{args.name}.ipynb"
        if not NAME_RE.match(target.name):
            raise ValueError(f"{target.name} is not NN_lowercase_words.ipynb")
        if target.exists():
            raise ValueError(f"{target} exists already")
        nbformat.write(new_notebook(args.number, args.name, args.title), target)
        print(f"created {target.relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target}")
        return 0
    if args.command == "handout":
        from .exercises import handout
        from .runner import Interrupted
        if args.solutions and args.nbgrader:
            raise ValueError("--solutions and --nbgrader are two different releases: choose one")
        try:
            release = handout(args.notebooks or None, args.out, solutions=args.solutions, nbgrader=args.nbgrader,
                              force=args.force)
        except Interrupted:
            print("\naicourse: interrupted; the summary of what ran is in the output folder.", file=sys.stderr)
            return 130
        if release.backup is not None:
            moved = sum(1 for p in release.backup.rglob("*") if p.is_file())
            print(f"moved {moved} existing file(s) to {Path(args.out) / release.backup.name} before writing new ones")
        if release.kept:
            names = ", ".join(p.name for p in release.kept[:4]) + (", ..." if len(release.kept) > 4 else "")
            print(f"kept {len(release.kept)} file(s) already in {args.out}, which may hold your work ({names}); "
                  "--force backs them up and writes new ones")
        if args.solutions:
            return 0 if all(r.status == "ok" for r in release.results) else 1
        kind = "nbgrader source" if args.nbgrader else "student release (solutions replaced by stubs, no outputs)"
        notebooks = [p for p in release.written if p.suffix == ".ipynb"]
        if notebooks or not release.kept:
            print(f"wrote {len(notebooks)} notebook(s), {kind}, to {args.out}")
        if args.nbgrader and notebooks:
            print(f"next: cd {args.out} && nbgrader generate_assignment <notebook name> (see docs/teaching.md)")
        return 0
    if args.command == "progress":
        from .exercises import progress, progress_table
        _ctrl_c_stops()
        try:
            result = progress(args.folder)
        except KeyboardInterrupt:
            print("\naicourse: interrupted; the notebooks graded so far are remembered for the next run.",
                  file=sys.stderr)
            return 130
        print()
        print(progress_table(result))
        return 0
    if args.command == "links":
        from .notebooks import set_repo, sync_links
        changed = set_repo(args.repo, args.ref) if (args.repo or args.ref) else []
        changed += sync_links()
        for path in changed:
            print(f"rewrote: {path}")
        print(f"{len(changed)} file(s) now point at {config.REPO}@{config.REF}")
        return 0
    if args.command == "bench":
        from .bench import run as bench
        bench(args.ops, args.device, args.threads, args.out, quick=args.quick)
        print((Path(args.out) / "bench.md").read_text() + f"\nwrote {args.out}/bench.md and {args.out}/bench.png")
        return 0
    if args.command == "book":
        from .book import build
        from .runner import Interrupted
        try:
            build(args.notebooks or None, args.out, args.build, progress=not args.no_progress,
                  execute=not args.no_execute)
        except Interrupted:
            print("\naicourse: interrupted; no book was built.", file=sys.stderr)
            return 130
        return 0
    if args.command == "env":
        from .device import env_summary, resolve_device
        print(env_summary(resolve_device("auto")))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
