"""The Ray backend of ``tvlars sweep``: cells as Ray tasks on a local Ray instance."""

from __future__ import annotations

import pytest
from sweeps import (
    KillAfterFirstEpoch,
    assert_same_runs,
    interruptible_cells,
    lock_holder,
    quiet,
    reference_sweep,
    table_of,
    tiny_cells,
)

from tvlars.experiments.backends import BackendError
from tvlars.experiments.cell_run import cell_folder
from tvlars.experiments.runner import run_sweep

ray = pytest.importorskip("ray")
from tvlars.experiments.backends import ray_cluster  # noqa: E402 - needs ray

RayBackend = ray_cluster.RayBackend


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def two_cpu_cluster():
    """One local Ray instance of 2 CPUs for the tests that need no fresh one."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_the_sweep_command_on_its_own_ray_instance_gives_the_local_table(
    tmp_path, tmp_path_factory, capsys
):
    from tvlars.cli import main

    assert not ray.is_initialized()
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'methods = ["WA-LARS", "NOWA-LARS", "TVLARS"]\n[batches]\n128 = [0.5]\n'
        '[base]\nnum_samples = 2000\nmodel = "mnist1d-cnn"\nepochs = 2\n'
    )
    out = tmp_path / "ray"
    assert main(["sweep", str(grid), "--out", str(out), "--backend", "ray", "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert "local Ray instance" in printed
    assert "3/3 done (3 finished this session), 0 running, 0 left" in printed
    assert not ray.is_initialized()  # the instance it started is shut down

    local = reference_sweep(tiny_cells(), tmp_path_factory.getbasetemp())
    assert table_of(local) == table_of(out)
    assert_same_runs(local, out)


def test_a_ray_worker_killed_mid_cell_is_retried_and_resumes_to_the_uninterrupted_result(
    tmp_path, tmp_path_factory, two_cpu_cluster
):
    cells = interruptible_cells()
    whole = reference_sweep(cells, tmp_path_factory.getbasetemp())

    out = tmp_path / "killed"
    killer = KillAfterFirstEpoch(cell_folder(out, cells[0]))
    killer.start()
    outcome = run_sweep(cells, out, backend=RayBackend(out, cpus=1), log=quiet)
    killer.join()

    assert killer.killed is not None
    assert lock_holder(cell_folder(out, cells[0])) != killer.killed  # a second worker ran it
    assert "resuming" in (cell_folder(out, cells[0]) / "train.log").read_text()
    assert outcome.counts() == {"finished": 1}
    assert_same_runs(whole, out)
    assert table_of(whole) == table_of(out)


def test_a_rerun_on_ray_skips_the_finished_cells(tmp_path, two_cpu_cluster):
    cells = tiny_cells(methods=("WA-LARS",), epochs=1)
    run_sweep(cells, tmp_path, backend=RayBackend(tmp_path), log=quiet)
    lines = []
    outcome = run_sweep(cells, tmp_path, backend=RayBackend(tmp_path), log=lines.append)
    assert outcome.counts() == {"finished": 1}
    assert "1 cells: 0 to run; already 1 finished" in lines[0]


def test_an_out_folder_a_node_does_not_see_is_refused_before_any_cell(
    tmp_path, two_cpu_cluster, monkeypatch
):
    # The driver writes its token where no node looks: as if --out were a folder local
    # to the driver's machine.
    monkeypatch.setattr(ray_cluster, "PROBE_FILE", ".elsewhere")
    with pytest.raises(BackendError, match="does not see the driver's .* every node mounts"):
        run_sweep(tiny_cells(), tmp_path, backend=RayBackend(tmp_path), log=quiet)
    assert not (tmp_path / "runs").exists()


def test_the_probe_names_a_folder_a_node_cannot_write(tmp_path):
    import os
    import socket

    (tmp_path / ray_cluster.PROBE_FILE).write_text("token")
    assert ray_cluster.probe_folder(str(tmp_path), "token") is None
    (tmp_path / f".write-test-{socket.gethostname()}-{os.getpid()}").mkdir()  # blocks the write
    assert "cannot write to" in ray_cluster.probe_folder(str(tmp_path), "token")
    assert "does not see" in ray_cluster.probe_folder(str(tmp_path), "another token")


def test_ctrl_c_on_the_driver_stops_the_cells_and_leaves_them_resumable(tmp_path, two_cpu_cluster):
    import os
    import signal
    import time

    cells = interruptible_cells()
    folder = cell_folder(tmp_path, cells[0])
    ctrl_c = KillAfterFirstEpoch(folder, signum=signal.SIGINT)
    # Ctrl-C goes to the driver (this process); the lock names the worker to watch.
    ctrl_c.send = lambda worker, signum: os.kill(os.getpid(), signum)
    ctrl_c.start()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells, tmp_path, backend=RayBackend(tmp_path), log=quiet)
    ctrl_c.join()

    worker = ctrl_c.killed
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{worker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{worker}")  # the cancelled task's worker is gone
    assert (folder / "checkpoint.pt").exists() and not (folder / "summary.json").exists()

    outcome = run_sweep(cells, tmp_path, backend=RayBackend(tmp_path), log=quiet)
    assert outcome.counts() == {"finished": 1}
    assert "resuming" in (folder / "train.log").read_text()
