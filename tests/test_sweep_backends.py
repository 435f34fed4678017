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
