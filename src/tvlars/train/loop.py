"""Classification: one run from a :class:`RunConfig` to a finished run folder.

The driver (:mod:`tvlars.train.driver`) runs the epochs, the checkpoints and resumption;
this module adds what is classification's own. The effective batch is ``micro_batch *
accumulation_steps * world_size``. Each process sums the cross-entropy of its
micro-batches and divides by its share of the batch; DDP then averages over the processes,
so the gradient is that of the mean loss over the whole effective batch, whatever the
split. Batch norm normalizes each micro-batch (ghost batch norm); on CUDA with several
processes, SyncBatchNorm normalizes across them. After every epoch the whole test set is
evaluated: loss, top-1 and top-5 accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tvlars.data import EvalBatches
from tvlars.models import build_model
from tvlars.train import distributed
from tvlars.train.config import Plan, RunConfig
from tvlars.train.driver import (
    AUTOCAST_DTYPES,
    EXIT_DIVERGED,
    Task,
    TrainingInterrupted,
    run_task,
)
from tvlars.train.run_folder import METRIC_COLUMNS

__all__ = ["EXIT_DIVERGED", "ClassificationTask", "TrainingInterrupted", "evaluate", "train"]


def train(
    config: RunConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    restart: bool = False,
) -> dict:
    """Train (or resume, or report) the run ``config`` describes; return its summary.
    ``restart`` deletes the run folder's previous files first (a damaged checkpoint)."""
    return run_task(ClassificationTask, config, progress=progress, log=log, restart=restart)


class ClassificationTask(Task):
    """Cross-entropy on labelled samples; the test set evaluated after every epoch."""

    metric_columns = METRIC_COLUMNS

    def build_network(self, dataset) -> nn.Module:
        config = self.config
        return build_model(
            config.model,
            dataset.num_classes,
            init=config.init,
            generator=torch.Generator().manual_seed(config.seed),
        )

    def prepare(self, dataset, plan: Plan, network: nn.Module) -> None:
        processes = self.processes
        self.plan = plan
        self.evals = EvalBatches.from_dataset(
            dataset,
            batch_size=max(plan.micro_batch, 256),
            world_size=processes.world_size,
            rank=processes.rank,
            device=processes.device,
        )

    def describe(self, plan: Plan) -> str:
        config, processes = self.config, self.processes
        return (
            f"{config.optimizer} on {config.dataset} with {config.model}: batch "
            f"{config.batch_size} ({plan.micro_batch} x {plan.accumulation_steps} x "
            f"{processes.world_size} processes), {plan.steps_per_epoch} steps/epoch, "
            f"{config.epochs} epochs, lr {plan.target_lr:g}, excluded lr scale "
            f"{config.excluded_lr_scale:g}, {processes.device}"
        )

    def finished_line(self, summary: dict[str, Any]) -> str:
        return (
            f"test accuracy {summary['final_test_acc']:.2f}% (best {summary['best_test_acc']:.2f}%)"
        )

    def begin_epoch(self, epoch: int) -> None:
        device = self.processes.device
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)

    def micro_batch_loss(self, train_network, inputs, labels, step, micro, autocast):
        with autocast():
            logits = train_network(inputs)
        summed = F.cross_entropy(logits.float(), labels, reduction="sum")
        self.loss_sum += summed.detach()
        self.correct += (logits.argmax(dim=1) == labels).sum()
        return summed / (self.plan.micro_batch * self.plan.accumulation_steps)

    def end_epoch(self) -> dict[str, float]:
        stacked = torch.stack([self.loss_sum, self.correct.double()])
        totals = distributed.sum_across(stacked, self.processes)
        seen = self.plan.steps_per_epoch * self.config.batch_size
        return {"train_loss": totals[0].item() / seen, "train_acc": totals[1].item() / seen * 100}

    def evaluate(self, network: nn.Module, epoch: int, train: dict[str, float]) -> dict:
        test_loss, test_acc, test_acc5 = evaluate(network, self.evals, self.config, self.processes)
        return {"test_loss": test_loss, "test_acc": test_acc, "test_acc5": test_acc5}

    def epoch_text(self, row: dict[str, Any]) -> str:
        return (
            f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2f}%  test loss "
            f"{row['test_loss']:.4f} acc {row['test_acc']:.2f}% (top-5 {row['test_acc5']:.2f}%)"
        )

    def summary_fields(
        self, plan: Plan, rows: list[dict[str, Any]], diverged_epoch: int | None, after: dict
    ) -> dict[str, Any]:
        finite = [row for row in rows if math.isfinite(row["test_acc"])]
        best = max(finite, key=lambda row: row["test_acc"]) if finite else None
        return {
            "final_test_acc": rows[-1]["test_acc"] if rows else float("nan"),
            "final_test_acc5": rows[-1]["test_acc5"] if rows else float("nan"),
            "best_test_acc": best["test_acc"] if best else float("nan"),
            "best_epoch": best["epoch"] if best else None,
        }


@torch.no_grad()
def evaluate(
    model: nn.Module, evals: EvalBatches, config: RunConfig, processes: distributed.Processes
) -> tuple[float, float, float]:
    """Mean test loss, top-1 and top-5 accuracy (%) over the whole test set: each process
    sums over its shard, and the sums are added across processes before dividing."""
    model.eval()
    autocast_dtype = AUTOCAST_DTYPES[config.precision]
    sums = torch.zeros(4, dtype=torch.float64, device=processes.device)
    for inputs, labels in evals:
        with torch.autocast(
            processes.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
        ):
            logits = model(inputs)
        logits = logits.float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        sums[0] += F.cross_entropy(logits, labels, reduction="sum")
        sums[1] += (top[:, 0] == labels).sum()
        sums[2] += (top == labels[:, None]).any(dim=1).sum()
        sums[3] += labels.numel()
    loss, top1, top5, count = distributed.sum_across(sums, processes).tolist()
    return loss / count, top1 / count * 100, top5 / count * 100
