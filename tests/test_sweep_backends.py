"""Choosing a sweep backend: a missing engine fails at once with the line that installs it."""

from __future__ import annotations

import sys

import pytest

from tvlars.cli import main


@pytest.mark.parametrize(("backend", "module"), [("ray", "ray"), ("slurm", "submitit")])
def test_a_backend_whose_extra_is_missing_fails_at_once_with_the_pip_line(
    tmp_path, monkeypatch, backend, module
):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "quick", "--out", str(tmp_path), "--backend", backend])
    message = str(exit_info.value)
    assert f'pip install "tvlars[{backend}]"' in message
    assert module in message
    assert not any(tmp_path.iterdir())  # nothing started


def test_an_sbatch_option_without_a_value_is_refused(tmp_path):
    pytest.importorskip("submitit")
    command = ["sweep", "quick", "--out", str(tmp_path), "--backend", "slurm"]
    command += ["--slurm-cluster", "local", "--slurm-option", "qos"]
    with pytest.raises(SystemExit, match="--slurm-option 'qos': expected KEY=VALUE"):
        main(command)


def test_a_ray_sweep_under_torchrun_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit, match="--backend ray does not run under torchrun"):
        main(["sweep", "quick", "--out", str(tmp_path), "--backend", "ray"])


def test_a_cell_given_several_processes_trains_data_parallel_under_torchrun(tmp_path):
    import json

    from sweeps import tiny_cells

    from tvlars.experiments.backends.data_parallel import execute_data_parallel
    from tvlars.experiments.cell_run import FINISHED, CellTask, cell_folder

    cell = tiny_cells(methods=("TVLARS",), epochs=1, device="cpu")[0]
    folder = cell_folder(tmp_path, cell)
    result = execute_data_parallel(CellTask(cell, str(folder), threads=2), processes=2)
    assert result.state == FINISHED and result.run_id == cell.run_id()
    assert json.loads((folder / "summary.json").read_text())["world_size"] == 2


def test_a_cell_travels_to_torchrun_as_json_and_keeps_its_run_id(tmp_path):
    from sweeps import TINY

    from tvlars.experiments.backends.data_parallel import task_from_json, task_to_json
    from tvlars.experiments.cell_run import CellTask, cell_folder
    from tvlars.experiments.grid import SweepSpec, expand

    # tv_decay is a grid axis (a sweep's base may not set it): a cell with one set travels too.
    spec = SweepSpec(
        name="t", methods=("WA-LARS", "TVLARS"), batches={128: (0.5,)}, tv_decays=(2.0,), base=TINY
    )
    for cell in expand(spec):
        task = CellTask(cell, str(cell_folder(tmp_path, cell)), threads=3)
        assert task_from_json(task_to_json(task)) == task
    moved = task_to_json(task) | {"folder": str(tmp_path / "runs" / "0123456789ab")}
    with pytest.raises(ValueError, match="describes run .*, not 0123456789ab"):
        task_from_json(moved)


# -- the SLURM backend's --out: on storage every node sees -----------------------------------


def mount_table(tmp_path, *mounts: tuple[str, str]):
    """A /proc/self/mounts of (mount point, filesystem type) lines."""
    table = tmp_path / "mounts"
    table.write_text(
        "".join(f"dev{i} {point.replace(' ', chr(92) + '040')} {kind} rw 0 0\n"
                for i, (point, kind) in enumerate(mounts))
    )  # fmt: skip
    return table


def test_the_filesystem_of_a_folder_is_that_of_its_longest_mount_point(tmp_path):
    from tvlars.experiments.backends.shared_storage import filesystem_type

    table = mount_table(
        tmp_path, ("/", "ext4"), ("/scratch", "lustre"), ("/scratch/my lab", "nfs4")
    )
    assert filesystem_type("/scratch/x/y", table) == "lustre"
    assert filesystem_type("/scratch/my lab/sweeps", table) == "nfs4"
    assert filesystem_type("/scratchpad", table) == "ext4"
    assert filesystem_type("/scratch", tmp_path / "no such table") is None


def test_a_slurm_sweep_folder_in_memory_is_refused_naming_the_fix(tmp_path):
    from tvlars.experiments.backends import BackendError
    from tvlars.experiments.backends.shared_storage import check_shared

    table = mount_table(tmp_path, ("/", "ext4"), ("/dev/shm", "tmpfs"))
    with pytest.raises(BackendError, match="on tmpfs, held in this machine's memory") as refused:
        check_shared("/dev/shm/sweep", table)
    assert "storage every node mounts" in str(refused.value)


@pytest.mark.parametrize("kind", ["nfs4", "lustre", "gpfs", "beegfs", "fuse.sshfs"])
def test_a_slurm_sweep_folder_on_shared_storage_passes(tmp_path, kind):
    from tvlars.experiments.backends.shared_storage import check_shared

    table = mount_table(tmp_path, ("/", "ext4"), ("/home", kind))
    assert check_shared("/home/me/sweeps/cpu", table) is None


def test_a_slurm_sweep_folder_on_a_local_disk_gets_a_warning(tmp_path):
    from tvlars.experiments.backends.shared_storage import check_shared

    table = mount_table(tmp_path, ("/", "xfs"))
    warning = check_shared("/data/sweeps", table)
    assert warning.startswith("[sweep] warning: --out /data/sweeps is on a filesystem of type xfs")


def test_tvlars_sweep_on_slurm_refuses_an_out_in_memory_before_submitting(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from tvlars.experiments.backends import shared_storage, slurm

    monkeypatch.setattr(slurm.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(shared_storage, "MOUNTS", mount_table(tmp_path, ("/", "tmpfs")))
    out = tmp_path / "sweep"
    with pytest.raises(SystemExit) as refused:
        main(["sweep", "quick", "--out", str(out), "--backend", "slurm"])
    assert refused.value.code == 2
    assert f"--out {out} is on tmpfs" in str(refused.value)
    assert not (out / slurm.JOBS_FILE).exists()
