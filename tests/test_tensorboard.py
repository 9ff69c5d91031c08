"""TensorBoard logs (issue 23): what a training loop writes is read back whole and equals what it printed."""

import nbformat
import numpy as np
import pytest

from aicourse import ParameterError, log_run, read_images, read_scalars, writer
from aicourse.notebooks import find_notebook
from aicourse.runner import run

# 07 at its smallest: one epoch of 5 steps, a 4-unit hidden layer (the notebook's start dominates the time)
SMALL_07 = {"epochs": "1", "hidden": "4", "batch_size": "256"}


def printed_table(executed, header_start):
    """{tag: [(step, value), ...]} from the table a notebook printed under a header 'step-name tag tag ...'."""
    lines = [line for c in nbformat.read(executed, 4).cells if c.cell_type == "code" for o in c.outputs
             if o.output_type == "stream" and o.name == "stdout" for line in o.text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    tags = lines[start].split()[1:]
    table = {tag: [] for tag in tags}
    for line in lines[start + 1:]:
        fields = line.split()
        if len(fields) != len(tags) + 1 or not fields[0].isdigit():
            break
        for tag, value in zip(tags, fields[1:]):
            table[tag].append((int(fields[0]), float(value)))
    return table


def same_scalars(logged, printed):
    """Same tags, same steps, and every value the same float32 (a printed value round-trips float32 exactly)."""
    as_f32 = lambda d: {t: [(s, np.float32(v)) for s, v in pts] for t, pts in d.items()}
    return as_f32(logged) == as_f32(printed)


def test_writer_and_read_scalars_round_trip(tmp_path):
    assert writer("") is None
    curve = {"loss/train": [(0, 2.3), (5, 1.25), (10, 0.5)], "lr": [(s, 1e-3 * 0.9 ** s) for s in range(12)]}
    tb = writer(str(tmp_path / "new" / "run"))   # folders are created
    for tag, points in curve.items():
        for step, value in points:
            tb.add_scalar(tag, value, step)
    tb.close()
    logged = read_scalars(tmp_path / "new" / "run")
    assert same_scalars(logged, curve)
    wrong_value = {**curve, "lr": curve["lr"][:-1] + [(11, float(np.nextafter(np.float32(curve["lr"][-1][1]), 1)))]}
    wrong_step = {**curve, "loss/train": [(0, 2.3), (6, 1.25), (10, 0.5)]}
    missing = {**curve, "lr": curve["lr"][:-1]}
    assert not any(same_scalars(logged, bad) for bad in (wrong_value, wrong_step, missing))


def test_read_images_keeps_every_image_with_its_step_and_size(tmp_path):
    tb = writer(str(tmp_path / "run"))
    for step in (0, 7):
        tb.add_images("samples", np.zeros((4, 1, 8, 8)) + step / 10, step)   # 4 images of 8x8, one grid each
    tb.add_image("grid", np.ones((3, 10, 12)), 3)
    tb.close()
    assert read_images(tmp_path / "run") == {"samples": [(0, 8, 8 * 4), (7, 8, 8 * 4)], "grid": [(3, 10, 12)]}


def test_log_run_writes_what_it_prints(tmp_path, capsys):
    """A finished run's curves and sample images: the printed tables equal the event files, tag by tag."""
    log_run("", {"loss": [(0, 1.0)]})                      # no folder: nothing written, nothing printed
    assert capsys.readouterr().out == "" and not list(tmp_path.iterdir())
    scalars = {"loss/train": [(0, 2.5), (10, 1 / 3)], "loss/test": [(0, 2.75), (10, 0.4)], "lr": [(5, 1e-3)]}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(2, 1.5), dpi=50)
    log_run(str(tmp_path / "run"), scalars, images={"samples": (10, np.random.default_rng(0).random((6, 8, 8)))},
            header="step", figures={"scatter": (4, fig)})
    assert plt.fignum_exists(fig.number)                    # still open: the notebook shows it next
    plt.close(fig)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"logged to TensorBoard in {tmp_path / 'run'}: 3 curves, images samples, scatter"
    path = tmp_path / "out.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=out)])])
    nbformat.write(nb, path)
    printed = {**printed_table(path, "step  loss/train"), **printed_table(path, "step  lr")}
    assert same_scalars(read_scalars(tmp_path / "run"), printed) and same_scalars(printed, scalars)
    assert read_images(tmp_path / "run") == {"samples": [(10, 8, 6 * 8)], "scatter": [(4, 75, 100)]}


def test_writer_rejects_an_unusable_folder(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ParameterError, match="cannot be used as a TensorBoard folder"):
        writer(str(tmp_path / "a_file" / "run"))


def test_07_logs_the_curves_it_prints(tmp_path, monkeypatch):
    """`-p log_dir runs/07` lands in runs/07 of the folder you run from (not the kernel's notebooks/)."""
    log_dir = tmp_path / "runs" / "07"
    monkeypatch.chdir(tmp_path)
    result = run([str(find_notebook("07"))], {"log_dir": "runs/07", **SMALL_07}, tmp_path / "out",
                 progress=False)[0]
    assert result.status == "ok", result.output
    printed = printed_table(result.output, "epoch  loss/train")
    assert set(printed) == {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr"}
    assert all([s for s, _ in pts] == [0, 1] for pts in printed.values())   # epoch 0 (initial weights) and 1
    assert same_scalars(read_scalars(log_dir), printed)

