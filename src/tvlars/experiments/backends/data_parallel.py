"""A cell with several GPUs: ``torchrun`` inside the cell's allocation.

A Ray task or a SLURM array task that holds G GPUs starts ``torchrun --standalone
--nproc_per_node=G`` on them; the G processes train the cell together, data-parallel, as
``tvlars sweep`` does under torchrun (:func:`~tvlars.experiments.runner.execute_together`),
and process 0 writes the cell's result to ``cell-result.json`` for the task to return.
The same code path as a torchrun sweep, so a multi-GPU cell trains the same way whichever
engine placed it. The cell travels to the processes as ``cell-task.json`` in its folder.

Run as ``python -m tvlars.experiments.backends.data_parallel FOLDER`` (by torchrun only).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tvlars.experiments.cell_run import CellResult, CellTask, record_crash, write_json
from tvlars.experiments.grid import Cell

TASK_FILE = "cell-task.json"
RESULT_FILE = "cell-result.json"
LOG_FILE = "torchrun.log"


def task_to_json(task: CellTask) -> dict:
    return dataclasses.asdict(task)


def task_from_json(values: dict) -> CellTask:
    """The inverse of :func:`task_to_json`; refuses a cell whose run id changed on the way
    (a config key that JSON cannot carry faithfully)."""
    from tvlars.train.config import RunConfig

    cell_values = dict(values["cell"])
    config = RunConfig(**cell_values.pop("config"))
    cell = Cell(config=config, **cell_values)
    task = CellTask(cell, values["folder"], values.get("threads"))
    expected = Path(task.folder).name
    if cell.run_id() != expected:
        raise ValueError(f"{TASK_FILE} describes run {cell.run_id()}, not {expected}")
    return task


def execute_data_parallel(
    task: CellTask,
    processes: int,
    started: Callable[[subprocess.Popen], None] | None = None,
) -> CellResult:
    """Train the cell with ``processes`` torchrun processes on this node (one per GPU the
    allocation holds); ``started`` receives the torchrun process (to stop it on
    preemption). A torchrun that dies before the cell ends fails the cell."""
    folder = Path(task.folder)
    folder.mkdir(parents=True, exist_ok=True)
    threads = max(1, (task.threads or processes) // processes)
    write_json(folder / TASK_FILE, task_to_json(dataclasses.replace(task, threads=threads)))
    (folder / RESULT_FILE).unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        __name__,
        str(folder),
    ]
    with open(folder / LOG_FILE, "a") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        if started is not None:
            started(process)
        status = process.wait()
    if (folder / RESULT_FILE).exists():
        return CellResult(**json.loads((folder / RESULT_FILE).read_text()))
    return record_crash(
        task,
        f"torchrun ({processes} processes) exited with status {status} before the cell "
        f"ended; see {folder / LOG_FILE}",
    )


def main(argv: list[str]) -> int:
    from tvlars.experiments.runner import execute_together
    from tvlars.train import distributed

    folder = Path(argv[0])
    task = task_from_json(json.loads((folder / TASK_FILE).read_text()))
    processes = distributed.start(task.cell.config.device)
    try:
        result = execute_together(task, processes)
    finally:
        distributed.stop(processes)
    if processes.is_main:
        write_json(folder / RESULT_FILE, dataclasses.asdict(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
