"""One classification run, from a :class:`RunConfig` to a finished run folder.

The effective batch is ``micro_batch * accumulation_steps * world_size``. Each process sums
the cross-entropy of its micro-batches and divides by its share of the batch; DDP then
averages over the processes, so the gradient is that of the mean loss over the whole
effective batch, whatever the split. Batch norm normalizes each micro-batch (ghost batch
norm); on CUDA with several processes, SyncBatchNorm normalizes across them.

A run checkpoints at the end of every epoch. The data order and augmentation of an
epoch follow from (seed, epoch) alone, so a killed run resumed from its checkpoint ends
with the same weights and metrics, bit for bit on CPU, as one never killed.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tvlars.data import DeviceBatches, EvalBatches, load_dataset
from tvlars.models import build_model, check_input_kind
from tvlars.telemetry import LayerRecorder
from tvlars.train import distributed
from tvlars.train.config import Plan, RunConfig
from tvlars.train.optimizers import build_optimizer, build_scheduler
from tvlars.train.run_folder import METRIC_COLUMNS, RunFolder

#: Exit status of ``tvlars train`` when the loss became NaN or infinite.
EXIT_DIVERGED = 3
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def train(config: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train (or resume, or report) the run ``config`` describes; return its summary."""
    config = config.resolved()
    if config.threads:
        torch.set_num_threads(config.threads)
    processes = distributed.start(config.device)
    try:
        return _train(config, processes, progress, log if processes.is_main else _silent)
    finally:
        distributed.stop(processes)


def _silent(message: str) -> None:
    pass


def load_data(config: RunConfig, processes: distributed.Processes):
    """The run's dataset. The first process generates or decodes and caches it; the others
    then read the cache instead of decoding the same files at the same time."""

    def load():
        return load_dataset(
            config.dataset, config.data_dir, num_samples=config.num_samples, seed=None
        )

    dataset = load() if processes.is_main else None
    distributed.barrier(processes)
    return dataset if processes.is_main else load()


def _train(
    config: RunConfig, processes: distributed.Processes, progress: bool, log: Callable[[str], None]
) -> dict:
    run_id = config.run_id()
    folder = RunFolder(config.out or f"runs/{run_id}")
    if folder.is_finished():
        summary = folder.read_summary()
        log(
            f"{folder.path} is finished: test accuracy {summary['final_test_acc']:.2f}% "
            f"(best {summary['best_test_acc']:.2f}%); nothing to do"
        )
        return summary

    dataset = load_data(config, processes)
    check_input_kind(config.model, dataset.kind)
    plan = Plan.make(config, dataset.num_train, processes.world_size)
    device = processes.device
    model = build_model(
        config.model,
        dataset.num_classes,
        init=config.init,
        generator=torch.Generator().manual_seed(config.seed),
    ).to(device)
    if processes.distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_model: nn.Module = model
    if processes.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        train_model = torch.compile(train_model)

    optimizer = build_optimizer(model, config, plan)
    scheduler = build_scheduler(optimizer, config, plan)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    batches = DeviceBatches.from_dataset(
        dataset,
        micro_batch=plan.micro_batch,
        accumulation_steps=plan.accumulation_steps,
        world_size=processes.world_size,
        rank=processes.rank,
        seed=config.seed,
        device=device,
    )
    evals = EvalBatches.from_dataset(
        dataset,
        batch_size=max(plan.micro_batch, 256),
        world_size=processes.world_size,
        rank=processes.rank,
        device=device,
    )

    start_epoch, rows, elapsed, train_seconds = 0, [], 0.0, 0.0
    checkpoint = folder.load_checkpoint()
    if checkpoint is not None:
        if checkpoint["run_id"] != run_id:
            raise ValueError(
                f"{folder.path} holds run {checkpoint['run_id']}, not {run_id}: the settings "
                "differ from the ones it was started with. Use another --out folder."
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, rows = checkpoint["epoch"], checkpoint["metrics"]
        elapsed, train_seconds = checkpoint["seconds"], checkpoint["train_seconds"]
        log(f"resuming {folder.path} at epoch {start_epoch}")
    elif processes.is_main:
        folder.write_json(
            folder.config,
            {
                "run_id": run_id,
                "config": config.to_dict(),
                "plan": plan.__dict__,
                "world_size": processes.world_size,
                "device": str(device),
            },
        )

    recorder = None
    if processes.is_main and config.telemetry_every:
        recorder = LayerRecorder(
            optimizer,
            model.named_parameters(),
            folder.layers,
            every=config.telemetry_every,
            start_step=applied_steps(checkpoint, start_epoch * plan.steps_per_epoch),
        )
    log(
        f"{config.optimizer} on {config.dataset} with {config.model}: batch {config.batch_size} "
        f"({plan.micro_batch} x {plan.accumulation_steps} x {processes.world_size} processes), "
        f"{plan.steps_per_epoch} steps/epoch, {config.epochs} epochs, lr {plan.target_lr:g}, "
        f"excluded lr scale {config.excluded_lr_scale:g}, {device}"
    )

    diverged_epoch = None
    try:
        # A run killed after the checkpoint of a diverged epoch is over: train no further.
        diverged_before = bool(rows) and not math.isfinite(rows[-1]["train_loss"])
        for epoch in range(start_epoch, start_epoch if diverged_before else config.epochs):
            started = time.perf_counter()
            train_loss, train_acc, lr = _train_epoch(
                train_model,
                optimizer,
                scheduler,
                scaler,
                batches,
                epoch,
                plan,
                config,
                processes,
                progress,
            )
            train_seconds += time.perf_counter() - started
            distributed.broadcast_buffers(model, processes)
            test_loss, test_acc, test_acc5 = evaluate(model, evals, config, processes)
            elapsed += time.perf_counter() - started
            rows.append(
                {
                    "epoch": epoch + 1,
                    "step": (epoch + 1) * plan.steps_per_epoch,
                    "lr": lr,
                    "train_loss": train_loss,
                    "train_acc": train_acc,
                    "test_loss": test_loss,
                    "test_acc": test_acc,
                    "test_acc5": test_acc5,
                    "seconds": round(elapsed, 3),
                }
            )
            log(
                f"epoch {epoch + 1:>4}/{config.epochs}  lr {lr:.4g}  train loss {train_loss:.4f} "
                f"acc {train_acc:.2f}%  test loss {test_loss:.4f} acc {test_acc:.2f}% "
                f"(top-5 {test_acc5:.2f}%)  {elapsed:.1f}s"
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
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
            )
            if not math.isfinite(train_loss):
                diverged_epoch = epoch + 1
                log(f"diverged at epoch {diverged_epoch}: the training loss is {train_loss}")
                break
    finally:
        if recorder is not None:
            recorder.close()
    if diverged_epoch is None and rows and not math.isfinite(rows[-1]["train_loss"]):
        diverged_epoch = rows[-1]["epoch"]  # killed after a diverged epoch's checkpoint

    summary = _summary(
        config, plan, processes, rows, elapsed, train_seconds, diverged_epoch, run_id
    )
    if processes.is_main:
        folder.write_json(folder.summary, summary)
    return summary


def _train_epoch(
    train_model,
    optimizer,
    scheduler,
    scaler,
    batches: DeviceBatches,
    epoch: int,
    plan: Plan,
    config: RunConfig,
    processes: distributed.Processes,
    progress: bool,
) -> tuple[float, float, float]:
    """One epoch; returns (mean train loss, train accuracy %, lr of its last step)."""
    train_model.train()
    device = processes.device
    autocast_dtype = AUTOCAST_DTYPES[config.precision]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    share = plan.micro_batch * plan.accumulation_steps
    micro_batches = batches.epoch(epoch)
    bar = progress_bar(
        plan.steps_per_epoch * config.batch_size,
        f"epoch {epoch + 1}/{config.epochs}",
        processes,
        progress,
    )
    lr = float(optimizer.param_groups[0]["lr"])
    for _ in range(plan.steps_per_epoch):
        optimizer.zero_grad(set_to_none=True)
        for micro in range(plan.accumulation_steps):
            inputs, labels = next(micro_batches)
            last = micro == plan.accumulation_steps - 1
            # Gradients are all-reduced once per optimizer step, on the last micro-batch.
            no_sync = (
                train_model.no_sync()
                if processes.distributed and not last
                else contextlib.nullcontext()
            )
            with no_sync:
                with torch.autocast(
                    device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
                ):
                    logits = train_model(inputs)
                summed = F.cross_entropy(logits.float(), labels, reduction="sum")
                scaler.scale(summed / share).backward()
            loss_sum += summed.detach()
            correct += (logits.argmax(dim=1) == labels).sum()
        lr = float(optimizer.param_groups[0]["lr"])
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if bar is not None:
            bar.update(config.batch_size)
    if bar is not None:
        bar.close()
    totals = distributed.sum_across(torch.stack([loss_sum, correct.double()]), processes)
    seen = plan.steps_per_epoch * config.batch_size
    return totals[0].item() / seen, totals[1].item() / seen * 100, lr


def save_epoch(
    folder: RunFolder,
    processes: distributed.Processes,
    recorder: LayerRecorder | None,
    rows: list[dict[str, Any]],
    columns: tuple[str, ...],
    *,
    run_id: str,
    seconds: float,
    train_seconds: float,
    model: nn.Module,
    optimizer,
    scheduler,
    scaler,
) -> None:
    """Make a finished epoch durable: telemetry first, then metrics.csv, then the checkpoint
    (each written atomically), so that a resumed run finds files that agree with it."""
    if recorder is not None:
        recorder.flush()
    if processes.is_main:
        folder.write_metrics(rows, columns)
        folder.save_checkpoint(
            {
                "run_id": run_id,
                "epoch": rows[-1]["epoch"],
                "metrics": rows,
                "seconds": seconds,
                "train_seconds": train_seconds,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "applied_steps": None if recorder is None else recorder.next_step,
            }
        )


def applied_steps(checkpoint: dict[str, Any] | None, attempted: int) -> int:
    """The optimizer steps applied before ``checkpoint`` (0 without one), where telemetry
    resumes its step count: fewer than the ``attempted`` ones when the GradScaler skipped
    some. ``attempted`` stands in where the checkpoint did not record it."""
    if checkpoint is None:
        return 0
    recorded = checkpoint.get("applied_steps")
    return attempted if recorded is None else recorded


def progress_bar(samples: int, description: str, processes: distributed.Processes, progress: bool):
    """A tqdm bar over ``samples`` on the main process (None elsewhere or when off): counted
    in samples, so that it shows images/s and the ETA."""
    if not (progress and processes.is_main):
        return None
    from tqdm import tqdm

    return tqdm(
        total=samples, desc=description, unit="img", unit_scale=True, leave=False, disable=None
    )


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


def _summary(
    config: RunConfig,
    plan: Plan,
    processes: distributed.Processes,
    rows: list[dict[str, Any]],
    elapsed: float,
    train_seconds: float,
    diverged_epoch: int | None,
    run_id: str,
) -> dict[str, Any]:
    finite = [row for row in rows if math.isfinite(row["test_acc"])]
    best = max(finite, key=lambda row: row["test_acc"]) if finite else None
    epochs_run = len(rows)
    return {
        "run_id": run_id,
        "dataset": config.dataset,
        "model": config.model,
        "optimizer": config.optimizer,
        "preset": config.preset,
        "schedule": config.schedule,
        "lr": plan.target_lr,
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
        "epochs": epochs_run,
        "final_test_acc": rows[-1]["test_acc"] if rows else float("nan"),
        "final_test_acc5": rows[-1]["test_acc5"] if rows else float("nan"),
        "best_test_acc": best["test_acc"] if best else float("nan"),
        "best_epoch": best["epoch"] if best else None,
        "wall_seconds": round(elapsed, 3),
        "images_per_second": (
            epochs_run * plan.steps_per_epoch * config.batch_size / train_seconds
            if train_seconds
            else None
        ),
        "diverged": diverged_epoch is not None,
        "diverged_epoch": diverged_epoch,
    }
