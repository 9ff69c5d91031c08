"""TensorBoard logs of the training loops: :func:`writer` opens them, :func:`log_run` writes a finished run,
:func:`read_scalars` and :func:`read_images` read them back."""

from __future__ import annotations

from pathlib import Path

from .device import ParameterError


def writer(log_dir: str):
    """A ``torch.utils.tensorboard.SummaryWriter`` writing into ``log_dir``; None when log_dir is "" (no logs).

    Open the logs with ``tensorboard --logdir <log_dir>``. A folder that cannot be created or written raises
    :class:`ParameterError` with one sentence saying so.
    """
    if not log_dir:
        return None
    folder = Path(log_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".aicourse-write-test").touch()
        (folder / ".aicourse-write-test").unlink()
    except OSError as exc:
        raise ParameterError(f"log_dir={log_dir!r} cannot be used as a TensorBoard folder: "
                             f"{exc.strerror or exc}.") from None
    from torch.utils.tensorboard import SummaryWriter  # imported only when logging (it takes ~0.2 s)
    return SummaryWriter(str(folder))


def _events(path, kind: str):
    """TensorBoard's reader of the event files in ``path``, keeping every event of ``kind`` (not a sample)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={kind: 0})  # 0: keep every one
    events.Reload()
    return events


def read_scalars(path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in folder ``path`` (or of one event file): {tag: [(step, value), ...]}."""
    events = _events(path, "scalars")
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def read_images(path) -> dict[str, list[tuple[int, int, int]]]:
    """Every image of the event files in folder ``path``: {tag: [(step, height, width), ...]}."""
    events = _events(path, "images")
    return {tag: [(e.step, e.height, e.width) for e in events.Images(tag)] for tag in events.Tags()["images"]}


def log_run(log_dir: str, scalars: dict, images: dict | None = None, header: str = "step",
            figures: dict | None = None) -> None:
    """Write a finished run to TensorBoard in ``log_dir`` and print what was written; nothing when log_dir is "".

    ``scalars``: {tag: [(step, value), ...]}; tags with the same steps are printed as one table whose first line
    is ``header`` followed by the tags (float32, as TensorBoard stores them: tests/test_tensorboard.py reads
    the files back and compares them with this table). ``images``: {tag: (step, array)}, the array N×H×W or
    N×C×H×W with values in [0, 1], written as one grid per tag. ``figures``: {tag: (step, matplotlib figure)},
    written as images (the figure stays open, for the notebook to show).
    """
    tb = writer(log_dir)
    if tb is None:
        return
    import numpy as np

    for tag, points in scalars.items():
        for step, value in points:
            tb.add_scalar(tag, float(value), int(step))
    for tag, (step, array) in (images or {}).items():
        array = np.asarray(array, dtype=np.float32)
        tb.add_images(tag, array[:, None] if array.ndim == 3 else array, int(step))
    for tag, (step, figure) in (figures or {}).items():
        tb.add_figure(tag, figure, int(step), close=False)
    tb.close()
    pictures = [*(images or {}), *(figures or {})]
    parts = ([f"{len(scalars)} curves"] if scalars else []) + ([f"images {', '.join(pictures)}"] if pictures else [])
    print(f"logged to TensorBoard in {log_dir}: " + ", ".join(parts or ["nothing"]))
    groups: dict[tuple, list[str]] = {}
    for tag, points in scalars.items():
        groups.setdefault(tuple(int(s) for s, _ in points), []).append(tag)
    for steps, tags in groups.items():
        print(f"{header}  " + "  ".join(tags))
        for i, step in enumerate(steps):
            print(f"{step:>{len(header)}}  " + "  ".join(str(np.float32(scalars[t][i][1])) for t in tags))
