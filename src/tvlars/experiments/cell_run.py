"""One cell on disk: its folder's state, and running it (in this process or a worker).

A cell's folder is ``DIR/runs/<run id>/``: the run folder of ``tvlars train`` plus
``cell.json`` (the cell's coordinates on the grid, for the report), ``train.log`` and,
for a cell that raised, ``error.txt`` with the traceback. States:

- finished: ``summary.json`` exists (a diverged run is finished; its summary says so);
- failed: ``error.txt`` exists and no summary; retried only when asked;
- partial: a checkpoint and no summary (interrupted): the next sweep resumes it;
- new: nothing yet.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvlars.errors import UserError
from tvlars.experiments.grid import Cell
from tvlars.experiments.lock import SweepLocked, sweep_lock

RUNS_DIR = "runs"
CELL_FILE = "cell.json"
ERROR_FILE = "error.txt"
LOG_FILE = "train.log"

NEW, PARTIAL, FAILED, FINISHED = "new", "partial", "failed", "finished"
BUSY = "busy"  # another process is running the cell


def cell_folder(out: str | os.PathLike[str], cell: Cell) -> Path:
    return Path(out) / RUNS_DIR / cell.run_id()


def cell_state(folder: Path) -> str:
    if (folder / "summary.json").exists():
        return FINISHED
    if (folder / ERROR_FILE).exists():
        return FAILED
    if (folder / "checkpoint.pt").exists():
        return PARTIAL
    return NEW


@dataclass(frozen=True)
class CellTask:
    """What a worker needs to run one cell (picklable, for spawned processes)."""

    cell: Cell
    folder: str
    threads: int | None = None


@dataclass(frozen=True)
class CellResult:
    run_id: str
    state: str  # FINISHED, FAILED or BUSY
    diverged: bool = False
    seconds: float = 0.0
    accuracy: float | None = None
    error: str | None = None


def barlow_twins_available() -> bool:
    """Whether ``tvlars.pretrain`` (Barlow Twins) can be imported here."""
    try:
        import tvlars.pretrain  # noqa: F401
    except ImportError:
        return False
    return True


def execute_cell(task: CellTask) -> CellResult:
    """Run one cell to its end; record a failure in ``error.txt`` instead of raising.

    The cell's folder is locked while it runs, so that a worker orphaned by a killed sweep
    and the next sweep never train the same cell at once (the second reports it busy)."""
    folder = Path(task.folder)
    try:
        with sweep_lock(folder):
            return execute_locked(task, folder)
    except SweepLocked as error:
        return CellResult(task.cell.run_id(), BUSY, error=str(error))
    except UserError as error:  # no folder to be had (a file in its place): a failed cell
        return CellResult(task.cell.run_id(), FAILED, error=str(error))


def execute_locked(task: CellTask, folder: Path) -> CellResult:
    """:func:`execute_cell` once the cell's lock is held."""
    write_json(folder / CELL_FILE, {"run_id": task.cell.run_id(), **task.cell.describe()})
    (folder / ERROR_FILE).unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        summary = run_cell(task.cell, folder, task.threads)
    except Exception as error:  # noqa: BLE001 - any failure of a cell is recorded, not raised
        text = traceback.format_exc()
        (folder / ERROR_FILE).write_text(text)
        return CellResult(
            task.cell.run_id(),
            FAILED,
            seconds=time.perf_counter() - started,
            error=f"{type(error).__name__}: {error}",
        )
    return CellResult(
        task.cell.run_id(),
        FINISHED,
        diverged=bool(summary.get("diverged")),
        seconds=time.perf_counter() - started,
        accuracy=summary.get("final_test_acc"),
    )


def run_cell(cell: Cell, folder: Path, threads: int | None) -> dict[str, Any]:
    """Train the cell in ``folder`` (resuming a checkpoint there) and return its summary."""
    config = dataclasses.replace(cell.config, out=str(folder), threads=threads)
    with open(folder / LOG_FILE, "a") as log_file:

        def log(message: str) -> None:
            log_file.write(message + "\n")
            log_file.flush()

        if cell.task == "classification":
            from tvlars.train import train

            return train(config, progress=False, log=log)
        from tvlars.pretrain import pretrain

        return pretrain(
            cell.pretrain_config(out=str(folder), threads=threads), progress=False, log=log
        )


def record_crash(task: CellTask, message: str) -> CellResult:
    """A cell whose process died (killed, out of memory, lost with its node) without
    recording anything: write ``error.txt`` so that the cell counts as failed."""
    folder = Path(task.folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ERROR_FILE).write_text(message + "\n")
    return CellResult(task.cell.run_id(), FAILED, error=message)


def result_from_folder(run_id: str, folder: Path) -> CellResult | None:
    """The result a finished or failed cell left in its folder (for a cell another process
    ran, e.g. a SLURM array task); None while the cell is new or partial."""
    state = cell_state(folder)
    if state == FINISHED:
        summary = json.loads((folder / "summary.json").read_text())
        return CellResult(
            run_id,
            FINISHED,
            diverged=bool(summary.get("diverged")),
            seconds=float(summary.get("wall_seconds") or 0.0),
            accuracy=summary.get("final_test_acc"),
        )
    if state == FAILED:
        lines = (folder / ERROR_FILE).read_text().strip().splitlines()
        return CellResult(run_id, FAILED, error=lines[-1] if lines else "failed")
    return None


def write_json(path: Path, values: dict[str, Any]) -> None:
    from tvlars.train.run_folder import write_atomically

    write_atomically(
        path, (json.dumps(values, indent=2, sort_keys=True, default=str) + "\n").encode()
    )


def initialize_worker(threads: int | None, devices) -> None:
    """Spawned worker start-up: claim one GPU (one cell per GPU) and set the CPU threads,
    before torch is imported in this process."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)
