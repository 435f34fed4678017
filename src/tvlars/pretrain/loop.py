"""One Barlow Twins run: pre-training, then linear evaluation, in one run folder.

**Pre-training.** Every optimizer step takes ``batch_size`` samples (``micro_batch x
accumulation_steps x processes``, from :class:`~tvlars.data.DeviceBatches` as in
classification), makes two views of each (:class:`~tvlars.pretrain.views.TwoViews`),
embeds both with backbone + projector, and descends the Barlow Twins loss
(:mod:`tvlars.pretrain.barlow_twins`). The loss of a micro-batch is computed over that
micro-batch of every process together (its cross-correlation and its batch
normalization are exact over the ``micro_batch x processes`` samples). With gradient
accumulation the step's gradient is the mean of the ``accumulation_steps`` micro-batch
losses' gradients::

    g = 1/A * sum_m grad L_BT(micro-batch m of all processes)

which is not the gradient of the loss of the whole effective batch: the Barlow Twins loss
does not split over samples, so accumulation gives the cross-correlation of each
micro-batch, estimated on fewer samples. ``metrics.csv`` logs the mean of those micro-batch
losses per epoch (``train_loss``) and, every ``knn_every`` epochs and after the last, the
k-nearest-neighbour accuracy of the backbone's features (``knn_acc``).

**Linear evaluation.** The pre-trained backbone, frozen, and a randomly initialized one
(the same architecture, initialization and seed: the network pre-training started from)
each get a linear probe (:mod:`tvlars.pretrain.linear_eval`); ``summary.json`` holds both,
so every result shows what pre-training added.

**Resumption.** The driver (:mod:`tvlars.train.driver`) writes a checkpoint after every
pre-training epoch; a killed run resumes from it, bit for bit on CPU (the order and the
views of an epoch follow from ``(seed, epoch, step)``). A run killed during linear
evaluation redoes that stage, which takes seconds, from the last checkpoint, without
pre-training again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tvlars.models import build_model
from tvlars.models.init import apply_init
from tvlars.pretrain.barlow_twins import barlow_twins_loss
from tvlars.pretrain.config import PretrainConfig
from tvlars.pretrain.knn import knn_accuracy
from tvlars.pretrain.linear_eval import dataset_features, linear_evaluation
from tvlars.pretrain.projector import BarlowTwinsNetwork, build_projector
from tvlars.pretrain.views import TwoViews
from tvlars.train.config import Plan
from tvlars.train.driver import AUTOCAST_DTYPES, EXIT_DIVERGED, Task, run_task

__all__ = ["EXIT_DIVERGED", "METRIC_COLUMNS", "BarlowTwinsTask", "build_network", "pretrain"]

METRIC_COLUMNS = ("epoch", "step", "lr", "train_loss", "knn_acc", "seconds")


def pretrain(
    config: PretrainConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    restart: bool = False,
) -> dict[str, Any]:
    """Pre-train and evaluate (or resume, or report) the run ``config`` describes; return
    its summary. ``restart`` deletes the run folder's previous files first."""
    return run_task(BarlowTwinsTask, config, progress=progress, log=log, restart=restart)


def build_network(config: PretrainConfig, feature_kind: str | None = None) -> BarlowTwinsNetwork:
    """Backbone and projector, initialized from ``config.seed``: the backbone first, so
    that it equals ``build_model(config.model, 0, init=..., generator=seed)``."""
    generator = torch.Generator().manual_seed(config.seed)
    backbone = build_model(config.model, 0, init=config.init, generator=generator)
    projector = build_projector(backbone.feature_dim, config.projector)
    apply_init(projector, config.init, generator=generator)
    return BarlowTwinsNetwork(backbone, projector)


def random_backbone(config: PretrainConfig) -> nn.Module:
    """The backbone as pre-training found it: same architecture, initialization, seed."""
    generator = torch.Generator().manual_seed(config.seed)
    return build_model(config.model, 0, init=config.init, generator=generator)


class BarlowTwinsTask(Task):
    """Barlow Twins on two views of every sample, k-NN accuracy along the way, linear
    probes on the frozen pre-trained and random backbones after the last epoch."""

    kind = "barlow-twins"
    metric_columns = METRIC_COLUMNS
    loss_name = "Barlow Twins loss"
    epoch_label = "pre-training epoch"
    augment = False  # the views are the augmentation
    final_stage = "linear evaluation"

    def build_network(self, dataset) -> nn.Module:
        return build_network(self.config)

    def prepare(self, dataset, plan: Plan, network: nn.Module) -> None:
        self.dataset, self.plan = dataset, plan
        self.views = TwoViews.for_dataset(dataset, seed=self.config.seed, blur=self.config.blur)
        share = plan.micro_batch * plan.accumulation_steps
        rank = self.processes.rank
        self.mine = slice(rank * share, (rank + 1) * share)

    def describe(self, plan: Plan) -> str:
        config, processes = self.config, self.processes
        return (
            f"Barlow Twins with {config.optimizer} on {config.dataset} with {config.model}, "
            f"projector {config.projector}: batch {config.batch_size} ({plan.micro_batch} x "
            f"{plan.accumulation_steps} x {processes.world_size} processes), "
            f"{plan.steps_per_epoch} steps/epoch, {config.epochs} epochs, lr "
            f"{plan.target_lr:g}, {processes.device}"
        )

    def finished_line(self, summary: dict[str, Any]) -> str:
        return (
            f"linear accuracy {summary['linear_acc']:.2f}% "
            f"(random backbone {summary['random_init_linear_acc']:.2f}%)"
        )

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.processes.device)

    def micro_batch_loss(self, train_network, inputs, labels, step, micro, autocast):
        plan = self.plan
        if micro == 0:
            # Drawn for the whole effective batch; this process's rows are its samples.
            drawn = self.views.draw(self.epoch, step, self.config.batch_size)
            self.step_params = tuple(view[self.mine].to(self.processes.device) for view in drawn)
        window = slice(micro * plan.micro_batch, (micro + 1) * plan.micro_batch)
        view1, view2 = self.views.apply(
            inputs, (self.step_params[0][window], self.step_params[1][window])
        )
        with autocast():
            z1, z2 = train_network(view1, view2)
        loss = barlow_twins_loss(z1, z2, self.config.bt_lambda)
        self.loss_sum += loss.detach()
        return loss / plan.accumulation_steps

    def end_epoch(self) -> dict[str, float]:
        # The loss is the same on every process: no sum across them.
        micro_batches = self.plan.steps_per_epoch * self.plan.accumulation_steps
        return {"train_loss": self.loss_sum.item() / micro_batches}

    def evaluate(self, network: nn.Module, epoch: int, train: dict[str, float]) -> dict:
        config = self.config
        last = epoch + 1 == config.epochs
        knn_acc = None
        if math.isfinite(train["train_loss"]) and (
            last or (config.knn_every and (epoch + 1) % config.knn_every == 0)
        ):
            autocast_dtype = AUTOCAST_DTYPES[config.precision]
            knn_acc = _knn_accuracy(
                network.backbone, self.dataset, self.processes.device, config, autocast_dtype
            )
        return {"knn_acc": knn_acc}

    def epoch_text(self, row: dict[str, Any]) -> str:
        knn_text = "" if row["knn_acc"] is None else f"  kNN acc {row['knn_acc']:.2f}%"
        return f"Barlow Twins loss {row['train_loss']:.4f}{knn_text}"

    def after_training(self, network: nn.Module, diverged_epoch: int | None) -> dict:
        return _evaluation_stage(
            network, self.dataset, self.config, self.processes.device, diverged_epoch, self.log
        )

    def summary_fields(
        self, plan: Plan, rows: list[dict[str, Any]], diverged_epoch: int | None, after: dict
    ) -> dict[str, Any]:
        config = self.config
        knn_rows = [row for row in rows if row["knn_acc"] is not None]
        epochs_run = len(rows)
        return {
            "task": "barlow-twins",
            "lmbda": plan.lmbda,
            "projector": config.projector,
            "bt_lambda": config.bt_lambda,
            "pretrain_epochs": epochs_run,
            "eval_epochs": config.eval_epochs,
            "final_train_loss": rows[-1]["train_loss"] if rows else float("nan"),
            "knn_acc": knn_rows[-1]["knn_acc"] if knn_rows else float("nan"),
            "knn_k": config.knn_k,
            **after,
            # The fields of a classification summary: the test accuracy is the linear probe's.
            "final_test_acc": after["linear_acc"],
            "final_test_acc5": after["linear_acc5"],
            "best_test_acc": after["linear_acc"],
            "best_epoch": epochs_run if diverged_epoch is None else None,
        }


def _knn_accuracy(backbone, dataset, device, config: PretrainConfig, autocast_dtype) -> float:
    (train_x, train_y), (test_x, test_y) = dataset_features(
        backbone, dataset, device, autocast_dtype=autocast_dtype
    )
    return knn_accuracy(train_x, train_y, test_x, test_y, dataset.num_classes, k=config.knn_k)


def _evaluation_stage(
    network: BarlowTwinsNetwork,
    dataset,
    config: PretrainConfig,
    device: torch.device,
    diverged_epoch: int | None,
    log: Callable[[str], None],
) -> dict[str, float]:
    """Linear probes on the pre-trained and on the random backbone (every process
    computes the same numbers; no communication)."""
    nan = float("nan")
    results = {
        "linear_acc": nan,
        "linear_acc5": nan,
        "linear_train_acc": nan,
        "random_init_linear_acc": nan,
        "random_init_linear_acc5": nan,
    }
    if diverged_epoch is not None:
        return results
    autocast_dtype = AUTOCAST_DTYPES[config.precision]
    started = time.perf_counter()
    for prefix, backbone in (
        ("", network.backbone),
        ("random_init_", random_backbone(config).to(device)),
    ):
        train, test = dataset_features(backbone, dataset, device, autocast_dtype=autocast_dtype)
        result = linear_evaluation(
            train, test, dataset.num_classes, epochs=config.eval_epochs, seed=config.seed
        )
        results[f"{prefix}linear_acc"] = result.top1
        results[f"{prefix}linear_acc5"] = result.top5
        if not prefix:
            results["linear_train_acc"] = result.train_top1
    log(
        f"linear evaluation ({config.eval_epochs} epochs, {time.perf_counter() - started:.1f}s): "
        f"top-1 {results['linear_acc']:.2f}% (top-5 {results['linear_acc5']:.2f}%); random "
        f"backbone {results['random_init_linear_acc']:.2f}%"
    )
    return results
