"""TensorBoard logs of the training loops: :func:`writer` opens them, :func:`read_scalars` reads them back."""

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


def read_scalars(path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in folder ``path`` (or of one event file): {tag: [(step, value), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every scalar, not a sample
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def read_images(path) -> dict[str, list[tuple[int, int, int]]]:
    """Every image of the event files in folder ``path``: {tag: [(step, height, width), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"images": 0})  # 0: keep every image
    events.Reload()
    return {tag: [(e.step, e.height, e.width) for e in events.Images(tag)] for tag in events.Tags()["images"]}
