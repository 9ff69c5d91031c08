"""Run notebooks headless with papermill: `aicourse run [NOTEBOOK ...] [-p NAME VALUE ...]`."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import papermill

from .checks import report_counts
from .device import ParameterError, device_name, resolve_device
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
    stats = {"passed": 0, "caught": 0, "float64": 0.0, "float32": 0.0, "finite diff": 0.0}
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
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


def plan(names: list[str] | None, params: dict[str, str]) -> list[tuple[Path, dict]]:
    """Resolve notebooks and type every parameter before anything runs (errors are one sentence)."""
    paths = [find_notebook(n) for n in names] if names else all_notebooks()
    if not paths:
        raise FileNotFoundError("No notebooks to run.")
    jobs = []
    for path in paths:
        declared = papermill.inspect_notebook(path)
        typed = {}
        for name, raw in params.items():
            if name not in declared:
                raise ParameterError(f"{path.name} has no parameter {name!r} (it has: {', '.join(declared)}).")
            typed[name] = _coerce(raw, declared[name]["inferred_type_name"], name, path.name)
        jobs.append((path, typed))
    return jobs


def run(names: list[str] | None = None, params: dict[str, str] | None = None, out: Path | str = "executed",
        progress: bool = True) -> list[RunResult]:
    """Execute notebooks in order; keep every executed copy (failed ones too); write summary.md."""
    params = dict(params or {})
    if "device" in params:
        resolve_device(params["device"])  # an unavailable device fails here, before anything runs
    jobs = plan(names, params)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for i, (path, typed) in enumerate(jobs, 1):
        target = out / path.name
        dev = resolve_device(typed.get("device", "auto"))
        start = time.perf_counter()
        try:
            papermill.execute_notebook(str(path), str(target), parameters=typed, kernel_name="python3",
                                       cwd=str(path.parent), progress_bar={"desc": f"[{i}/{len(jobs)}] {path.stem}"}
                                       if progress else False)
            status = "ok"
        except papermill.PapermillExecutionError as exc:
            status = f"FAILED: {exc.ename}: {exc.evalue}".splitlines()[0][:120]
        except Exception as exc:  # the kernel died or timed out: record it and go on with the next one
            status = f"FAILED: {type(exc).__name__}: {exc}".splitlines()[0][:120]
        seconds = time.perf_counter() - start
        stats = check_stats(target) if target.exists() else {}
        results.append(RunResult(path.stem, status, seconds, f"{dev} ({device_name(dev)})", target, stats))
    table = summary_table(results)
    (out / "summary.md").write_text(table + "\n")
    print(table)
    return results


def summary_table(results: list[RunResult]) -> str:
    """Markdown: one row per notebook with its checks and the largest error in each setting."""
    rows = ["| notebook | status | seconds | device | checks passed | mistakes caught | "
            "max rel float64 | max rel float32 | max rel finite diff |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        c = r.checks
        errs = " | ".join(f"{c[k]:.1e}" if c.get(k) else "-" for k in ("float64", "float32", "finite diff"))
        rows.append(f"| {r.notebook} | {r.status.replace('|', '/')} | {r.seconds:.1f} | {r.device} | "
                    f"{c.get('passed', 0)} | {c.get('caught', 0)} | {errs} |")
    total = sum(r.seconds for r in results)
    failed = sum(r.status != "ok" for r in results)
    passed = sum(r.checks.get("passed", 0) for r in results)
    rows.append(f"\n{len(results) - failed} of {len(results)} notebooks passed, {total:.1f} s in all; "
                f"{passed} checks passed.")
    return "\n".join(rows)
