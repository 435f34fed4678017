"""A run folder: config.json, metrics.csv, layers.csv, checkpoint.pt, summary.json.

Every file is written to a temporary name and moved into place with ``os.replace``, so
a run killed at any moment (or a disk that fills up) leaves either the old file or the
new one, never half of one. A folder with ``summary.json`` is finished; one with
``checkpoint.pt`` resumes. One process at a time writes a run folder: it holds the
folder's lock (:mod:`tvlars.folder_lock`) for the whole run. A folder holding another
run's files, or files that cannot be read, is refused (:class:`~tvlars.errors.UserError`)
with the way out, and left as it was.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from tvlars.errors import UserError
from tvlars.folder_lock import folder_lock
from tvlars.train import distributed

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


#: What the checkpoint of a run holds (both loops write at least these keys).
CHECKPOINT_KEYS = ("run_id", "epoch", "metrics", "model", "optimizer")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, moved into
    place once complete: a failure at any point (a full disk) leaves the old file whole.
    A failure to write is a :class:`UserError` saying so."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        raise UserError(f"cannot write {path} ({error.strerror or error})") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise UserError(
            f"cannot write {path} ({error.strerror or error}); its previous version, if "
            "any, is kept whole. Free some space (or fix the folder) and run the same "
            "command again to resume from the last checkpoint"
        ) from None
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

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.config, self.metrics, self.layers, self.checkpoint, self.summary)

    @contextlib.contextmanager
    def held(self, processes: distributed.Processes, restart: bool = False) -> Iterator[None]:
        """Hold the folder for one run: the main process creates it, takes its lock and
        checks its files (with ``restart``, deletes the previous run's files); the other
        processes wait for its verdict, so that a refusal stops them all."""
        with contextlib.ExitStack() as stack:
            refusal = None
            if processes.is_main:
                try:
                    stack.enter_context(
                        folder_lock(
                            self.path,
                            "run",
                            "wait for it to finish, or give this run another --out folder",
                        )
                    )
                    self._check_files()
                    if restart:
                        self.discard()
                except UserError as error:
                    refusal = str(error)
            refusal = distributed.broadcast_object(refusal, processes)
            if refusal is not None:
                raise UserError(refusal)
            yield

    def _check_files(self) -> None:
        for path in self.files:
            if path.exists() and not path.is_file():
                raise UserError(
                    f"{path} is not a file (a folder?), so this run folder cannot be "
                    "used; move it away, or give this run another --out folder"
                )

    def discard(self) -> None:
        """Delete the previous run's files (``--restart``): the run starts over."""
        for path in self.files:
            path.unlink(missing_ok=True)

    def is_finished(self) -> bool:
        return self.summary.exists()

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary.read_text())

    def finished_summary(self, run_id: str) -> dict[str, Any] | None:
        """The summary of the finished run ``run_id`` in this folder; ``None`` if the run
        is not finished; :class:`UserError` if the folder holds another run or its summary
        cannot be read."""
        if not self.is_finished():
            return None
        try:
            summary = self.read_summary()
            if not isinstance(summary, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            raise UserError(
                f"{self.summary} is damaged ({error}); move it away and run the same "
                "command again (the run resumes from its checkpoint), or add --restart to "
                "start the run over"
            ) from None
        held = summary.get("run_id") or self._config_run_id()
        if held is not None and held != run_id:
            raise UserError(self._other_run(held, run_id, "finished"))
        return summary

    def _config_run_id(self) -> str | None:
        try:
            return json.loads(self.config.read_text()).get("run_id")
        except (OSError, ValueError, AttributeError):
            return None

    def _other_run(self, held: str, run_id: str, state: str) -> str:
        return (
            f"{self.path} holds {state} run {held}, not {run_id}: the settings differ from "
            "the ones it was started with. Use another --out folder (or --restart to "
            "discard the run in it)"
        )

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

    def load_checkpoint(self, run_id: str | None = None) -> dict[str, Any] | None:
        """The checkpoint, or ``None`` if there is none. :class:`UserError` if it cannot
        be read (truncated, empty, not a checkpoint) or, given ``run_id``, is another
        run's."""
        if not self.checkpoint.exists():
            return None
        try:
            # weights_only: a checkpoint is data, never code, even if someone swapped it.
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            missing = [key for key in CHECKPOINT_KEYS if key not in state]
            if missing:
                raise ValueError(f"it lacks {missing}")
        except Exception as error:  # noqa: BLE001 - any unreadable file is the same problem
            # The first sentence: torch's own messages go on about weights_only at length.
            reason = str(error).strip().split(". ")[0].splitlines()[0] if str(error).strip() else ""
            raise UserError(
                f"{self.checkpoint} is damaged: truncated, empty or not a tvlars checkpoint "
                f"({type(error).__name__}{': ' + reason if reason else ''}). The run cannot "
                f"resume from it. Move it away (e.g. mv {self.checkpoint} "
                f"{self.checkpoint}.damaged) and run the same command again to start the run "
                "over, or add --restart"
            ) from None
        if run_id is not None and state["run_id"] != run_id:
            raise UserError(self._other_run(state["run_id"], run_id, "unfinished"))
        return state
