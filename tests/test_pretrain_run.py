"""``tvlars pretrain`` end to end: the run folder, resumption in each stage, gradient
accumulation's meaning, the command line."""

from __future__ import annotations

import json

import pytest
import torch
from resume import (
    RESUMED_METHODS,
    assert_resumed_mid_warmup,
    assert_resumed_run_equals_whole_run,
    checkpoint_weights,
    kill_and_resume,
    metric_rows,
)

from tvlars.cli import main
from tvlars.data import DeviceBatches, load_dataset
from tvlars.pretrain import PretrainConfig, pretrain
from tvlars.pretrain import loop as pretrain_loop
from tvlars.pretrain.barlow_twins import barlow_twins_loss
from tvlars.pretrain.loop import EXIT_DIVERGED, build_network, random_backbone
from tvlars.pretrain.views import TwoViews


@pytest.fixture(autouse=True)
def small_world(tmp_path_factory, monkeypatch):
    # One generated MNIST-1D set shared by every test, in a cache of its own.
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    torch.set_num_threads(1)


def tiny(out, **overrides) -> PretrainConfig:
    values = dict(
        dataset="mnist1d",
        num_samples=1000,
        model="mnist1d-cnn",
        projector="32-32",
        batch_size=200,
        epochs=3,
        eval_epochs=3,
        knn_every=2,
        lr=0.5,
        out=str(out),
    )
    values.update(overrides)
    return PretrainConfig(**values)


def without_times(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("wall_seconds", "images_per_second")}


def test_a_run_folder_holds_both_stages_and_the_summary_fields(tmp_path):
    summary = pretrain(tiny(tmp_path), progress=False, log=lambda message: None)
    for name in ("config.json", "metrics.csv", "layers.csv", "checkpoint.pt", "summary.json"):
        assert (tmp_path / name).exists(), name
    written = json.loads((tmp_path / "summary.json").read_text())
    for key in (
        "linear_acc", "linear_acc5", "knn_acc", "random_init_linear_acc",
        "final_test_acc", "best_test_acc", "diverged", "batch_size", "optimizer", "world_size",
    ):  # fmt: skip
        assert key in written, key
    assert written["final_test_acc"] == written["linear_acc"] == summary["linear_acc"]
    # 200 test signals of ten classes: chance is 10% (one standard deviation 2.1 points);
    # three epochs of each stage reach about 30% with the probe and 35% with k-NN.
    assert written["linear_acc"] > 20 and written["knn_acc"] > 20
    assert written["linear_acc5"] >= written["linear_acc"]
    rows = metric_rows(tmp_path)
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    # k-NN every 2 epochs and after the last.
    assert [row["knn_acc"] != "" for row in rows] == [False, True, True]
    assert float(rows[-1]["knn_acc"]) == pytest.approx(written["knn_acc"])


def test_tvlars_lambda_defaults_to_the_papers_ssl_value():
    assert PretrainConfig().resolved().lmbda == 1e-5
    assert PretrainConfig(pretrain_epochs=7, epochs=3).resolved().epochs == 7
    assert PretrainConfig().resolved().projector == "128-128-128"
    assert PretrainConfig(dataset="cifar10").resolved().projector == "2048-2048-4096"


@pytest.mark.parametrize("method", RESUMED_METHODS)
def test_a_run_killed_while_pretraining_resumes_to_the_same_weights_and_results(
    tmp_path, monkeypatch, method
):
    settings = RESUMED_METHODS[method]
    quiet = dict(progress=False, log=lambda message: None)
    reference = pretrain(tiny(tmp_path / "whole", **settings), **quiet)
    resumed, resumed_at = kill_and_resume(
        lambda folder: pretrain(tiny(folder, **settings), **quiet),
        tmp_path / "killed",
        monkeypatch,
        kill_epoch=1,
        kill_batch=1,
    )
    assert_resumed_run_equals_whole_run(tmp_path / "whole", tmp_path / "killed")
    assert without_times(resumed) == without_times(reference)
    if settings["schedule"] == "warmup-cosine":
        assert_resumed_mid_warmup(tmp_path / "killed", resumed_at)


def test_a_run_killed_in_linear_evaluation_redoes_only_that_stage(tmp_path, monkeypatch):
    quiet = dict(progress=False, log=lambda message: None)
    reference = pretrain(tiny(tmp_path / "whole"), **quiet)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as patch:
        patch.setattr(pretrain_loop, "linear_evaluation", killed)
        with pytest.raises(KeyboardInterrupt):
            pretrain(tiny(tmp_path / "killed"), **quiet)
    assert not (tmp_path / "killed" / "summary.json").exists()

    def no_more_pretraining(*args, **kwargs):
        raise AssertionError("pre-training ran again")

    monkeypatch.setattr(pretrain_loop.BarlowTwinsTask, "micro_batch_loss", no_more_pretraining)
    messages: list[str] = []
    resumed = pretrain(tiny(tmp_path / "killed"), progress=False, log=messages.append)
    assert without_times(resumed) == without_times(reference)
    assert f"resuming {tmp_path / 'killed'} at linear evaluation" in messages


def test_a_run_killed_while_pretraining_says_it_resumes_at_its_epoch(tmp_path, monkeypatch):
    messages: list[str] = []
    kill_and_resume(
        lambda folder: pretrain(tiny(folder), progress=False, log=messages.append),
        tmp_path,
        monkeypatch,
        kill_epoch=1,
        kill_batch=1,
    )
    assert f"resuming {tmp_path} at epoch 1" in messages


def test_the_random_backbone_is_the_network_pretraining_started_from(tmp_path):
    config = tiny(tmp_path).resolved()
    started = build_network(config).backbone.state_dict()
    for name, value in random_backbone(config).state_dict().items():
        assert torch.equal(value, started[name]), name


def test_with_accumulation_a_step_descends_the_mean_of_the_micro_batch_losses(tmp_path):
    """The gradient of one step with two micro-batches is the mean of their Barlow Twins
    losses' gradients, each over its own micro-batch, not the effective batch's loss."""
    config = tiny(
        tmp_path,
        optimizer="sgd",
        schedule="none",
        momentum=0.0,
        weight_decay=0.0,
        lr=0.1,
        excluded_lr_scale=1.0,  # every parameter steps by -0.1 * gradient
        batch_size=800,  # the 800 training samples: one step per epoch
        micro_batch=400,
        epochs=1,
        eval_epochs=1,
    )
    pretrain(config, progress=False, log=lambda message: None)
    stepped = checkpoint_weights(tmp_path)

    config = config.resolved()
    dataset = load_dataset("mnist1d", num_samples=1000)
    views = TwoViews.for_dataset(dataset, seed=config.seed)
    params = views.draw(epoch=0, step=0, count=800)

    def step_with(micro_batch: int) -> dict[str, torch.Tensor]:
        network = build_network(config)
        batches = DeviceBatches.from_dataset(
            dataset, micro_batch=micro_batch, augment=False, accumulation_steps=800 // micro_batch
        )
        for micro, (inputs, _) in enumerate(batches.epoch(0)):
            window = slice(micro * micro_batch, (micro + 1) * micro_batch)
            view1, view2 = views.apply(inputs, (params[0][window], params[1][window]))
            (barlow_twins_loss(*network(view1, view2)) / (800 // micro_batch)).backward()
        return {name: (p - 0.1 * p.grad).detach() for name, p in network.named_parameters()}

    per_micro_batch, whole_batch = step_with(400), step_with(800)
    for name, value in per_micro_batch.items():
        torch.testing.assert_close(stepped[name], value, rtol=1e-5, atol=1e-7, msg=name)
    assert any(
        not torch.allclose(whole_batch[name], value, rtol=1e-4, atol=1e-6)
        for name, value in per_micro_batch.items()
    )


def test_the_command_runs_and_reports_a_finished_folder(tmp_path, capsys):
    args = [
        "pretrain", "--num-samples", "1000", "--model", "mnist1d-cnn", "--projector", "32-32",
        "--batch-size", "200", "--pretrain-epochs", "1", "--eval-epochs", "2",
        "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == 0
    assert "linear accuracy" in capsys.readouterr().out
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    config = json.loads((tmp_path / "config.json").read_text())["config"]
    assert config["lmbda"] == 1e-5 and config["epochs"] == config["pretrain_epochs"] == 1


def test_bad_pretraining_flags_give_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="projector"):
        main(["pretrain", "--projector", "wide", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="bt-lambda"):
        main(["pretrain", "--bt-lambda", "-1", "--out", str(tmp_path)])


def test_an_image_dataset_pretrains_through_the_image_views(tmp_path):
    config = tiny(
        tmp_path,
        dataset="synthetic",
        num_samples=20,  # 16 random 32 x 32 images to train on, 4 to test
        model="resnet18-cifar",
        optimizer="sgd",  # LARS-type optimizers would compile a fused step for 11M weights
        lr=0.01,
        batch_size=8,
        epochs=1,
        eval_epochs=1,
    )
    summary = pretrain(config, progress=False, log=lambda message: None)
    assert summary["dataset"] == "synthetic" and summary["epochs"] == 1
    assert summary["diverged"] is False
    # Random images and labels: nothing to learn, so no accuracy to expect; each accuracy
    # is a share of the 4 test images, so every one of them was scored.
    for key in ("linear_acc", "random_init_linear_acc", "knn_acc"):
        assert summary[key] in {0.0, 25.0, 50.0, 75.0, 100.0}, key


def test_divergence_is_a_result_with_its_own_exit_status(tmp_path, capsys):
    args = [
        "pretrain", "--num-samples", "1000", "--model", "mnist1d-cnn", "--projector", "32-32",
        "--batch-size", "200", "--pretrain-epochs", "2", "--optimizer", "sgd", "--lr", "1e30",
        "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == EXIT_DIVERGED
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["diverged"] is True and summary["diverged_epoch"] == 1
    assert summary["linear_acc"] != summary["linear_acc"]  # NaN: no probe on a NaN backbone


def test_a_run_killed_after_diverging_resumes_as_diverged_without_training(tmp_path, monkeypatch):
    from tvlars.train.run_folder import RunFolder

    config = tiny(tmp_path, optimizer="sgd", lr=1e30, schedule="none", epochs=3)
    original_write_json = RunFolder.write_json

    def killed_before_summary(self, path, values):
        if path == self.summary:
            raise KeyboardInterrupt("killed")
        original_write_json(self, path, values)

    quiet = dict(progress=False, log=lambda message: None)
    monkeypatch.setattr(RunFolder, "write_json", killed_before_summary)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config, **quiet)
    epochs_before = len(metric_rows(tmp_path))
    monkeypatch.setattr(RunFolder, "write_json", original_write_json)
    summary = pretrain(config, **quiet)
    assert summary["diverged"] and summary["diverged_epoch"] == epochs_before == 1
    assert len(metric_rows(tmp_path)) == epochs_before
