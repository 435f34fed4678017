"""The sweep runner: every cell of a grid to a run folder, resumably, in parallel, locked.

Rerunning a sweep on the same folder skips finished cells, resumes interrupted ones from
their checkpoints, and retries failed ones only with ``retry_failed``. A cell that raises
is recorded (``error.txt``) and the sweep goes on; a diverged cell is finished (its summary
says so). Where the pending cells run is the backend's business
(:mod:`tvlars.experiments.backends`): this machine by default (``jobs`` > 1: spawned
worker processes, each with ``max(1, cores // jobs)`` CPU threads, or one GPU each when
``devices`` lists GPUs), a Ray cluster, or a SLURM job array. The folder's lock
(:mod:`tvlars.experiments.lock`) keeps a second sweep out.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tvlars.errors import UserError
from tvlars.experiments.backends import Backend
from tvlars.experiments.backends.local import LocalBackend
from tvlars.experiments.cell_run import (
    BUSY,
    FAILED,
    FINISHED,
    CellResult,
    CellTask,
    barlow_twins_available,
    cell_folder,
    cell_state,
    execute_cell,
    execute_locked,
    run_cell,
    write_json,
)
from tvlars.experiments.grid import Cell
from tvlars.experiments.lock import SweepLocked, sweep_lock
from tvlars.experiments.progress import Progress
from tvlars.train.distributed import Processes, broadcast_object

SWEEP_FILE = "sweep.json"
SUBMITTED = "submitted"


@dataclass
class SweepOutcome:
    """How each cell of the sweep ended up: ``states`` maps run id to finished, diverged,
    failed, skipped-failed (not retried), unavailable (its task cannot run here) or
    submitted (handed to a job scheduler that still works on it)."""

    states: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def counts(self) -> Counter[str]:
        return Counter(self.states.values())


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_per_cell(jobs: int, cores: int | None = None) -> int:
    """CPU threads each of ``jobs`` parallel cells gets: the cores split evenly, at least 1."""
    return max(1, (cores or available_cores()) // max(1, jobs))


def record_sweep(out: Path, name: str, description: str, cells: Sequence[Cell], **extra) -> None:
    """Write ``DIR/sweep.json``: the presets run on this folder and every cell they asked
    for (the union with what an earlier sweep on the folder recorded)."""
    import json

    path = out / SWEEP_FILE
    try:
        previous = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as error:
        raise UserError(
            f"{path} cannot be read ({error}); move it away and run the sweep again (the "
            "cells' folders are kept, and a sweep writes a new sweep.json)"
        ) from None
    cells_by_id = {c["run_id"]: c for c in previous.get("cells", [])}
    for cell in cells:
        cells_by_id[cell.run_id()] = {"run_id": cell.run_id(), **cell.describe()}
    presets = [p for p in previous.get("presets", []) if p.get("name") != name]
    presets.append({"name": name, "description": description, **extra})
    write_json(path, {"presets": presets, "cells": list(cells_by_id.values())})


def run_sweep(
    cells: Sequence[Cell],
    out: str | os.PathLike[str],
    *,
    jobs: int = 1,
    retry_failed: bool = False,
    threads: int | None = None,
    devices: Sequence[int] | None = None,
    name: str = "custom",
    description: str = "",
    sweep_info: dict | None = None,
    log: Callable[[str], None] = print,
    execute: Callable[[CellTask], CellResult] = execute_cell,
    backend: Backend | None = None,
) -> SweepOutcome:
    """Run every cell not yet finished; return how each one ended.

    ``backend`` runs the pending cells; by default a :class:`LocalBackend` of ``jobs``
    cells at once with ``threads`` threads each, whose ``execute`` runs one cell (in this
    process when ``jobs`` is 1, else in a spawned worker, where it must be importable);
    tests substitute it.
    """
    # Absolute: the cells' folders travel to workers that may start elsewhere.
    out = Path(out).absolute()
    started = time.monotonic()
    if backend is None:
        if threads is None:
            threads = threads_per_cell(jobs)
        backend = LocalBackend(jobs, threads, devices, execute)
    with sweep_lock(out):
        record_sweep(out, name, description, cells, **(sweep_info or {}))
        outcome, todo = plan_sweep(cells, out, retry_failed, backend.threads)
        _announce(outcome, todo, len(cells), backend.describe(), log)
        progress = Progress(total=len(cells), done_before=len(cells) - len(todo))
        if len(todo) > 1 and backend.parallel:
            prepare_datasets([task.cell for task in todo], log)

        def record(result: CellResult) -> None:
            _record(result, progress, outcome, log)

        for run_id in backend.run(todo, progress, record, log):
            outcome.states[run_id] = SUBMITTED
    return _finish(outcome, started, log)


def plan_sweep(
    cells: Sequence[Cell], out: Path, retry_failed: bool, threads: int | None
) -> tuple[SweepOutcome, list[CellTask]]:
    """The outcome of the cells that need no run (finished, failed and not retried,
    unavailable here) and the tasks of the others, in grid order."""
    outcome = SweepOutcome()
    todo: list[CellTask] = []
    bt_ok = any(c.task == "barlow-twins" for c in cells) and barlow_twins_available()
    for cell in cells:
        folder = cell_folder(out, cell)
        state = cell_state(folder)
        if cell.task != "classification" and not bt_ok:
            outcome.states[cell.run_id()] = "unavailable"
        elif state == FINISHED:
            outcome.states[cell.run_id()] = _finished_state(folder)
        elif state == FAILED and not retry_failed:
            outcome.states[cell.run_id()] = "skipped-failed"
        else:
            todo.append(CellTask(cell, str(folder), threads))
    return outcome, todo


def run_sweep_together(
    cells: Sequence[Cell],
    out: str | os.PathLike[str],
    processes: Processes,
    *,
    retry_failed: bool = False,
    name: str = "custom",
    description: str = "",
    sweep_info: dict | None = None,
    log: Callable[[str], None] = print,
) -> SweepOutcome:
    """Run the sweep with every process of a ``torchrun`` job training each cell together
    (data-parallel), one cell after another.

    Process 0 holds the folder's lock, decides which cells need a run and takes each
    cell's lock; the other processes follow its decisions, which it broadcasts, so that all
    of them enter the same collectives. Only process 0 writes the sweep's files and logs.
    """
    out = Path(out)
    started = time.monotonic()
    main = processes.is_main
    with contextlib.ExitStack() as stack:
        plan: tuple[SweepOutcome, list[CellTask]] | str
        if main:
            try:
                stack.enter_context(sweep_lock(out))
                record_sweep(out, name, description, cells, **(sweep_info or {}))
                plan = plan_sweep(cells, out, retry_failed, None)
            except SweepLocked as error:
                plan = str(error)
        else:
            plan = ""
        plan = broadcast_object(plan, processes)
        if isinstance(plan, str):
            raise SweepLocked(plan)
        outcome, todo = plan
        if main:
            _announce(outcome, todo, len(cells), None, log)
            log(f"[sweep] each cell runs on all {processes.world_size} processes")
        progress = Progress(total=len(cells), done_before=len(cells) - len(todo))
        for task in todo:
            progress.running = 1
            result = execute_together(task, processes)
            progress.running = 0
            if main:
                _record(result, progress, outcome, log)
                log(progress.line())
    return _finish(outcome, started, log if main else _quiet)


def execute_together(task: CellTask, processes: Processes) -> CellResult:
    """One cell on every process: process 0 records it as :func:`execute_cell` does; the
    others train their share and report nothing."""
    folder = Path(task.folder)
    with contextlib.ExitStack() as stack:
        busy = None
        if processes.is_main:
            try:
                stack.enter_context(sweep_lock(folder))
            except SweepLocked as error:
                busy = str(error)
        busy = broadcast_object(busy, processes)
        if busy is not None:
            return CellResult(task.cell.run_id(), BUSY, error=busy)
        if processes.is_main:
            return execute_locked(task, folder)
        try:
            run_cell(task.cell, folder, task.threads)
        except Exception:  # noqa: BLE001 - process 0 records the cell's failure
            pass
        return CellResult(task.cell.run_id(), FINISHED)


def _quiet(message: str) -> None:
    pass


def _finish(outcome: SweepOutcome, started: float, log: Callable[[str], None]) -> SweepOutcome:
    outcome.seconds = time.monotonic() - started
    counts = outcome.counts()
    log(
        "[sweep] finished: "
        + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        + f" in {outcome.seconds:.0f}s"
    )
    return outcome


def prepare_datasets(cells: Sequence[Cell], log: Callable[[str], None]) -> None:
    """Generate or decode each dataset once, here, into the cache, so that parallel cells
    read it instead of all making it at once (MNIST-1D at 62,500 samples takes a minute)."""
    from tvlars.data import load_dataset

    seen = set()
    for cell in cells:
        c = cell.config
        key = (c.dataset, c.num_samples, c.data_dir)
        if key in seen:
            continue
        seen.add(key)
        log(
            f"[sweep] preparing {c.dataset}"
            + (f" ({c.num_samples} samples)" if c.num_samples else "")
        )
        try:
            load_dataset(c.dataset, c.data_dir, num_samples=c.num_samples, seed=None)
        except Exception as error:  # noqa: BLE001 - the cells will fail and record why
            log(f"[sweep] could not prepare {c.dataset}: {error}")


def _finished_state(folder: Path) -> str:
    import json

    try:
        summary = json.loads((folder / "summary.json").read_text())
        return "diverged" if summary.get("diverged") else "finished"
    except (OSError, ValueError, AttributeError):
        return "damaged"  # the report names the file; the cell is not rerun over it


def _announce(outcome, todo, total, how: str | None, log) -> None:
    counts = outcome.counts()
    skipped = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    log(
        f"[sweep] {total} cells: {len(todo)} to run"
        + (f"; already {skipped}" if skipped else "")
        + (f"; {how}" if how else "")
    )
    if counts.get("skipped-failed"):
        log("[sweep] failed cells are not rerun; pass --retry-failed to retry them")
    if counts.get("unavailable"):
        log("[sweep] Barlow Twins cells are left out: tvlars.pretrain is not available")


def _record(result: CellResult, progress: Progress, outcome: SweepOutcome, log) -> None:
    if result.state in (FAILED, BUSY):
        state = result.state
    else:
        state = "diverged" if result.diverged else FINISHED
    outcome.states[result.run_id] = state
    progress.outcomes[state] += 1
    if state in (FAILED, BUSY):
        detail = f"{state}: {result.error}"
    else:
        detail = "diverged" if result.diverged else f"test acc {result.accuracy:.2f}%"
    log(f"[sweep] {result.run_id} {detail} ({result.seconds:.0f}s)")
