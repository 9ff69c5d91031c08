"""The runner: success, failure keeps the executed notebook, bad input stops before anything runs."""

import nbformat
import pytest

from aicourse.cli import main
from aicourse.device import ParameterError
from aicourse.notebooks import new_notebook
from aicourse.runner import plan, run


@pytest.fixture()
def small(tmp_path):
    nb = new_notebook(1, "small", "Small")
    nb.cells[2].source += "\nfail: bool = False  # raise on purpose\nsteps: int = 2  # a size knob"
    nb.cells.append(nbformat.v4.new_code_cell(
        "assert not fail, 'asked to fail'\nprint('steps', steps, 'seed', seed)\n"
        "check('exp', np.exp(np.ones(3)), torch.exp(torch.ones(3, dtype=torch.float64)))\n"
        "with expect_failure('1 + x for exp'):\n    check('1 + x', 2 * np.ones(3), np.exp(np.ones(3)))"))
    nb.cells[-1].pop("id", None)  # nbformat 4.4 has no cell ids
    path = tmp_path / "01_small.ipynb"
    nbformat.write(nb, path)
    return path


def test_run_passes_parameters_and_writes_summary(small, tmp_path, capfd):
    out = tmp_path / "out"
    [result] = run([str(small)], {"steps": "5", "seed": "7"}, out, progress=False)
    assert result.status == "ok" and result.seconds > 0
    assert "without encryption" not in capfd.readouterr().err, "the kernel spoke about TCP"
    executed = nbformat.read(out / "01_small.ipynb", 4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "steps 5 seed 7" in text
    assert result.checks["passed"] == 1 and result.checks["caught"] == 1
    assert result.checks["float64"] < 1e-15 and result.checks["float32"] == 0.0
    summary = (out / "summary.md").read_text()
    assert "| 01_small | ok |" in summary and "1 checks passed" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| 01_small"))
    seconds, start, cells = (float(x) for x in row.split(" | ")[2:5])
    assert 0 < cells < seconds and start == pytest.approx(seconds - cells, abs=0.11)


def test_failure_keeps_output_and_summary_and_exits_nonzero(small, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(small), "-p", "fail", "true", "-p", "seed", "3", "--out", str(out), "--no-progress"])
    assert code == 1
    executed = nbformat.read(out / "01_small.ipynb", 4)
    assert any(o.get("ename") == "AssertionError" for c in executed.cells if c.cell_type == "code"
               for o in c.outputs)
    assert "FAILED: AssertionError: asked to fail" in capsys.readouterr().out
    # the summary records the folder, the parameters, the environment and the failed copy
    summary = (out / "summary.md").read_text()
    assert "Parameters: -p fail true -p seed 3" in summary and "torch " in summary and "numpy " in summary
    assert "Notebooks: `" in summary and " | cpu (" in summary
    assert f"(executed copy: `{out / '01_small.ipynb'}`)" in summary


@pytest.mark.parametrize("params, message", [
    ({"stpes": "5"}, "has no parameter 'stpes'"),
    ({"steps": "five"}, "is int; 'five' is not one"),
    ({"fail": "maybe"}, "is bool"),
])
def test_bad_parameter_is_refused_before_running(small, params, message):
    with pytest.raises(ParameterError, match=message):
        plan([str(small)], params)


def test_cli_errors_are_one_line_and_nothing_runs(small, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(small), "-p", "stpes", "1", "--out", str(out)]) == 2
    assert main(["run", "99_missing", "--out", str(out)]) == 2
    assert main(["run", str(small), "--device", "tpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("aicourse: error: ") for line in err)
    assert "No notebook '99_missing'" in err[1] and "Unknown device 'tpu'" in err[2]
    assert not out.exists()


def test_a_dying_kernel_is_recorded_and_the_run_goes_on(small, tmp_path, capsys):
    """Also: a parameter goes to the notebooks that declare it, and the run says which (one run, two kernels)."""
    nb = nbformat.read(small, 4)
    nb.cells.append(nbformat.v4.new_code_cell("import os\nif fail: os._exit(1)"))
    nb.cells[-2].source = "print('steps', steps)"  # do not raise before the kernel dies
    dying = tmp_path / "01_dying.ipynb"
    nbformat.write(nb, dying)
    other = tmp_path / "02_other.ipynb"
    nbformat.write(new_notebook(2, "other", "Other"), other)
    taken = {}
    jobs = plan([str(dying), str(other)], {"fail": "true", "seed": "1"}, taken=taken)
    assert [typed for _, typed in jobs] == [{"fail": True, "seed": 1}, {"seed": 1}]
    assert taken == {"fail": ["01_dying"], "seed": ["01_dying", "02_other"]}
    with pytest.raises(ParameterError, match=r"any of the 2 selected notebooks has no parameter 'stpes'"):
        plan([str(dying), str(other)], {"stpes": "3"})
    results = run([str(dying), str(other)], {"fail": "true"}, tmp_path / "out", progress=False)
    assert "-p fail applies to 1 of 2 notebooks: 01_dying" in capsys.readouterr().out
    assert results[0].status.startswith("FAILED") and results[1].status == "ok"


def test_unwritable_out_is_one_sentence_before_anything_runs(small, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["run", str(small), "--out", str(blocker / "sub"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aicourse: error: Cannot write the executed notebooks to ")
    assert "not a directory" in err[0] and not list(tmp_path.glob("**/summary.md"))


def test_the_checkout_you_stand_in_is_the_one_that_runs(small, tmp_path, monkeypatch):
    here = tmp_path / "checkout"
    (here / "notebooks").mkdir(parents=True)
    nbformat.write(nbformat.read(small, 4), here / "notebooks" / "01_mine.ipynb")
    monkeypatch.chdir(here)
    [result] = run(["01"], {}, "out", progress=False)
    assert result.notebook == "01_mine" and result.status == "ok"
    assert f"Notebooks: `{here / 'notebooks'}`" in (here / "out" / "summary.md").read_text()


@pytest.mark.parametrize("parent_ignores_sigint", [False, True])
def test_ctrl_c_stops_the_kernel_and_writes_the_summary(tmp_path, parent_ignores_sigint):
    """Also when started from a process that ignores SIGINT (a shell's background job, a test runner's worker):
    a child inherits SIG_IGN, and Python keeps it unless the runner restores the handler."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = new_notebook(1, "sleepy", "Sleepy")
    nb.cells.append(nbformat.v4.new_code_cell(
        "import pathlib, time\npathlib.Path('started').write_text('yes')\ntime.sleep(120)"))
    nbformat.write(nb, folder / "01_sleepy.ipynb")
    nbformat.write(new_notebook(2, "after", "After"), folder / "02_after.ipynb")
    proc = subprocess.Popen([sys.executable, "-m", "aicourse", "run", "--out", "out", "--no-progress"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if parent_ignores_sigint
                            else None)
    deadline = time.monotonic() + 120
    while not (folder / "started").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (folder / "started").exists(), proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    start = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.monotonic() - start < 30
    assert "Traceback" not in err and "Task exception" not in err and "DeadKernel" not in err
    lines = [line for line in err.splitlines() if line.startswith("aicourse")]
    assert len(lines) == 1 and "interrupted during 01_sleepy" in lines[0]
    assert "01_sleepy.ipynb" in lines[0] and "summary.md" in lines[0]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| 01_sleepy | INTERRUPTED" in summary and "| 02_after | not run |" in summary
    partial = nbformat.read(tmp_path / "out" / "01_sleepy.ipynb", 4)
    assert partial.cells[0].source.startswith("**INTERRUPTED**")
    time.sleep(1)
    assert subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True).returncode == 1  # no kernel left


def test_a_path_means_that_path_even_without_ipynb(small, tmp_path, monkeypatch):
    """`aicourse run ./my-work/22_gpt` runs my-work's copy, not notebooks/22_gpt; a missing path is one sentence."""
    from aicourse.notebooks import find_notebook

    work = tmp_path / "my-work"
    work.mkdir()
    mine = work / "22_gpt.ipynb"
    mine.write_bytes(small.read_bytes())
    monkeypatch.chdir(tmp_path)
    for name in ("./my-work/22_gpt", "my-work/22_gpt", "my-work/22_gpt.ipynb", str(work / "22_gpt")):
        assert find_notebook(name) == mine.resolve(), name
    assert find_notebook("22").name == "22_gpt.ipynb" and find_notebook("22") != mine.resolve()
    with pytest.raises(FileNotFoundError, match=r"^No notebook at my-work/21_x \(nor my-work/21_x.ipynb\)\.$"):
        find_notebook("my-work/21_x")
    [result] = run(["./my-work/22_gpt"], {}, tmp_path / "out", progress=False)
    assert result.status == "ok" and (tmp_path / "out" / "22_gpt.ipynb").exists()
