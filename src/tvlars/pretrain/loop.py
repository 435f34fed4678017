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

**Resumption.** A checkpoint is written after every pre-training epoch; a killed run
resumes from it, bit for bit on CPU (the order and the views of an epoch follow from
``(seed, epoch, step)``). A run killed during linear evaluation redoes that stage, which
takes seconds, from the last checkpoint, without pre-training again.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tvlars.data import DeviceBatches
from tvlars.models import build_model, check_input_kind
from tvlars.models.init import apply_init
from tvlars.pretrain.barlow_twins import barlow_twins_loss
from tvlars.pretrain.config import PretrainConfig
from tvlars.pretrain.knn import knn_accuracy
from tvlars.pretrain.linear_eval import dataset_features, linear_evaluation
from tvlars.pretrain.projector import BarlowTwinsNetwork, build_projector
from tvlars.pretrain.views import TwoViews
from tvlars.telemetry import LayerRecorder
from tvlars.train import distributed
from tvlars.train.config import Plan
from tvlars.train.loop import (
    AUTOCAST_DTYPES,
    EXIT_DIVERGED,
    applied_steps,
    load_data,
    progress_bar,
    save_epoch,
)
from tvlars.train.optimizers import build_optimizer, build_scheduler
from tvlars.train.run_folder import RunFolder

__all__ = ["EXIT_DIVERGED", "METRIC_COLUMNS", "build_network", "pretrain"]

METRIC_COLUMNS = ("epoch", "step", "lr", "train_loss", "knn_acc", "seconds")


def pretrain(
    config: PretrainConfig, *, progress: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Pre-train and evaluate (or resume, or report) the run ``config`` describes; return
    its summary."""
    config = config.resolved()
    if config.threads:
        torch.set_num_threads(config.threads)
    processes = distributed.start(config.device)
    try:
        return _run(config, processes, progress, log if processes.is_main else _silent)
    finally:
        distributed.stop(processes)


def _silent(message: str) -> None:
    pass


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


def _run(
    config: PretrainConfig,
    processes: distributed.Processes,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    run_id = config.run_id()
    folder = RunFolder(config.out or f"runs/{run_id}")
    if folder.is_finished():
        summary = folder.read_summary()
        log(
            f"{folder.path} is finished: linear accuracy {summary['linear_acc']:.2f}% "
            f"(random backbone {summary['random_init_linear_acc']:.2f}%); nothing to do"
        )
        return summary

    dataset = load_data(config, processes)
    check_input_kind(config.model, dataset.kind)
    plan = Plan.make(config, dataset.num_train, processes.world_size)
    device = processes.device
    network = build_network(config).to(device)
    if processes.distributed and device.type == "cuda":
        network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
    train_network: nn.Module = network
    if processes.distributed:
        train_network = nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        train_network = torch.compile(train_network)

    optimizer = build_optimizer(network, config, plan)
    scheduler = build_scheduler(optimizer, config, plan)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    batches = DeviceBatches.from_dataset(
        dataset,
        micro_batch=plan.micro_batch,
        augment=False,  # the views are the augmentation
        accumulation_steps=plan.accumulation_steps,
        world_size=processes.world_size,
        rank=processes.rank,
        seed=config.seed,
        device=device,
    )
    views = TwoViews.for_dataset(dataset, seed=config.seed, blur=config.blur)

    start_epoch, rows, elapsed, train_seconds = 0, [], 0.0, 0.0
    checkpoint = folder.load_checkpoint()
    if checkpoint is not None:
        if checkpoint["run_id"] != run_id:
            raise ValueError(
                f"{folder.path} holds run {checkpoint['run_id']}, not {run_id}: the settings "
                "differ from the ones it was started with. Use another --out folder."
            )
        network.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, rows = checkpoint["epoch"], checkpoint["metrics"]
        elapsed, train_seconds = checkpoint["seconds"], checkpoint["train_seconds"]
        stage = "linear evaluation" if start_epoch >= config.epochs else f"epoch {start_epoch}"
        log(f"resuming {folder.path} at {stage}")
    elif processes.is_main:
        folder.write_json(
            folder.config,
            {
                "run_id": run_id,
                "task": "barlow-twins",
                "config": config.to_dict(),
                "plan": plan.__dict__,
                "world_size": processes.world_size,
                "device": str(device),
            },
        )

    recorder = None
    if processes.is_main and config.telemetry_every and start_epoch < config.epochs:
        recorder = LayerRecorder(
            optimizer,
            network.named_parameters(),
            folder.layers,
            every=config.telemetry_every,
            start_step=applied_steps(checkpoint, start_epoch * plan.steps_per_epoch),
        )
    log(
        f"Barlow Twins with {config.optimizer} on {config.dataset} with {config.model}, "
        f"projector {config.projector}: batch {config.batch_size} ({plan.micro_batch} x "
        f"{plan.accumulation_steps} x {processes.world_size} processes), "
        f"{plan.steps_per_epoch} steps/epoch, {config.epochs} epochs, lr {plan.target_lr:g}, "
        f"{device}"
    )

    diverged_epoch = None
    autocast_dtype = AUTOCAST_DTYPES[config.precision]
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            train_loss, lr = _pretrain_epoch(
                train_network, optimizer, scheduler, scaler, batches, views, epoch, plan, config,
                processes, progress,
            )  # fmt: skip
            train_seconds += time.perf_counter() - started
            distributed.broadcast_buffers(network, processes)
            last = epoch + 1 == config.epochs
            knn_acc = None
            if math.isfinite(train_loss) and (
                last or (config.knn_every and (epoch + 1) % config.knn_every == 0)
            ):
                knn_acc = _knn_accuracy(network.backbone, dataset, device, config, autocast_dtype)
            elapsed += time.perf_counter() - started
            rows.append(
                {
                    "epoch": epoch + 1,
                    "step": (epoch + 1) * plan.steps_per_epoch,
                    "lr": lr,
                    "train_loss": train_loss,
                    "knn_acc": knn_acc,
                    "seconds": round(elapsed, 3),
                }
            )
            knn_text = "" if knn_acc is None else f"  kNN acc {knn_acc:.2f}%"
            log(
                f"epoch {epoch + 1:>4}/{config.epochs}  lr {lr:.4g}  "
                f"Barlow Twins loss {train_loss:.4f}{knn_text}  {elapsed:.1f}s"
            )
            save_epoch(
                folder,
                processes,
                recorder,
                rows,
                METRIC_COLUMNS,
                run_id=run_id,
                seconds=elapsed,
                train_seconds=train_seconds,
                model=network,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
            )
            if not math.isfinite(train_loss):
                diverged_epoch = epoch + 1
                log(f"diverged at epoch {diverged_epoch}: the Barlow Twins loss is {train_loss}")
                break
    finally:
        if recorder is not None:
            recorder.close()
    if rows and not math.isfinite(rows[-1]["train_loss"]):
        diverged_epoch = rows[-1]["epoch"]  # killed after a diverged epoch's checkpoint

    started = time.perf_counter()
    evaluation = _evaluation_stage(network, dataset, config, device, diverged_epoch, log)
    elapsed += time.perf_counter() - started
    summary = _summary(
        config, plan, processes, rows, elapsed, train_seconds, diverged_epoch, run_id, evaluation
    )
    if processes.is_main:
        folder.write_json(folder.summary, summary)
    return summary


def _pretrain_epoch(
    train_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler,
    batches: DeviceBatches,
    views: TwoViews,
    epoch: int,
    plan: Plan,
    config: PretrainConfig,
    processes: distributed.Processes,
    progress: bool,
) -> tuple[float, float]:
    """One epoch; returns (mean Barlow Twins loss of its micro-batches, lr of its last
    step)."""
    train_network.train()
    device = processes.device
    autocast_dtype = AUTOCAST_DTYPES[config.precision]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    share = plan.micro_batch * plan.accumulation_steps
    mine = slice(processes.rank * share, (processes.rank + 1) * share)
    micro_batches = batches.epoch(epoch)
    bar = progress_bar(
        plan.steps_per_epoch * config.batch_size,
        f"pre-training epoch {epoch + 1}/{config.epochs}",
        processes,
        progress,
    )
    lr = float(optimizer.param_groups[0]["lr"])
    for step in range(plan.steps_per_epoch):
        optimizer.zero_grad(set_to_none=True)
        # Drawn for the whole effective batch; this process's rows are its samples.
        params = tuple(view[mine].to(device) for view in views.draw(epoch, step, config.batch_size))
        for micro in range(plan.accumulation_steps):
            inputs, _ = next(micro_batches)
            window = slice(micro * plan.micro_batch, (micro + 1) * plan.micro_batch)
            view1, view2 = views.apply(inputs, (params[0][window], params[1][window]))
            last = micro == plan.accumulation_steps - 1
            # Gradients are all-reduced once per optimizer step, on the last micro-batch.
            no_sync = (
                train_network.no_sync()
                if processes.distributed and not last
                else contextlib.nullcontext()
            )
            with no_sync:
                with torch.autocast(
                    device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
                ):
                    z1, z2 = train_network(view1, view2)
                loss = barlow_twins_loss(z1, z2, config.bt_lambda)
                scaler.scale(loss / plan.accumulation_steps).backward()
            loss_sum += loss.detach()
        lr = float(optimizer.param_groups[0]["lr"])
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if bar is not None:
            bar.update(config.batch_size)
    if bar is not None:
        bar.close()
    # The loss is the same on every process: no sum across them.
    return loss_sum.item() / (plan.steps_per_epoch * plan.accumulation_steps), lr


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


def _summary(
    config: PretrainConfig,
    plan: Plan,
    processes: distributed.Processes,
    rows: list[dict[str, Any]],
    elapsed: float,
    train_seconds: float,
    diverged_epoch: int | None,
    run_id: str,
    evaluation: dict[str, float],
) -> dict[str, Any]:
    knn_rows = [row for row in rows if row["knn_acc"] is not None]
    epochs_run = len(rows)
    return {
        "run_id": run_id,
        "task": "barlow-twins",
        "dataset": config.dataset,
        "model": config.model,
        "optimizer": config.optimizer,
        "preset": config.preset,
        "schedule": config.schedule,
        "lr": plan.target_lr,
        "lmbda": plan.lmbda,
        "excluded_lr_scale": config.excluded_lr_scale,
        "batch_size": config.batch_size,
        "micro_batch": plan.micro_batch,
        "accumulation_steps": plan.accumulation_steps,
        "world_size": processes.world_size,
        "device": processes.device.type,
        "batch_norm": (
            "synchronized across processes"
            if processes.distributed and processes.device.type == "cuda"
            else f"per micro-batch of {plan.micro_batch} (ghost batch norm)"
        ),
        "projector": config.projector,
        "bt_lambda": config.bt_lambda,
        "epochs": epochs_run,
        "pretrain_epochs": epochs_run,
        "eval_epochs": config.eval_epochs,
        "final_train_loss": rows[-1]["train_loss"] if rows else float("nan"),
        "knn_acc": knn_rows[-1]["knn_acc"] if knn_rows else float("nan"),
        "knn_k": config.knn_k,
        **evaluation,
        # The fields of a classification summary: the test accuracy is the linear probe's.
        "final_test_acc": evaluation["linear_acc"],
        "final_test_acc5": evaluation["linear_acc5"],
        "best_test_acc": evaluation["linear_acc"],
        "best_epoch": epochs_run if diverged_epoch is None else None,
        "wall_seconds": round(elapsed, 3),  # pre-training, kNN and linear evaluation
        "images_per_second": (
            epochs_run * plan.steps_per_epoch * config.batch_size / train_seconds
            if train_seconds
            else None
        ),
        "diverged": diverged_epoch is not None,
        "diverged_epoch": diverged_epoch,
    }
