"""The SLURM backend of ``tvlars sweep``, run with submitit's local executor."""

from __future__ import annotations

import signal

import pytest
from sweeps import (
    KillAfterFirstEpoch,
    assert_same_runs,
    interruptible_cells,
    quiet,
    reference_sweep,
    table_of,
    tiny_cells,
)

from tvlars.experiments.backends import BackendError
from tvlars.experiments.cell_run import cell_folder
from tvlars.experiments.runner import run_sweep

pytest.importorskip("submitit")
from tvlars.experiments.backends import slurm  # noqa: E402 - needs submitit

GRID = (
    'methods = ["WA-LARS", "TVLARS"]\n[batches]\n128 = [0.5]\n'
    '[base]\nnum_samples = 1000\nmodel = "mnist1d-cnn"\nepochs = 1\n'
)


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def local_array(out, **options):
    return slurm.SlurmBackend(out, cluster="local", poll_seconds=0.2, **options)


def test_a_job_array_on_the_local_executor_gives_the_local_table(tmp_path, tmp_path_factory):
    cells = tiny_cells()
    outcome = run_sweep(
        cells, tmp_path / "array", backend=local_array(tmp_path / "array", wait=True), log=quiet
    )
    assert outcome.counts() == {"finished": 3}
    local = reference_sweep(cells, tmp_path_factory.getbasetemp())
    assert table_of(local) == table_of(tmp_path / "array")
    assert_same_runs(local, tmp_path / "array")


def test_the_command_returns_after_submitting_and_a_later_wait_reports(tmp_path, capsys):
    from tvlars.cli import main

    grid, out = tmp_path / "grid.toml", tmp_path / "sweep"
    grid.write_text(GRID)
    command = ["sweep", str(grid), "--out", str(out), "--backend", "slurm"]
    command += ["--slurm-cluster", "local"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "submitted 2 cell(s) as local jobs" in printed
    assert "run the same command again" in printed
    assert not (out / "report.md").exists()

    assert main(command + ["--wait"]) == 0
    printed = capsys.readouterr().out
    # The cells still run in the jobs of the first call, or have finished: none is
    # submitted twice.
    assert "submitted" not in printed
    assert "finished: 2 finished" in printed and (out / "report.md").exists()

    assert main(command) == 0
    assert "0 to run; already 2 finished" in capsys.readouterr().out


def test_a_preempted_array_task_is_requeued_and_resumes_to_the_uninterrupted_result(
    tmp_path, tmp_path_factory
):
    cells = interruptible_cells()
    whole = reference_sweep(cells, tmp_path_factory.getbasetemp())

    out = tmp_path / "preempted"
    # SLURM's warning before preemption or the time limit: USR2 to the task's process.
    killer = KillAfterFirstEpoch(cell_folder(out, cells[0]), signum=signal.SIGUSR2)
    killer.start()
    outcome = run_sweep(cells, out, backend=local_array(out, wait=True), log=quiet)
    killer.join()

    assert killer.killed is not None
    assert "resuming" in (cell_folder(out, cells[0]) / "train.log").read_text()
    assert outcome.counts() == {"finished": 1}
    assert_same_runs(whole, out)


def test_a_job_that_ends_without_its_cell_fails_the_cell(tmp_path):
    cells = interruptible_cells()
    killer = KillAfterFirstEpoch(cell_folder(tmp_path, cells[0]), signum=signal.SIGKILL)
    killer.start()
    outcome = run_sweep(cells, tmp_path, backend=local_array(tmp_path, wait=True), log=quiet)
    killer.join()
    assert killer.killed is not None
    assert outcome.counts() == {"failed": 1}
    assert (
        "ended without finishing the cell"
        in (cell_folder(tmp_path, cells[0]) / "error.txt").read_text()
    )


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("90", 90), ("1:30:00", 90), ("30:00", 30), ("2-00:00:00", 2880), ("1-12", 2160)],
)
def test_a_slurm_time_limit_is_read_as_sbatch_reads_it(text, minutes):
    assert slurm.parse_time(text) == pytest.approx(minutes)


def test_a_malformed_time_limit_is_refused():
    with pytest.raises(ValueError, match="--slurm-time 'soon'"):
        slurm.parse_time("soon")


def test_without_sbatch_the_slurm_cluster_is_refused_with_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendError, match="sbatch or srun is not on PATH.*--slurm-cluster local"):
        slurm.SlurmBackend(tmp_path, cluster="slurm")


def test_the_slurm_flags_reach_the_array_tasks_sbatch_script(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("sbatch", "srun"):
        (fake_bin / name).write_text("#!/bin/sh\nexit 1\n")
        (fake_bin / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{__import__('os').environ['PATH']}")
    backend = slurm.SlurmBackend(
        tmp_path / "sweep",
        cpus=8,
        gpus=4,
        partition="gpu",
        account="myproject",
        time_limit="1-00:00:00",
        options={"qos": "high", "constraint": "a100"},
        name="tvlars-paper-cifar10",
    )
    script = backend._executor()._executor._make_submission_file_text("python -m x", "uid")
    for line in [
        "#SBATCH --partition=gpu",
        "#SBATCH --account=myproject",
        "#SBATCH --time=1440",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --nodes=1",
        "#SBATCH --qos=high",
        "#SBATCH --constraint=a100",
        "#SBATCH --job-name=tvlars-paper-cifar10",
        "#SBATCH --signal=USR2@90",  # the warning that checkpoints and requeues a task
    ]:
        assert line in script, line


def test_a_cell_in_a_live_job_is_not_submitted_again_and_one_whose_job_died_is(tmp_path):
    import json
    import subprocess

    cells = tiny_cells(methods=("WA-LARS", "TVLARS"), epochs=1)
    in_job, dead = cells[0].run_id(), cells[1].run_id()
    job = subprocess.Popen(["sleep", "60"])  # stands for the live job's controller
    try:
        (tmp_path / slurm.JOBS_FILE).write_text(
            json.dumps(
                {
                    "jobs": {
                        in_job: {"job_id": str(job.pid), "cluster": "local"},
                        dead: {"job_id": "999999999", "cluster": "local"},
                    }
                }
            )
        )
        backend = local_array(tmp_path)
        submitted = []
        backend._submit = lambda tasks, log: {
            t.cell.run_id(): submitted.append(t.cell.run_id()) or "4242" for t in tasks
        }
        lines = []
        outcome = run_sweep(cells, tmp_path, backend=backend, log=lines.append)
        assert submitted == [dead]
        assert outcome.counts() == {"submitted": 2}
        assert f"1 cell(s) still in job(s) {job.pid}" in "\n".join(lines)
    finally:
        job.kill()
        job.wait()
