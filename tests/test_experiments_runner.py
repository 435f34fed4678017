"""The sweep runner: skip, resume, retry, keep going past failures, the lock, progress."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
from collections.abc import Iterator

import pytest
from processes import free_port, join_as_torchrun_rank

from tvlars.experiments.cell_run import (
    ERROR_FILE,
    FAILED,
    FINISHED,
    CellResult,
    CellTask,
    cell_folder,
    cell_state,
    execute_cell,
)
from tvlars.experiments.grid import SweepSpec, expand
from tvlars.experiments.lock import SweepLocked, sweep_lock
from tvlars.experiments.progress import Progress
from tvlars.experiments.runner import run_sweep, threads_per_cell

TINY = {
    "num_samples": 1000,
    "model": "mnist1d-cnn",
    "epochs": 2,
    "telemetry_every": 1,
}


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_cells(methods=("WA-LARS", "NOWA-LARS", "TVLARS"), lrs=(1.0,)):
    return expand(SweepSpec(name="t", methods=methods, batches={128: lrs}, base=dict(TINY)))


class FakeRunner:
    """Stands in for training: writes the files a run leaves, records the calls, and can
    fail, diverge, or be 'killed' (KeyboardInterrupt) at a chosen call."""

    def __init__(self, fail=(), diverge=(), kill_at=None, partial_at=None):
        self.calls: list[str] = []
        self.fail, self.diverge = set(fail), set(diverge)
        self.kill_at, self.partial_at = kill_at, partial_at

    def __call__(self, task: CellTask) -> CellResult:
        from pathlib import Path

        folder = Path(task.folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.calls.append(task.cell.run_id())
        if len(self.calls) == self.partial_at:
            (folder / "checkpoint.pt").write_bytes(b"half-way")
        if len(self.calls) == self.kill_at:
            raise KeyboardInterrupt
        (folder / ERROR_FILE).unlink(missing_ok=True)
        if task.cell.method in self.fail:
            (folder / ERROR_FILE).write_text("Traceback: boom\n")
            return CellResult(task.cell.run_id(), FAILED, error="boom")
        diverged = task.cell.method in self.diverge
        summary = {"final_test_acc": 50.0, "best_test_acc": 55.0, "diverged": diverged}
        (folder / "summary.json").write_text(json.dumps(summary))
        return CellResult(task.cell.run_id(), FINISHED, diverged=diverged, accuracy=50.0)


def quiet(message: str) -> None:
    pass


def test_every_cell_runs_once_into_a_folder_named_by_its_run_id(tmp_path):
    cells, fake = tiny_cells(), FakeRunner()
    outcome = run_sweep(cells, tmp_path, execute=fake, log=quiet)
    assert fake.calls == [c.run_id() for c in cells]
    assert all(cell_state(cell_folder(tmp_path, c)) == FINISHED for c in cells)
    assert outcome.counts() == {"finished": 3}


def test_a_rerun_skips_finished_cells(tmp_path):
    cells = tiny_cells()
    run_sweep(cells, tmp_path, execute=FakeRunner(), log=quiet)
    again = FakeRunner()
    outcome = run_sweep(cells, tmp_path, execute=again, log=quiet)
    assert again.calls == []
    assert outcome.counts() == {"finished": 3}


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path):
    cells, fake = tiny_cells(), FakeRunner(fail={"NOWA-LARS"}, diverge={"TVLARS"})
    outcome = run_sweep(cells, tmp_path, execute=fake, log=quiet)
    assert len(fake.calls) == 3
    assert outcome.counts() == {"finished": 1, "failed": 1, "diverged": 1}


def test_failed_cells_are_retried_only_when_asked(tmp_path):
    cells = tiny_cells()
    run_sweep(cells, tmp_path, execute=FakeRunner(fail={"NOWA-LARS"}), log=quiet)
    plain = FakeRunner()
    outcome = run_sweep(cells, tmp_path, execute=plain, log=quiet)
    assert plain.calls == [] and outcome.counts()["skipped-failed"] == 1
    retry = FakeRunner()
    outcome = run_sweep(cells, tmp_path, execute=retry, retry_failed=True, log=quiet)
    (failed,) = [c for c in cells if c.method == "NOWA-LARS"]
    assert retry.calls == [failed.run_id()]
    assert outcome.counts() == {"finished": 3}


def test_a_sweep_killed_midway_resumes_where_it_stopped(tmp_path):
    cells = tiny_cells()
    killed = FakeRunner(kill_at=2, partial_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells, tmp_path, execute=killed, log=quiet)
    states = [cell_state(cell_folder(tmp_path, c)) for c in cells]
    assert states == ["finished", "partial", "new"]
    resumed = FakeRunner()
    run_sweep(cells, tmp_path, execute=resumed, log=quiet)
    assert resumed.calls == [cells[1].run_id(), cells[2].run_id()]


def test_the_lock_is_released_when_a_sweep_is_interrupted(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny_cells(), tmp_path, execute=FakeRunner(kill_at=1), log=quiet)
    with sweep_lock(tmp_path):
        pass


@contextlib.contextmanager
def another_process_holds_the_sweep_lock(folder) -> Iterator[int]:
    """A second process holding ``folder``'s sweep lock for the block; yields its pid."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from tvlars.experiments.lock import sweep_lock\n"
            f"with sweep_lock({str(folder)!r}):\n    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_second_sweep_on_a_locked_folder_refuses(tmp_path):
    with another_process_holds_the_sweep_lock(tmp_path):
        fake = FakeRunner()
        with pytest.raises(SweepLocked, match="in use by another sweep"):
            run_sweep(tiny_cells(), tmp_path, execute=fake, log=quiet)
        assert fake.calls == []


def test_tvlars_sweep_on_a_locked_folder_exits_with_status_2_naming_the_holder(tmp_path):
    from tvlars.cli import main

    with another_process_holds_the_sweep_lock(tmp_path) as holder_pid:
        with pytest.raises(SystemExit) as refused:
            main(["sweep", "quick", "--out", str(tmp_path), "--no-report"])
        assert refused.value.code == 2
        assert "in use by another sweep" in str(refused.value)
        assert f"pid {holder_pid}" in str(refused.value)
        assert not list((tmp_path / "runs").iterdir())


def test_a_real_cell_trains_and_a_raising_cell_leaves_its_traceback(tmp_path):
    good, bad = tiny_cells(methods=("TVLARS",), lrs=(1.0, 2.0))
    result = execute_cell(CellTask(good, str(cell_folder(tmp_path, good)), threads=1))
    assert result.state == FINISHED
    folder = cell_folder(tmp_path, good)
    summary = json.loads((folder / "summary.json").read_text())
    cell = json.loads((folder / "cell.json").read_text())
    assert summary["run_id"] == good.run_id() == cell["run_id"]
    assert cell["method"] == "TVLARS"
    import dataclasses

    broken = dataclasses.replace(bad, config=dataclasses.replace(bad.config, batch_size=10**6))
    result = execute_cell(CellTask(broken, str(tmp_path / "broken"), threads=1))
    assert result.state == FAILED
    assert "Traceback" in (tmp_path / "broken" / ERROR_FILE).read_text()


def test_threads_are_split_between_parallel_cells():
    assert threads_per_cell(2, cores=2) == 1
    assert threads_per_cell(1, cores=8) == 8
    assert threads_per_cell(16, cores=8) == 1


def test_progress_counts_cells_and_estimates_the_time_left():
    now = [0.0]
    progress = Progress(total=10, done_before=2, clock=lambda: now[0])
    progress.running = 2
    assert "2/10 done" in progress.line() and "ETA unknown" in progress.line()
    now[0] = 60.0
    progress.outcomes["finished"] += 2
    progress.running = 2
    # 2 cells in 60 s: 30 s each, 4 left + 2 running
    assert progress.eta_seconds() == pytest.approx(180.0)
    assert "4/10 done" in progress.line() and "2 running, 4 left" in progress.line()


def test_the_sweep_command_runs_a_toml_grid_in_parallel_and_reports(tmp_path, capsys):
    from tvlars.cli import main

    grid = tmp_path / "grid.toml"
    grid.write_text(
        'methods = ["WA-LARS", "TVLARS"]\n[batches]\n128 = [1.0]\n'
        '[base]\nnum_samples = 1000\nmodel = "mnist1d-cnn"\nepochs = 1\n'
    )
    out = tmp_path / "sweep"
    assert main(["sweep", str(grid), "--out", str(out), "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2/2 done" in printed
    assert len(list((out / "runs").glob("*/summary.json"))) == 2
    assert (out / "report.md").exists() and (out / "table.csv").exists()
    assert main(["sweep", str(grid), "--out", str(out), "--no-report"]) == 0
    assert "0 to run" in capsys.readouterr().out


def test_the_sweep_folder_defaults_to_sweeps_slash_the_grid_name(tmp_path, capsys, monkeypatch):
    from tvlars.cli import main

    grid = tmp_path / "tiny-grid.toml"
    grid.write_text(
        'methods = ["TVLARS"]\n[batches]\n128 = [1.0]\n'
        '[base]\nnum_samples = 1000\nmodel = "mnist1d-cnn"\nepochs = 1\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(grid)]) == 0
    assert len(list((tmp_path / "sweeps" / "tiny-grid" / "runs").glob("*/summary.json"))) == 1
    assert "report: sweeps/tiny-grid/report.md" in capsys.readouterr().out


def barlow_twins_cell(method: str):
    """A one-epoch Barlow Twins cell (one epoch of linear probing) on 1,000 signals."""
    pytest.importorskip("tvlars.pretrain")
    spec = SweepSpec(
        name="bt",
        methods=(method,),
        batches={128: (1.0,)},
        tasks=("barlow-twins",),
        base=dict(TINY, epochs=1),
        pretrain={"eval_epochs": 1},
    )
    (cell,) = expand(spec)
    return cell


def test_a_barlow_twins_cell_pretrains_and_evaluates_when_pretrain_is_installed(tmp_path):
    cell = barlow_twins_cell("TVLARS")
    assert cell.run_id().startswith("bt-")
    outcome = run_sweep([cell], tmp_path, log=quiet)
    assert outcome.counts() == {"finished": 1}, (tmp_path / "runs").glob("*/error.txt")
    summary = json.loads((cell_folder(tmp_path, cell) / "summary.json").read_text())
    assert summary["task"] == "barlow-twins"
    # The cell's result is the linear probe's accuracy on 200 MNIST-1D test signals: ten
    # classes, chance is 10% (one standard deviation 2.1 points); one epoch of each stage
    # reaches 20%.
    assert summary["final_test_acc"] == summary["linear_acc"] > 15


def test_the_report_reads_a_finished_barlow_twins_cell_with_its_probe_accuracy(tmp_path):
    from tvlars.experiments.records import read_runs

    cell = barlow_twins_cell("WA-LARS")
    assert run_sweep([cell], tmp_path, log=quiet).counts() == {"finished": 1}
    summary = json.loads((cell_folder(tmp_path, cell) / "summary.json").read_text())
    (run,) = read_runs(tmp_path)
    assert (run.state, run.error) == ("finished", "")
    assert (run.task, run.method) == ("barlow-twins", "WA-LARS")
    assert run.final_acc == summary["linear_acc"]
    random_backbone = summary["random_init_linear_acc"]
    assert run.random_acc == random_backbone or math.isnan(run.random_acc + random_backbone)


def _torchrun_sweep_worker(rank: int, port: int, grid: str, out: str, cache: str) -> None:
    join_as_torchrun_rank(rank, port, TVLARS_CACHE=cache, OMP_NUM_THREADS="1")
    from tvlars.cli import main

    assert main(["sweep", grid, "--out", out, "--no-report"]) == 0


def test_under_torchrun_every_cell_is_trained_by_all_processes_together(tmp_path):
    import os

    import torch.multiprocessing as mp

    grid = tmp_path / "grid.toml"
    grid.write_text(
        'methods = ["WA-LARS", "TVLARS"]\n[batches]\n128 = [1.0]\n'
        '[base]\nnum_samples = 1000\nmodel = "mnist1d-cnn"\nepochs = 1\n'
    )
    out = tmp_path / "sweep"

    def sweep_with_two_processes() -> None:
        args = (free_port(), str(grid), str(out), os.environ["TVLARS_CACHE"])
        mp.start_processes(
            _torchrun_sweep_worker, args=args, nprocs=2, join=True, start_method="spawn"
        )

    sweep_with_two_processes()
    summaries = [json.loads(p.read_text()) for p in (out / "runs").glob("*/summary.json")]
    assert len(summaries) == 2
    assert all(summary["world_size"] == 2 for summary in summaries)
    assert json.loads((out / "sweep.json").read_text())["presets"][0]["name"] == "grid"
    # A second torchrun sweep finds every cell finished and trains nothing.
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}
    sweep_with_two_processes()
    assert {p: p.stat().st_mtime_ns for p in before} == before
