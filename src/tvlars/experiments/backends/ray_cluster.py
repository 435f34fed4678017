"""The Ray backend: each pending cell is one Ray task on a Ray cluster.

``tvlars sweep PRESET --backend ray [--address ADDR]`` connects to a running cluster
(``auto``, ``host:port`` or ``ray://host:10001``); with no address it starts a Ray
instance on this machine and shuts it down at the end. Each task declares the resources of
one cell (``--cpus-per-cell``, ``--gpus-per-cell``), so Ray places as many cells at once
as the cluster holds. A cell with one GPU trains in the task's process; a cell with G > 1
GPUs starts torchrun over the task's G GPUs
(:mod:`~tvlars.experiments.backends.data_parallel`).

Why plain tasks, not Ray Tune trials or Ray Train's TorchTrainer: a cell already is a
resumable unit with its own run folder, checkpoint and lock, and the runner already
decides what to run and reports; Tune and Train would each bring a second notion of
trials, checkpoints and storage to keep in step with ours. torchrun inside the task is
the same data-parallel code path as a torchrun sweep and the SLURM backend.

Run folders live under ``--out``, which every node must see at the same path (a shared
filesystem): before the first cell, a probe task on each node checks that it sees the
driver's folder and can write to it, and the sweep refuses otherwise. A worker that dies
mid-cell (killed, node lost) makes Ray run the task again, up to ``MAX_RETRIES`` times,
and the cell resumes from its last checkpoint; Ctrl-C on the driver cancels every task
(killing the running ones, whose folders stay resumable) and a rerun finishes the sweep.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tvlars.experiments.backends import BackendError, require_engine
from tvlars.experiments.cell_run import CellResult, CellTask, execute_cell, record_crash

#: How many times Ray reruns a cell whose worker died (each rerun resumes the checkpoint).
MAX_RETRIES = 3
#: The driver's token that each node's probe must read back from --out.
PROBE_FILE = ".ray-probe"
#: How long the driver waits between progress lines while no cell ends.
POLL_SECONDS = 60.0
#: How often the driver looks up from waiting on Ray (to notice Ctrl-C).
WAIT_SECONDS = 0.5


def run_cell_task(task: CellTask, gpus: int) -> CellResult:
    """The body of a cell's Ray task."""
    if gpus > 1:
        from tvlars.experiments.backends.data_parallel import execute_data_parallel

        return execute_data_parallel(task, gpus)
    return execute_cell(task)


def probe_folder(path: str, token: str) -> str | None:
    """On a node: None if it sees the driver's ``path`` (the token the driver wrote there)
    and can write to it, else what is wrong, naming the node."""
    folder, host = Path(path), socket.gethostname()
    try:
        seen = (folder / PROBE_FILE).read_text()
    except OSError:
        seen = None
    if seen != token:
        return (
            f"node {host} does not see the driver's {folder}: --out must be on a "
            "filesystem every node mounts at the same path (NFS, Lustre, GPFS, ...)"
        )
    trial = folder / f".write-test-{host}-{os.getpid()}"
    try:
        trial.write_text("ok\n")
        trial.unlink()
    except OSError as error:
        return f"node {host} cannot write to {folder} ({error.strerror or error})"
    return None


class RayBackend:
    """Cells as Ray tasks of ``cpus`` CPUs (also the cell's threads) and ``gpus`` GPUs."""

    parallel = True

    def __init__(
        self,
        out: str | os.PathLike[str],
        address: str | None = None,
        cpus: int = 1,
        gpus: int = 0,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        if cpus < 1 or gpus < 0:
            raise ValueError("--cpus-per-cell must be >= 1 and --gpus-per-cell >= 0")
        self.ray = require_engine("ray")
        self.out, self.address = Path(out).absolute(), address
        self.cpus, self.gpus, self.threads = cpus, gpus, cpus
        self.poll_seconds = poll_seconds

    def describe(self) -> str:
        where = f"Ray cluster at {self.address}" if self.address else "a local Ray instance"
        return f"on {where}, {self.cpus} CPU(s) and {self.gpus} GPU(s) per cell"

    def run(self, todo, progress, record, log) -> list[str]:
        if not todo:
            return []
        ray = self.ray
        started_here = not ray.is_initialized()
        if started_here:
            # The cells log to their folders; the driver prints only the progress.
            options = {"include_dashboard": False, "log_to_driver": False}
            address = self.address
            if address is None:
                # "local": a new instance, even where `ray start` left one running.
                address, options["num_cpus"] = "local", _local_cores()
            elif address.startswith("ray://"):
                options = {}  # Ray Client takes none of these options
            ray.init(address=address, **options)
        try:
            self._check_shared_folder()
            self._run_tasks(todo, progress, record, log)
        finally:
            if started_here:
                ray.shutdown()
        return []

    def _check_shared_folder(self) -> None:
        """Refuse an --out that a node of the cluster does not see or cannot write."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray, token = self.ray, secrets.token_hex(16)
        marker = self.out / PROBE_FILE
        marker.write_text(token)
        try:
            probe = ray.remote(num_cpus=0, max_retries=0)(probe_folder)
            refs = [
                probe.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                ).remote(str(self.out), token)
                for node in ray.nodes()
                if node.get("Alive")
            ]
            problems = [problem for problem in ray.get(refs) if problem]
        finally:
            marker.unlink(missing_ok=True)
        if problems:
            raise BackendError(
                f"--out {self.out} cannot hold this sweep's run folders: "
                + "; ".join(problems)
                + ". Give --out a folder on storage every node of the cluster can write."
            )

    def _slots(self) -> int:
        """How many cells the cluster runs at once (for the progress line's 'running')."""
        resources = self.ray.cluster_resources()
        slots = math.floor(resources.get("CPU", 0) / self.cpus)
        if self.gpus:
            slots = min(slots, math.floor(resources.get("GPU", 0) / self.gpus))
        return max(slots, 0)

    def _run_tasks(self, todo: Sequence[CellTask], progress, record, log) -> None:
        ray = self.ray
        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=MAX_RETRIES)(
            run_cell_task
        )
        pending = {remote.remote(task, self.gpus): task for task in todo}
        with _ctrl_c_sets_a_flag() as interrupted:
            try:
                last_line = time.monotonic()
                while pending:
                    if interrupted.is_set():
                        raise KeyboardInterrupt
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SECONDS)
                    for ref in ready:
                        task = pending.pop(ref)
                        try:
                            result = ray.get(ref)
                        except ray.exceptions.RayError as error:
                            # Retries exhausted, or the task could not run at all.
                            result = record_crash(
                                task, f"the Ray task running this cell failed: {error}"
                            )
                        record(result)
                    if ready or time.monotonic() - last_line >= self.poll_seconds:
                        progress.running = min(len(pending), self._slots())
                        log(progress.line())
                        last_line = time.monotonic()
            except BaseException:
                # Ctrl-C (or any failure of the driver): stop every cell; the killed ones
                # keep their last checkpoint, and the next sweep resumes them.
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise


@contextlib.contextmanager
def _ctrl_c_sets_a_flag() -> Iterator[threading.Event]:
    """While the driver waits on Ray, Ctrl-C only sets a flag, which the wait loop checks
    between Ray calls: a KeyboardInterrupt raised inside Ray's own code may be lost there."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _local_cores() -> int:
    from tvlars.experiments.runner import available_cores

    return available_cores()
