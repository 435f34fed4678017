"""The SLURM backend: one job array for the pending cells, through submitit.

``tvlars sweep PRESET --backend slurm`` submits one array task per pending cell (each
task one node: ``--cpus-per-cell`` CPUs, ``--slurm-gpus-per-node`` GPUs, torchrun over
them when there are several), records the job ids in ``DIR/slurm-jobs.json`` and returns,
printing the job id. Running the same command again reports progress (and submits only
cells that are neither finished nor in a live job); with ``--wait`` it waits for the jobs
and writes the report.

Preemption and time limits: SLURM signals the task (``USR2``) before it stops it; submitit
then calls :meth:`ArrayCell.checkpoint` and requeues the task, which resumes the cell from
its last epoch checkpoint in the run folder. ``cluster="local"`` uses submitit's local
executor (every cell at once as a process on this machine) for testing without SLURM.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from tvlars.experiments.backends import BackendError, require_engine
from tvlars.experiments.backends.shared_storage import check_shared
from tvlars.experiments.cell_run import (
    CellResult,
    CellTask,
    execute_cell,
    record_crash,
    result_from_folder,
    write_json,
)

submitit = require_engine("slurm")

JOBS_FILE = "slurm-jobs.json"
LOGS_DIR = "slurm"
#: SLURM job states after which a job does nothing more for its cell.
ENDED_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
    "FINISHED",
    "INTERRUPTED",
}
QUEUED, RUNNING, ENDED = "queued", "running", "ended"


class ArrayCell(submitit.helpers.Checkpointable):
    """What one array task runs: its cell, on ``gpus`` GPUs of its node."""

    def __init__(self, gpus: int = 0) -> None:
        self.gpus = gpus
        self._torchrun: subprocess.Popen | None = None

    def __call__(self, task: CellTask) -> CellResult:
        if self.gpus > 1:
            from tvlars.experiments.backends.data_parallel import execute_data_parallel

            return execute_data_parallel(task, self.gpus, started=self._keep_torchrun)
        return execute_cell(task)

    def _keep_torchrun(self, process: subprocess.Popen) -> None:
        self._torchrun = process

    def checkpoint(self, task: CellTask):
        """Preempted or out of time: the run folder's checkpoint holds the cell's progress,
        so the requeued task is the same call, which resumes it."""
        if self._torchrun is not None and self._torchrun.poll() is None:
            self._torchrun.terminate()
            self._torchrun.wait()
        return submitit.helpers.DelayedSubmission(ArrayCell(self.gpus), task)

    def __getstate__(self) -> dict:
        return {"gpus": self.gpus}

    def __setstate__(self, state: dict) -> None:
        self.gpus, self._torchrun = state["gpus"], None


def parse_time(text: str) -> float:
    """Minutes in a SLURM time limit: ``MINUTES``, ``HH:MM:SS``, ``MM:SS`` or
    ``DAYS-HH[:MM[:SS]]``."""
    days, _, rest = text.partition("-") if "-" in text else ("0", "", text)
    try:
        parts = [float(p) for p in rest.split(":")]
        day_count = float(days)
    except ValueError:
        raise ValueError(f"--slurm-time {text!r}: use minutes, HH:MM:SS or DAYS-HH:MM:SS") from None
    if "-" in text:
        parts += [0.0] * (3 - len(parts))
        hours, minutes, seconds = parts[:3]
    elif len(parts) == 1:
        hours, minutes, seconds = 0.0, parts[0], 0.0
    elif len(parts) == 2:
        hours, minutes, seconds = 0.0, parts[0], parts[1]
    else:
        hours, minutes, seconds = parts[-3:]
    total = day_count * 1440 + hours * 60 + minutes + seconds / 60
    if total <= 0:
        raise ValueError(f"--slurm-time {text!r} must be positive")
    return total


class SlurmBackend:
    """Cells as tasks of a SLURM job array (or of submitit's local executor)."""

    parallel = False  # the driver may sit on a login node: the jobs prepare the data

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        cluster: str = "slurm",
        cpus: int = 1,
        gpus: int = 0,
        partition: str | None = None,
        account: str | None = None,
        time_limit: str = "24:00:00",
        options: dict[str, str] | None = None,
        name: str = "tvlars",
        wait: bool = False,
        poll_seconds: float = 30.0,
    ) -> None:
        if cluster not in ("slurm", "local"):
            raise ValueError(f"unknown SLURM cluster kind {cluster!r}: slurm or local")
        if cluster == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
            raise BackendError(
                "sbatch or srun is not on PATH: run --backend slurm on a SLURM login node "
                "(or --slurm-cluster local to try it with submitit's local executor)"
            )
        if cpus < 1 or gpus < 0:
            raise ValueError("--cpus-per-cell must be >= 1 and --slurm-gpus-per-node >= 0")
        self.out = Path(out).absolute()
        # The array's tasks run on other nodes: --out must be on storage they all see.
        self.storage_warning = check_shared(self.out) if cluster == "slurm" else None
        self.cluster, self.cpus, self.gpus, self.threads = cluster, cpus, gpus, cpus
        self.partition, self.account, self.options = partition, account, dict(options or {})
        self.timeout_min = parse_time(time_limit)
        self.name, self.wait, self.poll_seconds = name, wait, poll_seconds
        self.jobs: dict[str, object] = {}  # run id -> submitit job submitted by this call

    def describe(self) -> str:
        where = "SLURM" if self.cluster == "slurm" else "submitit's local executor"
        return f"on {where}, {self.cpus} CPU(s) and {self.gpus} GPU(s) per cell"

    # -- submission --------------------------------------------------------------------

    def _executor(self):
        executor = submitit.AutoExecutor(folder=self.out / LOGS_DIR / "%j", cluster=self.cluster)
        parameters = {
            "name": self.name,
            "timeout_min": max(1, round(self.timeout_min)),
            "nodes": 1,
            "tasks_per_node": 1,
            "cpus_per_task": self.cpus,
            "gpus_per_node": self.gpus,
        }
        if self.cluster == "slurm":
            parameters["slurm_additional_parameters"] = self.options
            if self.partition:
                parameters["slurm_partition"] = self.partition
            if self.account:
                parameters["slurm_account"] = self.account
        executor.update_parameters(**parameters)
        return executor

    def _submit(self, tasks: list[CellTask], log) -> dict[str, str]:
        jobs = self._executor().map_array(ArrayCell(self.gpus), tasks)
        ids = {}
        for task, job in zip(tasks, jobs):
            self.jobs[task.cell.run_id()] = job
            ids[task.cell.run_id()] = str(job.job_id)
        array = sorted({job_id.split("_")[0] for job_id in ids.values()})
        if self.cluster == "slurm":
            what = f"SLURM job array {array[0]}"
        else:
            what = "local jobs " + ", ".join(array)
        log(f"[sweep] submitted {len(tasks)} cell(s) as {what}; logs in {self.out / LOGS_DIR}")
        return ids

    def _recorded(self) -> dict[str, dict]:
        path = self.out / JOBS_FILE
        return json.loads(path.read_text())["jobs"] if path.exists() else {}

    def _save(self, jobs: dict[str, dict]) -> None:
        write_json(self.out / JOBS_FILE, {"jobs": jobs})

    # -- job states --------------------------------------------------------------------

    def job_state(self, run_id: str, entry: dict) -> str:
        """Queued, running or ended: the job ``entry`` records for the cell ``run_id``."""
        job = self.jobs.get(run_id)
        if entry["cluster"] == "local":
            return _local_job_state(job, entry["job_id"], self.out / LOGS_DIR)
        if job is None:
            job = submitit.SlurmJob(self.out / LOGS_DIR / "%j", entry["job_id"])
        state = str(job.state).split()[0].upper()
        if state in ENDED_STATES:
            return ENDED
        return RUNNING if state in ("RUNNING", "COMPLETING") else QUEUED

    # -- the backend -------------------------------------------------------------------

    def run(self, todo, progress, record, log) -> list[str]:
        recorded = self._recorded()
        in_flight: dict[str, CellTask] = {}
        to_submit = []
        for task in todo:
            run_id = task.cell.run_id()
            entry = recorded.get(run_id)
            if entry is not None and self.job_state(run_id, entry) != ENDED:
                in_flight[run_id] = task  # a live job of an earlier call runs it
            else:
                to_submit.append(task)
        if in_flight:
            ids = sorted({recorded[r]["job_id"].split("_")[0] for r in in_flight})
            log(f"[sweep] {len(in_flight)} cell(s) still in job(s) {', '.join(ids)}")
        if to_submit:
            if self.storage_warning:
                log(self.storage_warning)
            for run_id, job_id in self._submit(to_submit, log).items():
                recorded[run_id] = {"job_id": job_id, "cluster": self.cluster}
                in_flight[run_id] = next(t for t in to_submit if t.cell.run_id() == run_id)
            self._save(recorded)
        if not self.wait:
            progress.running = sum(self.job_state(r, recorded[r]) == RUNNING for r in in_flight)
            log(progress.line())
            if in_flight:
                log(
                    "[sweep] the jobs run on their own: run the same command again to see "
                    "progress, or add --wait to wait for them and report"
                )
            return list(in_flight)
        self._wait(in_flight, recorded, progress, record, log)
        return []

    def _wait(self, in_flight: dict[str, CellTask], recorded, progress, record, log) -> None:
        """Record each cell once its job has ended (a job that ended without finishing its
        cell fails it, as a dead worker does in the local backend)."""
        while in_flight:
            states = {r: self.job_state(r, recorded[r]) for r in in_flight}
            for run_id, state in states.items():
                if state != ENDED:
                    continue
                task = in_flight.pop(run_id)
                result = result_from_folder(run_id, Path(task.folder))
                if result is None:
                    result = record_crash(
                        task,
                        f"job {recorded[run_id]['job_id']} ended without finishing the cell; "
                        f"see its log in {self.out / LOGS_DIR}",
                    )
                record(result)
            progress.running = sum(s == RUNNING for r, s in states.items() if r in in_flight)
            if any(s == ENDED for s in states.values()):
                log(progress.line())
            if in_flight:
                time.sleep(self.poll_seconds)


def _local_job_state(job, job_id: str, logs: Path) -> str:
    """A local executor's job: its controller process (the job id is its pid) runs until
    the task ends; a later call, which holds no handle on it, looks the pid up."""
    if job is not None:
        return ENDED if job.done() else RUNNING
    if (logs / job_id / f"{job_id}_0_result.pkl").exists():
        return ENDED
    try:
        stat = Path(f"/proc/{int(job_id)}/stat").read_text()
    except (OSError, ValueError):
        return ENDED
    # A zombie (ended, not yet reaped by its parent) has ended too.
    return ENDED if stat.rsplit(")", 1)[-1].split()[0] == "Z" else RUNNING
