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
    path = tmp_path / "01_small.ipynb"
    nbformat.write(nb, path)
    return path


def test_run_passes_parameters_and_writes_summary(small, tmp_path):
    out = tmp_path / "out"
    [result] = run([str(small)], {"steps": "5", "seed": "7"}, out, progress=False)
    assert result.status == "ok" and result.seconds > 0
    executed = nbformat.read(out / "01_small.ipynb", 4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "steps 5 seed 7" in text
    assert result.checks["passed"] == 1 and result.checks["caught"] == 1
    assert result.checks["float64"] < 1e-15 and result.checks["float32"] == 0.0
    summary = (out / "summary.md").read_text()
    assert "| 01_small | ok |" in summary and "1 checks passed" in summary


def test_failure_keeps_output_and_exits_nonzero(small, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(small), "-p", "fail", "true", "--out", str(out), "--no-progress"])
    assert code == 1
    executed = nbformat.read(out / "01_small.ipynb", 4)
    assert any(o.get("ename") == "AssertionError" for c in executed.cells if c.cell_type == "code"
               for o in c.outputs)
    assert "FAILED: AssertionError: asked to fail" in capsys.readouterr().out


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


def test_a_dying_kernel_is_recorded_and_the_run_goes_on(small, tmp_path):
    nb = nbformat.read(small, 4)
    nb.cells.append(nbformat.v4.new_code_cell("import os\nif fail: os._exit(1)"))
    nb.cells[-2].source = "print('steps', steps)"  # do not raise before the kernel dies
    dying = tmp_path / "02_dying.ipynb"
    nbformat.write(nb, dying)
    results = run([str(dying), str(small)], {"fail": "true"}, tmp_path / "out", progress=False)
    assert results[0].status.startswith("FAILED") and results[1].status.startswith("FAILED: AssertionError")
