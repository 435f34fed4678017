"""The classification loop: end to end, resume after a kill, accumulation, two processes,
divergence, run folders."""

from __future__ import annotations

import functools
import json
import os

import pytest
import torch
import torch.multiprocessing as mp
from processes import free_port, join_as_torchrun_rank
from resume import (
    RESUMED_METHODS,
    assert_resumed_mid_warmup,
    assert_resumed_run_equals_whole_run,
    checkpoint_weights,
    kill_and_resume,
    metric_rows,
)
from torch import nn

from tvlars.cli import main
from tvlars.data import DeviceBatches
from tvlars.models import build_model
from tvlars.train import RunConfig, train
from tvlars.train import loop as train_loop
from tvlars.train.loop import EXIT_DIVERGED


@pytest.fixture(autouse=True)
def small_world(tmp_path_factory, monkeypatch):
    # One generated MNIST-1D set shared by every test, in a cache of its own.
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    torch.set_num_threads(1)


def tiny(out, **overrides) -> RunConfig:
    values = dict(
        dataset="mnist1d",
        num_samples=1000,
        model="mnist1d-cnn",
        batch_size=128,
        epochs=3,
        warmup_epochs=1,
        delay_epochs=1,
        lr=1.0,
        out=str(out),
        telemetry_every=1,
    )
    values.update(overrides)
    return RunConfig(**values)


def test_a_tiny_run_learns_and_writes_its_run_folder(tmp_path):
    summary = train(tiny(tmp_path, model="mnist1d-resnet", epochs=4), progress=False)
    assert summary["final_test_acc"] > 30  # ten classes: chance is 10%
    for name in ("config.json", "metrics.csv", "layers.csv", "checkpoint.pt", "summary.json"):
        assert (tmp_path / name).exists(), name
    rows = metric_rows(tmp_path)
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "summary.json").read_text())["epochs"] == 4


@pytest.mark.parametrize("optimizer", ["lars", "lamb", "sgd", "adamw"])
def test_every_optimizer_runs_with_its_default_schedule(tmp_path, optimizer):
    lr = {"lars": 1.0, "lamb": 1e-2, "sgd": 0.05, "adamw": 1e-3}[optimizer]
    summary = train(tiny(tmp_path, optimizer=optimizer, lr=lr, epochs=2), progress=False)
    assert not summary["diverged"]
    assert summary["optimizer"] == optimizer


def test_summary_and_config_record_the_excluded_lr_scale(tmp_path):
    summary = train(tiny(tmp_path, epochs=1, excluded_lr_scale=1e-3), progress=False)
    assert summary["excluded_lr_scale"] == 1e-3
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["config"]["excluded_lr_scale"] == 1e-3


# fp16 adds the GradScaler's state to restore.
RESUMED_IN_TRAINING = {
    **RESUMED_METHODS,
    "WA-LARS-fp16": {**RESUMED_METHODS["WA-LARS"], "precision": "fp16"},
}


@pytest.mark.parametrize("method", RESUMED_IN_TRAINING)
def test_a_killed_run_resumes_to_the_same_weights_and_metrics(
    tmp_path, monkeypatch, capsys, method
):
    settings = RESUMED_IN_TRAINING[method]
    if settings.get("precision") == "fp16":
        # A loss scale that doubles every second step (and halves on an overflow) changes
        # within the first epoch, so the resumed run must take it from the checkpoint.
        scaler = functools.partial(torch.amp.GradScaler, growth_interval=2)
        monkeypatch.setattr(torch.amp, "GradScaler", scaler)
    train(tiny(tmp_path / "whole", **settings), progress=False)
    _, resumed_at = kill_and_resume(
        lambda folder: train(tiny(folder, **settings), progress=False),
        tmp_path / "killed",
        monkeypatch,
        kill_epoch=1,
        kill_batch=3,
    )
    assert_resumed_run_equals_whole_run(tmp_path / "whole", tmp_path / "killed")
    if settings["schedule"] == "warmup-cosine":
        assert_resumed_mid_warmup(tmp_path / "killed", resumed_at)
    assert f"resuming {tmp_path / 'killed'} at epoch 1\n" in capsys.readouterr().out


def test_the_lr_column_follows_the_warmup_to_its_last_step_then_the_cosine(tmp_path):
    train(
        tiny(tmp_path, optimizer="lars", schedule="warmup-cosine", warmup_epochs=2), progress=False
    )
    plan = json.loads((tmp_path / "config.json").read_text())["plan"]
    assert (plan["steps_per_epoch"], plan["warmup_steps"], plan["total_steps"]) == (6, 12, 18)
    # Each row's LR is that of its epoch's last step: 5 and 11 (the last of the warm-up)
    # rise by 1/12 a step; step 17 is 5/6 of the way down the cosine from 1 to 1e-3.
    q = (2 - 3**0.5) / 4  # (1 + cos(5 pi / 6)) / 2
    lrs = [float(row["lr"]) for row in metric_rows(tmp_path)]
    assert lrs == pytest.approx([5 / 12, 11 / 12, q + 1e-3 * (1 - q)], rel=1e-6)


def test_a_finished_folder_is_reported_not_retrained(tmp_path, capsys):
    first = train(tiny(tmp_path, epochs=1), progress=False)
    modified = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    again = train(tiny(tmp_path, epochs=1), progress=False)
    assert again == json.loads(json.dumps(first))
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == modified
    assert "finished" in capsys.readouterr().out


def test_a_folder_of_another_run_is_refused(tmp_path, monkeypatch):
    original_epoch = DeviceBatches.epoch

    def killed(self, epoch, start=0):
        if epoch == 1:
            raise KeyboardInterrupt
        yield from original_epoch(self, epoch, start)

    monkeypatch.setattr(DeviceBatches, "epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path), progress=False)
    monkeypatch.setattr(DeviceBatches, "epoch", original_epoch)
    with pytest.raises(ValueError, match="settings differ .* Use another --out folder"):
        train(tiny(tmp_path, lr=0.5), progress=False)


def test_gradient_accumulation_equals_the_large_batch_without_batch_norm(tmp_path):
    train(tiny(tmp_path / "large", epochs=1, schedule="none"), progress=False)
    train(tiny(tmp_path / "accumulated", epochs=1, schedule="none", micro_batch=32), progress=False)
    large, accumulated = (
        checkpoint_weights(tmp_path / "large"),
        checkpoint_weights(tmp_path / "accumulated"),
    )
    for name in large:
        torch.testing.assert_close(accumulated[name], large[name], rtol=1e-4, atol=1e-6)


def test_divergence_is_a_result_with_its_own_exit_status(tmp_path, capsys):
    status = main(
        [
            "train",
            "--dataset",
            "mnist1d",
            "--num-samples",
            "1000",
            "--model",
            "mnist1d-cnn",
            "--optimizer",
            "sgd",
            "--lr",
            "1e6",
            "--schedule",
            "none",
            "--batch-size",
            "128",
            "--epochs",
            "3",
            "--out",
            str(tmp_path),
        ]
    )
    assert status == EXIT_DIVERGED
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["diverged"] is True and summary["diverged_epoch"] >= 1


def test_run_id_depends_on_what_is_computed_not_where(tmp_path):
    assert tiny(tmp_path / "a").run_id() == tiny(tmp_path / "b", threads=2).run_id()
    assert tiny(tmp_path / "a").run_id() != tiny(tmp_path / "a", lr=0.5).run_id()


def test_toml_config_supplies_the_flags_and_flags_override_it(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(
        'optimizer = "lars"\nbatch-size = 128\nepochs = 1\nlr = 0.5\n'
        'dataset = "mnist1d"\nnum_samples = 1000\nmodel = "mnist1d-cnn"\n'
    )
    assert (
        main(["train", "--config", str(toml), "--lr", "0.25", "--out", str(tmp_path / "run")]) == 0
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["optimizer"], summary["batch_size"], summary["lr"]) == ("lars", 128, 0.25)


def test_bad_flags_give_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="batch-size"):
        main(["train", "--batch-size", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="optimizer"):
        main(["train", "--optimizer", "adam", "--out", str(tmp_path)])


def _worker(rank: int, port: int, config: RunConfig, cache: str) -> None:
    join_as_torchrun_rank(rank, port, TVLARS_CACHE=cache)
    torch.set_num_threads(1)
    train(config, progress=False)


def test_two_gloo_processes_reach_the_one_process_weights(tmp_path):
    cache = os.environ["TVLARS_CACHE"]
    config = tiny(tmp_path / "one", epochs=1, schedule="none")
    train(config, progress=False)
    two = tiny(tmp_path / "two", epochs=1, schedule="none")
    mp.start_processes(
        _worker, args=(free_port(), two, cache), nprocs=2, join=True, start_method="spawn"
    )
    one_process, two_processes = (
        checkpoint_weights(tmp_path / "one"),
        checkpoint_weights(tmp_path / "two"),
    )
    for name in one_process:
        torch.testing.assert_close(two_processes[name], one_process[name], rtol=1e-4, atol=1e-6)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2
    # The test set is covered once in both runs; nearly equal weights give the same score
    # up to a sample or two whose logits tie within float rounding.
    accuracy_one = float(metric_rows(tmp_path / "one")[0]["test_acc"])
    accuracy_two = float(metric_rows(tmp_path / "two")[0]["test_acc"])
    assert abs(accuracy_one - accuracy_two) <= 1.0


@pytest.mark.parametrize("as_archive", [False, True])
def test_a_tiny_run_on_cifar_files_in_the_standard_layout(tmp_path, as_archive):
    from tvlars.data.testing import write_cifar

    write_cifar(tmp_path / "data", "cifar10", num_train=32, num_test=8, as_archive=as_archive)
    summary = train(
        RunConfig(
            dataset="cifar10",
            data_dir=str(tmp_path / "data"),
            model="resnet18-cifar",
            batch_size=16,
            micro_batch=8,
            epochs=1,
            out=str(tmp_path / "run"),
        ),
        progress=False,
    )
    assert summary["epochs"] == 1 and summary["accumulation_steps"] == 2
    # Random images and labels: nothing to learn; the accuracy is a share of the 8 test
    # images written, so every one of them was read and scored.
    assert summary["final_test_acc"] in {100 * correct / 8 for correct in range(9)}


def test_a_tiny_run_on_a_tiny_imagenet_zip(tmp_path):
    from tvlars.data.testing import write_tiny_imagenet

    write_tiny_imagenet(tmp_path / "data", as_zip=True)
    summary = train(
        RunConfig(
            dataset="tinyimagenet",
            data_dir=str(tmp_path / "data"),
            model="resnet18",
            batch_size=2,
            epochs=1,
            out=str(tmp_path / "run"),
        ),
        progress=False,
    )
    assert summary["epochs"] == 1 and summary["dataset"] == "tinyimagenet"


def test_a_wrong_data_folder_names_the_files_it_expected(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(SystemExit, match="data_batch_1"):
        main(
            [
                "train",
                "--dataset",
                "cifar10",
                "--data-dir",
                str(tmp_path / "data"),
                "--out",
                str(tmp_path / "run"),
            ]
        )


PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_model_watched(seen: dict[str, set], logit_grads: list[float]):
    """build_model, with hooks that record the dtype of every conv and linear layer's output
    (in training and in evaluation) and the largest gradient reaching the logits."""

    def build(*args, **kwargs):
        model = build_model(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                module.register_forward_hook(record_output)
        return model

    def record_output(module, inputs, output):
        seen["train" if module.training else "eval"].add(output.dtype)
        if module.training and output.requires_grad and output.shape[-1] == 10:
            output.register_hook(lambda grad: logit_grads.append(grad.abs().max().item()))

    return build


@pytest.mark.parametrize("precision", PRECISION_DTYPES)
def test_layers_compute_in_the_precision_asked_for_in_training_and_evaluation(
    tmp_path, monkeypatch, precision
):
    seen, logit_grads = {"train": set(), "eval": set()}, []
    monkeypatch.setattr(train_loop, "build_model", build_model_watched(seen, logit_grads))
    summary = train(tiny(tmp_path, epochs=1, precision=precision), progress=False)
    expected = PRECISION_DTYPES[precision]
    assert seen == {"train": {expected}, "eval": {expected}}
    assert not summary["diverged"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["config"]["precision"] == precision


@pytest.mark.parametrize("precision", PRECISION_DTYPES)
def test_only_fp16_scales_the_loss_with_a_grad_scaler(tmp_path, monkeypatch, precision):
    seen, logit_grads = {"train": set(), "eval": set()}, []
    monkeypatch.setattr(train_loop, "build_model", build_model_watched(seen, logit_grads))
    train(tiny(tmp_path, epochs=1, precision=precision), progress=False)
    scaler = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["scaler"]
    # d(mean cross-entropy)/d(logits) = (softmax - one_hot) / batch is at most 1/128 here;
    # scaled by the GradScaler's 2**16 it is far above 1.
    largest = max(logit_grads)
    if precision == "fp16":
        assert scaler["scale"] >= 1.0 and largest > 1.0
    else:
        assert scaler == {} and largest <= 1 / 128


def test_a_run_killed_after_diverging_resumes_as_diverged_without_training(tmp_path, monkeypatch):
    from tvlars.train.run_folder import RunFolder

    config = tiny(tmp_path, optimizer="sgd", lr=1e6, schedule="none")
    original_write_json = RunFolder.write_json

    def killed_before_summary(self, path, values):
        if path == self.summary:
            raise KeyboardInterrupt("killed")
        original_write_json(self, path, values)

    monkeypatch.setattr(RunFolder, "write_json", killed_before_summary)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    epochs_before = len(metric_rows(tmp_path))
    monkeypatch.setattr(RunFolder, "write_json", original_write_json)
    summary = train(config, progress=False)
    assert summary["diverged"] and summary["diverged_epoch"] == epochs_before
    assert len(metric_rows(tmp_path)) == epochs_before


def test_ctrl_c_reports_the_epoch_it_interrupted_counted_from_one(tmp_path, monkeypatch):
    original_epoch = DeviceBatches.epoch

    def interrupted_in_second_epoch(self, epoch, start=0):
        for index, batch in enumerate(original_epoch(self, epoch, start)):
            if epoch == 1 and index == 1:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(DeviceBatches, "epoch", interrupted_in_second_epoch)
    with pytest.raises(train_loop.TrainingInterrupted) as interrupt:
        train(tiny(tmp_path), progress=False, log=lambda message: None)
    assert interrupt.value.epoch == 2
