"""A run folder: config.json, metrics.csv, layers.csv, checkpoint.pt, summary.json.

Every file is written to a temporary name and moved into place with ``os.replace``, so
a run killed at any moment leaves either the old file or the new one, never half of
one. A folder with ``summary.json`` is finished; one with ``checkpoint.pt`` resumes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

METRIC_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "test_acc5",
    "seconds",
)


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class RunFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.csv"
        self.layers = self.path / "layers.csv"
        self.checkpoint = self.path / "checkpoint.pt"
        self.summary = self.path / "summary.json"

    def is_finished(self) -> bool:
        return self.summary.exists()

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary.read_text())

    def write_json(self, path: Path, values: dict[str, Any]) -> None:
        write_atomically(path, (json.dumps(values, indent=2, sort_keys=True) + "\n").encode())

    def write_metrics(
        self, rows: list[dict[str, Any]], columns: tuple[str, ...] = METRIC_COLUMNS
    ) -> None:
        """Rewrite metrics.csv from all rows so far (a few hundred at most: one per epoch)."""
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(self.metrics, text.getvalue().encode())

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomically(self.checkpoint, buffer.getvalue())

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint.exists():
            return None
        # weights_only: a checkpoint is data, never code, even if someone swapped the file.
        return torch.load(self.checkpoint, map_location="cpu", weights_only=True)
