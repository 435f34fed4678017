"""Per-layer norms and run metrics as TensorBoard scalars.

A :class:`~tvlars.telemetry.LayerRecorder` given ``tensorboard=writer`` (a
``torch.utils.tensorboard.SummaryWriter``) writes, at each of its flushes, every recorded
step's LWN, LGN, LNR, trust ratio and step size as ``layers/<layer>/<lwn|lgn|lnr|
trust_ratio|step_size>``; :func:`write_epoch` adds a run's loss, accuracy and LR per
epoch and TVLARS's phi(t) (Eq. 8) per step. Nothing here touches the device: the values
come from the recorder's one transfer per flush.

The ``tensorboard`` package is an optional extra: ``pip install "tvlars[tensorboard]"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

INSTALL = 'pip install "tvlars[tensorboard]"'
#: Short names of the recorder's five values, in the CSV's column order.
LAYER_SCALARS = ("lwn", "lgn", "lnr", "trust_ratio", "step_size")
#: Tags of the metrics.csv columns written per epoch (other numeric columns keep their name).
EPOCH_TAGS = {
    "train_loss": "loss/train",
    "test_loss": "loss/test",
    "train_acc": "accuracy/train",
    "test_acc": "accuracy/test",
    "test_acc5": "accuracy/test_top5",
    "knn_acc": "accuracy/knn",
    "lr": "lr",
}
_NOT_SCALARS = ("epoch", "step", "seconds")


def require_tensorboard() -> None:
    """Raise ``ImportError`` with the install line when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ImportError(f"TensorBoard output needs the tensorboard package: {INSTALL}") from None


def open_writer(log_dir: str | os.PathLike[str], purge_step: int | None = None):
    """A ``SummaryWriter`` writing event files into ``log_dir``.

    ``purge_step``: on resume, the step to resume from; TensorBoard then hides the events
    an earlier, interrupted writer logged at that step or later.
    """
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step or None)


def write_layer_rows(
    writer, steps: Sequence[int], layer_names: Sequence[str], values: np.ndarray
) -> None:
    """Write ``values[i, layer, :]`` (the recorder's five columns) of each step ``steps[i]``.

    One event per step with all its layers' scalars: ``add_scalar`` per value costs an
    event each (framing and checksum in Python), several times the cost of one event.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    tags = [f"layers/{name}/{short}" for name in layer_names for short in LAYER_SCALARS]
    file_writer = writer._get_file_writer()  # what add_scalar itself writes through
    flat = np.asarray(values, dtype=np.float64).reshape(len(steps), len(tags)).tolist()
    for step, row in zip(steps, flat, strict=True):
        summary = Summary()
        for tag, value in zip(tags, row, strict=True):
            summary.value.add(tag=tag, simple_value=value)
        file_writer.add_summary(summary, step)


def write_epoch(writer, row: Mapping[str, Any], optimizer: Any = None, first_step: int = 0) -> None:
    """Write one metrics.csv row at its last step, and phi(t) for each of the epoch's steps
    ``first_step .. row["step"] - 1`` when ``optimizer`` is a TVLARS (it has ``phi``)."""
    step = int(row["step"])
    for key, value in row.items():
        if key in _NOT_SCALARS or not isinstance(value, int | float):
            continue
        writer.add_scalar(EPOCH_TAGS.get(key, key), float(value), step)
    phi = getattr(optimizer, "phi", None)
    if callable(phi):
        for t in range(first_step, step):
            writer.add_scalar("schedule/phi", phi(t), t)
    writer.flush()
