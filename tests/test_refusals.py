"""Bad input and simple faults: a clear one-paragraph refusal (exit status 2, no traceback,
naming the flag, key or file) or the right result, never a silently wrong one; and in every
refused case the run folder's files are left byte for byte as they were."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest

from tvlars.cli import main
from tvlars.errors import EXIT_USAGE, UserError
from tvlars.experiments.cell_run import FAILED, RUNS_DIR, CellTask, execute_cell
from tvlars.experiments.custom import load_toml
from tvlars.experiments.grid import SweepSpec, expand
from tvlars.experiments.report import write_report
from tvlars.folder_lock import LOCK_NAME
from tvlars.pretrain.config import PretrainConfig
from tvlars.train import RunConfig
from tvlars.train.run_folder import RunFolder

TINY = [
    "--num-samples",
    "1000",
    "--model",
    "mnist1d-cnn",
    "--batch-size",
    "128",
    "--epochs",
    "2",
    "--threads",
    "1",
]


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished run folder of ``tvlars train TINY`` (copied by the tests that use it)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    os.environ.setdefault("TVLARS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    assert main(["train", *TINY, "--out", str(folder)]) == 0
    return folder


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    (copy / LOCK_NAME).unlink(missing_ok=True)
    return copy


@pytest.fixture
def unfinished_run(run_copy) -> Path:
    """The finished run as a run killed after its last checkpoint leaves it."""
    (run_copy / "summary.json").unlink()
    return run_copy


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (the lock file aside: it is the lock)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != LOCK_NAME
    }


def refused(argv: list[str], capsys) -> str:
    """Run ``tvlars argv``; check it exits with status 2 and no traceback; return stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == EXIT_USAGE
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert captured.err.startswith(f"tvlars {argv[0]}: ")
    return captured.err


# -- silently wrong before: a folder of another run, values of the wrong type, --set --------


def test_a_finished_run_folder_refuses_other_settings_and_is_left_as_it_was(run_copy, capsys):
    before = snapshot(run_copy)
    message = refused(["train", *TINY, "--lr", "0.5", "--out", str(run_copy)], capsys)
    assert "settings differ" in message and str(run_copy) in message
    assert snapshot(run_copy) == before


def test_a_finished_run_folder_with_the_same_settings_reports_its_result(run_copy, capsys):
    before = snapshot(run_copy)
    assert main(["train", *TINY, "--out", str(run_copy)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert snapshot(run_copy) == before


def test_a_string_for_a_boolean_in_a_toml_config_is_refused(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('compile = "false"\n')
    argv = ["train", *TINY, "--config", str(toml), "--out", str(tmp_path / "r")]
    message = refused(argv, capsys)
    assert str(toml) in message and "compile = 'false'" in message and "boolean" in message
    assert not (tmp_path / "r").exists()


def test_a_fraction_for_an_integer_in_a_toml_config_is_refused(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text("epochs = 1.5\n")
    message = refused(["train", *TINY[:-4], "--config", str(toml), "--out", str(tmp_path)], capsys)
    assert str(toml) in message and "epochs = 1.5" in message and "integer" in message


def _wrong_value(expected) -> object:
    """A value of another type than ``expected`` accepts."""
    options = typing.get_args(expected) or (expected,)
    if bool in options:
        return "false"
    if int in options:
        return 1.5
    if float in options or dict in options or typing.get_origin(expected) is dict:
        return "1e-3"
    return 3  # a str field


@pytest.mark.parametrize("config_class", [RunConfig, PretrainConfig])
def test_every_config_key_is_checked_against_its_type(config_class):
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        value = _wrong_value(hints[field.name])
        with pytest.raises(UserError, match=f"file.toml: {field.name} = {value!r} is"):
            config_class.from_dict({field.name: value}, "file.toml")


def test_numbers_of_either_kind_are_taken_for_a_float_key():
    assert RunConfig.from_dict({"lr": 1, "weight_decay": 5e-4}).lr == 1


def test_a_set_value_of_the_wrong_type_is_refused(capsys):
    message = refused(["sweep", "quick", "--set", 'compile="false"', "--dry-run"], capsys)
    assert "--set" in message and "compile" in message and "boolean" in message


def test_set_of_keys_the_grid_sets_is_refused_by_name(capsys):
    argv = ["sweep", "quick", "--set", "lr=0.5", "--set", "batch_size=256", "--dry-run"]
    message = refused([*argv, "--set", "optimizer=sgd"], capsys)
    assert "lr, batch_size, optimizer" in message and "TOML" in message


def test_set_of_the_seed_points_to_seeds(capsys):
    assert "--seeds" in refused(["sweep", "quick", "--set", "seed=3", "--dry-run"], capsys)


def test_set_of_other_keys_changes_every_cell_and_its_id(capsys):
    assert main(["sweep", "quick", "--dry-run"]) == 0
    plain = capsys.readouterr().out.split()
    assert main(["sweep", "quick", "--set", "epochs=1", "--dry-run"]) == 0
    changed = capsys.readouterr().out.split()
    assert "epochs=1" not in plain and len(plain) == len(changed) and plain[0] != changed[0]


def test_a_missing_sweep_toml_is_refused(tmp_path, capsys):
    message = refused(["sweep", str(tmp_path / "grid.toml"), "--dry-run"], capsys)
    assert f"{tmp_path / 'grid.toml'}: cannot read it" in message


def test_a_sweep_toml_syntax_error_names_the_file(tmp_path, capsys):
    (tmp_path / "grid.toml").write_text("methods = [TVLARS]\n")
    message = refused(["sweep", str(tmp_path / "grid.toml"), "--dry-run"], capsys)
    assert f"{tmp_path / 'grid.toml'} is not valid TOML" in message


def test_a_toml_grid_whose_base_sets_an_axis_key_is_refused(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('methods = ["TVLARS"]\n[batches]\n128 = [1.0]\n[base]\nlr = 0.5\n')
    with pytest.raises(ValueError, match=r"base sets \['lr'\]"):
        load_toml(grid)


# -- one writer per run folder ----------------------------------------------------------------


def test_a_second_run_on_a_locked_run_folder_is_refused_with_the_holders_pid(
    unfinished_run, capsys
):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from tvlars.folder_lock import folder_lock\n"
            f"with folder_lock({str(unfinished_run)!r}, 'run', ''):\n"
            "    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(unfinished_run)
        message = refused(["train", *TINY, "--out", str(unfinished_run)], capsys)
        assert f"in use by another run (pid {holder.pid} " in message and "--out" in message
        assert snapshot(unfinished_run) == before
    finally:
        holder.kill()
        holder.wait()


# -- tracebacks before: files and flags that cannot be used -----------------------------------


def test_a_missing_config_file_is_refused(tmp_path, capsys):
    message = refused(["train", "--config", str(tmp_path / "none.toml")], capsys)
    assert f"--config {tmp_path / 'none.toml'}" in message and "cannot read" in message


def test_a_toml_syntax_error_names_the_file(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text("epochs = \n")
    message = refused(["train", "--config", str(toml)], capsys)
    assert str(toml) in message and "not valid TOML" in message


@pytest.mark.parametrize(
    "damage",
    [b"", b"garbage, not a checkpoint", "truncated"],
    ids=["empty", "garbage", "truncated"],
)
def test_a_damaged_checkpoint_is_refused_with_the_way_out(unfinished_run, capsys, damage):
    checkpoint = unfinished_run / "checkpoint.pt"
    if damage == "truncated":
        damage = checkpoint.read_bytes()[:1000]
    checkpoint.write_bytes(damage)
    before = snapshot(unfinished_run)
    message = refused(["train", *TINY, "--out", str(unfinished_run)], capsys)
    assert f"{checkpoint} is damaged" in message and "--restart" in message
    assert snapshot(unfinished_run) == before


@pytest.mark.parametrize("part", ["model", "optimizer"])
def test_a_checkpoint_whose_states_do_not_fit_the_model_is_refused_with_the_way_out(
    unfinished_run, capsys, part
):
    """A readable checkpoint of this run's settings whose tensors do not fit (as one written
    by a version of tvlars with another model would be)."""
    import torch

    checkpoint = unfinished_run / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    if part == "model":
        name = next(iter(state["model"]))
        state["model"][name] = torch.zeros(3, 1, 1)
    else:
        state["optimizer"]["param_groups"][0]["params"].append(10_000)
    torch.save(state, checkpoint)
    before = snapshot(unfinished_run)
    message = refused(["train", *TINY, "--out", str(unfinished_run)], capsys)
    assert f"{checkpoint} does not fit this run: its {part} state" in message
    assert "--restart" in message and "Traceback" not in message
    assert snapshot(unfinished_run) == before


def _refused_training_worker(rank: int, port: int, out: str, cache: str, reports: str) -> None:
    """One torchrun process of ``tvlars train``; writes how it ended to reports/<rank>."""
    from processes import join_as_torchrun_rank

    join_as_torchrun_rank(rank, port, TVLARS_CACHE=cache, OMP_NUM_THREADS="1")
    try:
        main(["train", *TINY, "--out", out])
        ending = "trained"
    except SystemExit as error:
        ending = f"exit {error.code}: {error}"
    Path(reports, str(rank)).write_text(ending)


def test_under_torchrun_a_refusal_stops_every_process_with_status_2(tmp_path):
    """Only the main process checks the run folder; the others must hear its refusal and
    stop too (rather than wait for it forever at the first collective)."""
    import torch.multiprocessing as mp
    from processes import free_port

    out = tmp_path / "run"
    (out / "checkpoint.pt").mkdir(parents=True)  # a folder where the checkpoint goes
    reports = tmp_path / "reports"
    reports.mkdir()
    args = (free_port(), str(out), os.environ["TVLARS_CACHE"], str(reports))
    context = mp.start_processes(
        _refused_training_worker, args=args, nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 180
    while not context.join(timeout=5):
        assert time.monotonic() < deadline, "a process still waits: the refusal did not reach it"
    endings = {path.name: path.read_text() for path in reports.iterdir()}
    assert set(endings) == {"0", "1"}
    for ending in endings.values():
        assert ending.startswith("exit 2: tvlars train: ")
        assert f"{out / 'checkpoint.pt'} is not a file" in ending


def test_restart_starts_a_run_with_a_damaged_checkpoint_over(unfinished_run, capsys):
    (unfinished_run / "checkpoint.pt").write_bytes(b"")
    assert main(["train", *TINY, "--out", str(unfinished_run), "--restart"]) == 0
    assert json.loads((unfinished_run / "summary.json").read_text())["epochs"] == 2


def test_a_damaged_summary_is_refused_with_the_way_out(run_copy, capsys):
    (run_copy / "summary.json").write_text('{"final_test_acc": 1')
    before = snapshot(run_copy)
    message = refused(["train", *TINY, "--out", str(run_copy)], capsys)
    assert "summary.json is damaged" in message and "--restart" in message
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("name", ["summary.json", "checkpoint.pt", "metrics.csv"])
def test_a_result_file_that_is_a_folder_is_refused(unfinished_run, capsys, name):
    target = unfinished_run / name
    target.unlink(missing_ok=True)
    target.mkdir()
    before = snapshot(unfinished_run)
    message = refused(["train", *TINY, "--out", str(unfinished_run)], capsys)
    assert f"{target} is not a file" in message
    assert snapshot(unfinished_run) == before and target.is_dir()


def test_a_device_that_is_not_one_is_refused(tmp_path, capsys):
    argv = ["train", *TINY, "--device", "gpu", "--out", str(tmp_path)]
    assert "--device 'gpu' is not a device" in refused(argv, capsys)


def test_fewer_than_one_thread_is_refused(tmp_path, capsys):
    argv = ["train", *TINY[:-2], "--threads", "0", "--out", str(tmp_path)]
    assert "--threads must be >= 1" in refused(argv, capsys)


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    message = refused(["train", *TINY, "--out", str(tmp_path / "file")], capsys)
    assert f"--out {tmp_path / 'file'} is a file" in message
    assert (tmp_path / "file").read_text() == "mine"


def test_an_out_inside_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    message = refused(["train", *TINY, "--out", str(tmp_path / "file" / "run")], capsys)
    assert "part of this path is a file" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_out_that_is_not_writable_is_refused(tmp_path, capsys):
    (tmp_path / "ro").mkdir(mode=0o555)
    message = refused(["train", *TINY, "--out", str(tmp_path / "ro")], capsys)
    assert "not writable" in message


def test_an_unusable_cache_folder_is_refused_naming_tvlars_cache(tmp_path, monkeypatch, capsys):
    (tmp_path / "cache").write_text("a file")
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path / "cache"))
    argv = ["train", *TINY, "--num-samples", "1200", "--out", str(tmp_path / "r")]
    message = refused(argv, capsys)
    assert "TVLARS_CACHE" in message and str(tmp_path / "cache") in message


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(unfinished_run, monkeypatch):
    folder = RunFolder(unfinished_run)
    before = snapshot(unfinished_run)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("tvlars.train.run_folder.os.fsync", disk_full)
    with pytest.raises(UserError, match="No space left on device.*previous version"):
        folder.save_checkpoint({"run_id": "x", "epoch": 3})
    assert snapshot(unfinished_run) == before  # no half file, no temporary left behind


def test_a_full_disk_at_the_end_of_a_run_is_refused_and_loses_nothing(
    unfinished_run, monkeypatch, capsys
):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    before = snapshot(unfinished_run)
    monkeypatch.setattr("tvlars.train.run_folder.os.fsync", disk_full)
    message = refused(["train", *TINY, "--out", str(unfinished_run)], capsys)
    assert "summary.json" in message and "No space left" in message
    assert snapshot(unfinished_run) == before


# -- sweeps and reports -----------------------------------------------------------------------


def test_a_sweep_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    message = refused(["sweep", "quick", "--out", str(tmp_path / "file")], capsys)
    assert f"--out {tmp_path / 'file'} is a file" in message


def test_a_sweep_whose_runs_folder_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / RUNS_DIR).write_text("mine")
    message = refused(["sweep", "quick", "--out", str(tmp_path)], capsys)
    assert f"{tmp_path / RUNS_DIR} is a file" in message


def test_a_cell_that_cannot_get_its_folder_is_a_failed_cell(tmp_path):
    (cell,) = expand(SweepSpec(name="t", methods=("TVLARS",), batches={128: (1.0,)}))
    (tmp_path / "cell").write_text("a file where the folder goes")
    result = execute_cell(CellTask(cell, str(tmp_path / "cell")))
    assert result.state == FAILED and "is a file" in result.error


def sweep_of(run: Path, sweep: Path, copies: int) -> list[Path]:
    folders = [sweep / RUNS_DIR / f"run{i}" for i in range(copies)]
    for folder in folders:
        shutil.copytree(run, folder)
    return folders


@pytest.mark.parametrize(
    "damage",
    ["summary.json", "metrics.csv", "config.json", "no config"],
)
def test_a_report_lists_a_damaged_run_and_goes_on_with_the_others(finished_run, tmp_path, damage):
    good, bad = sweep_of(finished_run, tmp_path, 2)
    if damage == "no config":
        (bad / "config.json").unlink()
    elif damage == "metrics.csv":
        (bad / damage).write_bytes(b"\x00\xff\x00 not, csv\n1")
    else:
        (bad / damage).write_text('{"truncated": ')
    report = write_report(tmp_path, figures=False)
    (problem,) = report.problems
    assert str(bad) in problem and (damage in problem or "no config.json" in problem)
    assert "Could not be read" in report.console_summary()
    assert "run0" not in "".join(report.problems)


def test_the_report_command_reads_a_damaged_sweep_json(finished_run, tmp_path, capsys):
    sweep_of(finished_run, tmp_path, 1)
    (tmp_path / "sweep.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 0
    assert "sweep.json cannot be read" in capsys.readouterr().out


# -- Ctrl-C --------------------------------------------------------------


def test_ctrl_c_on_train_prints_one_line_and_exits_130(tmp_path):
    argv = [*TINY[:-4], "--epochs", "10000", "--threads", "1", "--out", str(tmp_path / "r")]
    process = subprocess.Popen(
        [sys.executable, "-m", "tvlars", "train", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # A background shell starts its children with Ctrl-C ignored; a terminal does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.lstrip().startswith("epoch"):
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    try:
        rest, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "Traceback" not in rest
    interrupted = [line for line in rest.splitlines() if "interrupted" in line]
    assert len(interrupted) == 1
    assert "interrupted at epoch" in interrupted[0] and "same command again" in interrupted[0]
