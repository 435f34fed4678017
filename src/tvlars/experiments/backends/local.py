"""The local backend: cells on this machine, one after another or in a process pool.

``jobs`` > 1 runs cells in spawned worker processes, each with ``threads`` CPU threads, or
one GPU each when ``devices`` lists GPUs. A worker that dies (killed, out of memory) fails
its cell; the other cells in flight are queued again in a new pool.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable, Sequence

from tvlars.experiments.cell_run import (
    CellResult,
    CellTask,
    execute_cell,
    initialize_worker,
    record_crash,
)
from tvlars.experiments.progress import Progress


class LocalBackend:
    """``jobs`` cells at once on this machine; ``execute`` runs one cell (in this process
    when ``jobs`` is 1, else in a spawned worker, where it must be importable)."""

    def __init__(
        self,
        jobs: int = 1,
        threads: int | None = None,
        devices: Sequence[int] | None = None,
        execute: Callable[[CellTask], CellResult] = execute_cell,
    ) -> None:
        self.jobs, self.threads, self.devices, self.execute = jobs, threads, devices, execute

    @property
    def parallel(self) -> bool:
        return self.jobs > 1

    def describe(self) -> str:
        return f"{self.jobs} at a time, {self.threads} thread(s) each"

    def run(self, todo, progress, record, log) -> list[str]:
        if self.jobs <= 1 or len(todo) <= 1:
            for task in todo:
                progress.running = 1
                result = self.execute(task)
                progress.running = 0
                record(result)
                log(progress.line())
        else:
            self._run_in_workers(todo, progress, record, log)
        return []

    def _run_in_workers(self, todo, progress: Progress, record, log) -> None:
        context = multiprocessing.get_context("spawn")
        jobs, devices, device_queue = self.jobs, self.devices, None
        if devices:
            jobs = min(jobs, len(devices))
            device_queue = context.Manager().Queue()

        def new_pool() -> concurrent.futures.ProcessPoolExecutor:
            if device_queue is not None:
                while not device_queue.empty():  # a rebuilt pool hands every GPU out again
                    device_queue.get()
                for device in devices:
                    device_queue.put(device)
            return concurrent.futures.ProcessPoolExecutor(
                max_workers=jobs,
                mp_context=context,
                initializer=initialize_worker,
                initargs=(self.threads, device_queue),
            )

        pool = new_pool()
        pending: dict[concurrent.futures.Future, CellTask] = {}
        queue = list(todo)
        try:
            while queue or pending:
                while queue and len(pending) < jobs:
                    task = queue.pop(0)
                    pending[pool.submit(self.execute, task)] = task
                progress.running = len(pending)
                if sum(progress.outcomes.values()):
                    log(progress.line())
                done, _ = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED
                )
                broken = False
                for future in done:
                    task = pending.pop(future)
                    progress.running = len(pending)
                    try:
                        result = future.result()
                    except concurrent.futures.process.BrokenProcessPool as error:
                        # A worker died (killed, out of memory): its cell counts as failed.
                        result = record_crash(
                            task, f"the worker process running this cell died: {error!r}"
                        )
                        broken = True
                    record(result)
                if broken:
                    # Every other cell in flight died with the pool: queue them again.
                    queue = [pending.pop(f) for f in list(pending)] + queue
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
            log(progress.line())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
