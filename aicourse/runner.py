"""Run notebooks headless with papermill: `aicourse run [NOTEBOOK ...] [-p NAME VALUE ...]`."""

from __future__ import annotations

import datetime
import logging
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import papermill

from .checks import report_counts
from .device import ParameterError, device_name, resolve_device
from . import config
from .notebooks import all_notebooks, find_notebook

TRUE, FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


@dataclass
class RunResult:
    notebook: str
    status: str
    seconds: float
    device: str
    output: Path
    checks: dict = field(default_factory=dict)


def check_stats(executed: Path) -> dict:
    """What the check and group lines printed in an executed notebook add up to.

    Counts every individual check (a group line says how many it stands for) and
    mistakes caught, and the largest relative error per setting: float64 and
    float32 comparisons with torch (on any device), and finite differences.
    Comparisons of two NumPy results ("numpy") are counted but set no maximum.
    """
    stats = {"passed": 0, "caught": 0, "float64": 0.0, "float32": 0.0, "finite diff": 0.0, "cells s": 0.0}
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        stats["cells s"] += cell.get("metadata", {}).get("papermill", {}).get("duration") or 0.0
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            for line in out.get("text", "").splitlines() if out.get("output_type") == "stream" else []:
                passed, caught, worst = report_counts(line)
                stats["passed"] += passed
                stats["caught"] += caught
                for setting, err in worst.items():
                    key = ("finite diff" if setting == "fd" else "float64" if setting.endswith("/f64")
                           else "float32" if setting.endswith("/f32") else None)
                    if key:
                        stats[key] = max(stats[key], err)
    return stats


def _coerce(raw: str, type_name: str, name: str, notebook: str):
    """A command-line string as the type the notebook's parameter is annotated with."""
    try:
        if type_name == "bool":
            low = raw.lower()
            if low not in TRUE | FALSE:
                raise ValueError
            return low in TRUE
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise ParameterError(f"Parameter {name!r} of {notebook} is {type_name}; {raw!r} is not one.") from None
    return raw


def notebooks_folder() -> Path:
    """The notebooks a run means: the current directory's ``notebooks/`` when there is one (the
    checkout you stand in), else the folder the package was installed from."""
    here = Path.cwd() / "notebooks"
    return here.resolve() if here.is_dir() and all_notebooks(here) else config.NOTEBOOKS


def plan(names: list[str] | None, params: dict[str, str], folder: Path | None = None,
         taken: dict[str, list[str]] | None = None) -> list[tuple[Path, dict]]:
    """Resolve notebooks and type every parameter before anything runs (errors are one sentence).

    A parameter goes to every selected notebook that declares it; naming one that no selected
    notebook declares is an error. ``taken`` (if given) receives, per parameter, the notebooks that took it.
    """
    folder = folder or notebooks_folder()
    paths = [find_notebook(n, folder) for n in names] if names else all_notebooks(folder)
    if not paths:
        raise FileNotFoundError(f"No notebooks to run in {folder}.")
    declared = {path: papermill.inspect_notebook(path) for path in paths}
    for name in params:
        if not any(name in d for d in declared.values()):
            which = paths[0].name if len(paths) == 1 else f"any of the {len(paths)} selected notebooks"
            known = sorted({p for d in declared.values() for p in d})
            raise ParameterError(f"{which} has no parameter {name!r} (parameters: {', '.join(known)}).")
    jobs = []
    for path in paths:
        typed = {}
        for name, raw in params.items():
            if name in declared[path]:
                typed[name] = _coerce(raw, declared[path][name]["inferred_type_name"], name, path.name)
                if taken is not None:
                    taken.setdefault(name, []).append(path.stem)
        jobs.append((path, typed))
    return jobs


def prepare_out(out: Path | str) -> Path:
    """Create the output folder and make sure it can be written, or say why in one sentence."""
    asked, out = str(out), Path(out).absolute()  # absolute: papermill changes the working directory
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".aicourse-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"Cannot write the executed notebooks to {asked!r}: {reason.lower()} "
                          "(choose another folder with --out).") from None
    return out


class OutputError(ValueError):
    """The output folder cannot be created or written."""


class Interrupted(Exception):
    """The run was stopped with Ctrl-C; ``results`` holds what the summary says."""

    def __init__(self, results: list[RunResult]):
        super().__init__("interrupted")
        self.results = results


def _kernel_manager_class(started: list):
    """nbclient's kernel manager over local sockets (IPC) where the platform has them: no
    unencrypted-TCP warning, nothing listening on the network; each one made is put in ``started``."""
    from jupyter_client.manager import AsyncKernelManager

    class CourseKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            if not sys.platform.startswith("win"):
                kwargs.setdefault("transport", "ipc")
                kwargs.setdefault("ip", str(Path(tempfile.mkdtemp(prefix="aicourse-kernel-")) / "kernel"))
            super().__init__(**kwargs)
            started.append(self)

    return CourseKernelManager


def _execute(path: Path, target: Path, typed: dict, desc: str | None) -> str:
    """Run one notebook; return its status. Ctrl-C kills the kernel and propagates.

    papermill runs in a worker thread: the main thread only waits, so Ctrl-C reaches it at once
    (a signal cannot interrupt the socket poll papermill sits in while a cell runs).
    """
    started: list = []
    outcome: dict = {}

    def work() -> None:
        try:
            papermill.execute_notebook(str(path), str(target), parameters=typed, kernel_name="python3",
                                       kernel_manager_class=_kernel_manager_class(started), cwd=str(path.parent),
                                       progress_bar={"desc": desc} if desc else False)
            outcome["status"] = "ok"
        except papermill.PapermillExecutionError as exc:
            outcome["status"] = f"FAILED: {exc.ename}: {exc.evalue}".splitlines()[0][:120]
        except BaseException as exc:  # the kernel died or timed out: record it and go on with the next one
            outcome["status"] = f"FAILED: {type(exc).__name__}: {exc}".splitlines()[0][:120]

    worker = threading.Thread(target=work, name=f"aicourse-{path.stem}", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        for km in started:  # papermill sees the kernel die, saves what ran and cleans up
            process = getattr(getattr(km, "provisioner", None), "process", None)
            if process is not None and process.poll() is None:
                process.kill()
        worker.join(15)
        raise
    finally:
        for km in started:
            if km.transport == "ipc":
                shutil.rmtree(Path(km.ip).parent, ignore_errors=True)
    return outcome.get("status", "FAILED: the notebook did not finish")


def _mark_interrupted(target: Path) -> None:
    """Put a first cell into a half-run executed copy that says it is incomplete."""
    try:
        nb = nbformat.read(target, as_version=4)
    except Exception:
        return
    ran = [i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("papermill", {}).get("status")
           in ("running", "completed", "failed")]
    where = f" during cell {ran[-1]}" if ran else ""
    note = nbformat.v4.new_markdown_cell(
        f"**INTERRUPTED**: this run was stopped with Ctrl-C{where}; the cells after it did not run "
        "and this copy is incomplete.")
    if nb.nbformat_minor < 5:
        note.pop("id", None)
    nb.cells.insert(0, note)
    nb.metadata.setdefault("aicourse", {})["status"] = "INTERRUPTED"
    nbformat.write(nb, target)


def run(names: list[str] | None = None, params: dict[str, str] | None = None, out: Path | str = "executed",
        progress: bool = True, folder: Path | None = None) -> list[RunResult]:
    """Execute notebooks in order; keep every executed copy (failed ones too); write summary.md.

    Ctrl-C stops the running kernel, marks that notebook's copy INTERRUPTED, writes the summary
    (the rest "not run") and raises :class:`Interrupted`.
    """
    params = dict(params or {})
    if "device" in params:
        resolve_device(params["device"])  # an unavailable device fails here, before anything runs
    for name, value in params.items():  # a folder (log_dir, mnist_dir) is taken from where you run the command,
        if name.endswith("_dir") and value and not value.startswith("~") and not Path(value).is_absolute():
            params[name] = str(Path(value).resolve())  # not from the notebooks' folder the kernel runs in
    folder = folder or notebooks_folder()
    taken: dict[str, list[str]] = {}
    jobs = plan(names, params, folder, taken)
    out = prepare_out(out)
    for name, stems in taken.items():
        if len(stems) < len(jobs):
            print(f"-p {name} applies to {len(stems)} of {len(jobs)} notebooks: {', '.join(stems)}")
    results: list[RunResult] = []
    context = RunContext(folder, params, [str(resolve_device(t.get("device", "auto"))) for _, t in jobs])
    for i, (path, typed) in enumerate(jobs, 1):
        target = out / path.name
        dev = resolve_device(typed.get("device", "auto"))
        label = f"{dev} ({device_name(dev)})"
        start = time.perf_counter()
        try:
            status = _execute(path, target, typed, f"[{i}/{len(jobs)}] {path.stem}" if progress else None)
        except KeyboardInterrupt:
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # no "Task exception was never retrieved"
            if target.exists():
                _mark_interrupted(target)
            results.append(RunResult(path.stem, "INTERRUPTED", time.perf_counter() - start, label, target,
                                     check_stats(target) if target.exists() else {}))
            results += [RunResult(p.stem, "not run", 0.0, "-", out / p.name) for p, _ in jobs[i:]]
            _write_summary(results, out, context)
            raise Interrupted(results) from None
        seconds = time.perf_counter() - start
        stats = check_stats(target) if target.exists() else {}
        results.append(RunResult(path.stem, status, seconds, label, target, stats))
    print(_write_summary(results, out, context))
    return results


@dataclass
class RunContext:
    """What a summary records besides the rows: which folder ran, with what, where."""
    folder: Path
    params: dict
    devices: list

    def header(self) -> str:
        from .device import env_summary

        params = " ".join(f"-p {k} {v}" for k, v in self.params.items()) or "defaults"
        dev = sorted(set(self.devices))[0] if self.devices else "cpu"
        env = env_summary(dev).rsplit(" | tf32", 1)[0]
        return (f"Notebooks: `{self.folder}`  \nParameters: {params}  \n"
                f"Environment: {env}  \nRun at: {datetime.datetime.now().isoformat(timespec='seconds')}")


def _write_summary(results: list[RunResult], out: Path, context: RunContext) -> str:
    table = context.header() + "\n\n" + summary_table(results)
    (out / "summary.md").write_text(table + "\n")
    return table


def _exercises(r: RunResult) -> tuple[int, int] | None:
    """(solved, graded) in a run's executed copy, or None when it has no graded exercise (or no copy)."""
    from .exercises import grade_counts

    try:
        solved, graded = grade_counts(nbformat.read(r.output, as_version=4)) if r.output.exists() else (0, 0)
    except Exception:  # an unreadable copy: its status says why
        return None
    return (solved, graded) if graded else None


def summary_table(results: list[RunResult]) -> str:
    """Markdown: one row per notebook with its time (in all; kernel start and papermill's set-up apart
    from the cells' own run time), its checks and the largest error in each setting; when a notebook has
    graded exercises (a handout a learner works in), how many of them its graders said solved."""
    exercises = [_exercises(r) for r in results]
    with_exercises = any(exercises)
    rows = ["| notebook | status | seconds | start s | cells s | device | checks passed | mistakes caught | "
            "max rel float64 | max rel float32 | max rel finite diff |" + (" exercises |" if with_exercises else ""),
            "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|" + ("---:|" if with_exercises else "")]
    for r, ex in zip(results, exercises):
        c = r.checks
        errs = " | ".join(f"{c[k]:.1e}" if c.get(k) else "-" for k in ("float64", "float32", "finite diff"))
        status = r.status.replace("|", "/")
        if r.status not in ("ok", "not run") and r.output.exists():
            status += f" (executed copy: `{r.output}`)"
        cells = c.get("cells s", 0.0)
        start = f"{r.seconds - cells:.1f} | {cells:.1f}" if cells else "- | -"
        rows.append(f"| {r.notebook} | {status} | {r.seconds:.1f} | {start} | {r.device} | "
                    f"{c.get('passed', 0)} | {c.get('caught', 0)} | {errs} |"
                    + ((f" {ex[0]}/{ex[1]} solved |" if ex else " - |") if with_exercises else ""))
    total = sum(r.seconds for r in results)
    failed = sum(r.status not in ("ok", "not run") for r in results)
    not_run = sum(r.status == "not run" for r in results)
    passed = sum(r.checks.get("passed", 0) for r in results)
    solved = ""
    if with_exercises:
        done, graded = (sum(ex[k] for ex in exercises if ex) for k in (0, 1))
        solved = f" {done} of {graded} graded exercises solved (`aicourse progress` lists them)."
    rows.append(f"\n{len(results) - failed - not_run} of {len(results)} notebooks passed"
                + (f" ({not_run} not run)" if not_run else "") + f", {total:.1f} s in all; {passed} checks passed."
                + solved)
    return "\n".join(rows)
