"""The epoch and step driver that every kind of run shares.

A run is a :class:`Task` driven by :func:`run_task`. The task says what differs between
classification (:mod:`tvlars.train.loop`) and Barlow Twins (:mod:`tvlars.pretrain.loop`):
the network, the loss of one micro-batch, the evaluation after each epoch, what runs after
the last epoch and the summary's own fields. The driver does what does not differ:

- the run folder: a finished run is reported, not rerun; ``config.json`` on a fresh start;
  after every epoch the telemetry, ``metrics.csv`` and ``checkpoint.pt``, each atomically;
  ``summary.json`` at the end;
- resumption: a killed run continues from its last checkpoint. The data order (and any
  augmentation) of an epoch follows from ``(seed, epoch)`` alone, so on CPU the resumed
  run ends with the bits of one never killed;
- the optimizer steps: ``micro_batch * accumulation_steps * world_size`` samples each,
  gradients all-reduced by DDP once per step (on the last micro-batch), the forward pass
  under autocast (``precision``), fp16 loss scaling, the LR scheduler after each step;
- divergence: an epoch whose training loss is NaN or infinite ends the run, which is
  then finished with ``"diverged": true`` (a run killed after such an epoch's checkpoint
  trains no further).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tvlars.data import DeviceBatches, load_dataset
from tvlars.errors import UserError
from tvlars.models import check_input_kind
from tvlars.telemetry import LayerRecorder
from tvlars.telemetry.tensorboard import open_writer, write_epoch
from tvlars.train import distributed
from tvlars.train.config import Plan, RunConfig
from tvlars.train.optimizers import build_optimizer, build_scheduler
from tvlars.train.run_folder import RunFolder

#: Exit status of ``tvlars train`` and ``tvlars pretrain`` when the loss became NaN or inf.
EXIT_DIVERGED = 3
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

Log = Callable[[str], None]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during epoch ``epoch`` (counted from 1): the run resumes from the checkpoint
    of the epoch before."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


class Task:
    """What a kind of run adds to the driver.

    The driver calls, in order: :meth:`build_network` and :meth:`prepare` once; per epoch
    :meth:`begin_epoch`, :meth:`micro_batch_loss` for every micro-batch, :meth:`end_epoch`
    and :meth:`evaluate`; then :meth:`after_training` and :meth:`summary_fields`.
    """

    #: ``config.json``'s ``"task"`` (None: not written, as for classification).
    kind: str | None = None
    #: The columns of ``metrics.csv``: epoch, step and lr, then the task's own.
    metric_columns: tuple[str, ...] = ()
    #: What the training loss is called in the divergence message.
    loss_name = "training loss"
    #: What the progress bar calls an epoch.
    epoch_label = "epoch"
    #: ``DeviceBatches``' own augmentation (None: the dataset kind's default).
    augment: bool | None = None
    #: What runs after the last epoch, for the resume message (None: nothing).
    final_stage: str | None = None

    def __init__(self, config: RunConfig, processes: distributed.Processes, log: Log):
        self.config = config
        self.processes = processes
        self.log = log

    def build_network(self, dataset) -> nn.Module:
        """The module whose parameters the optimizer steps (on the CPU; the driver moves it)."""
        raise NotImplementedError

    def prepare(self, dataset, plan: Plan, network: nn.Module) -> None:
        """Anything the task builds once the data, the plan and the network exist."""

    def describe(self, plan: Plan) -> str:
        """The line logged before training."""
        raise NotImplementedError

    def finished_line(self, summary: dict[str, Any]) -> str:
        """The result of a finished run, for the "nothing to do" message."""
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> None:
        """Reset the epoch's sums."""

    def micro_batch_loss(
        self,
        train_network: nn.Module,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        step: int,
        micro: int,
        autocast: Callable[[], contextlib.AbstractContextManager],
    ) -> torch.Tensor:
        """The loss whose gradient is this micro-batch's share of the step's gradient.
        Run the forward pass inside ``autocast()``; add to the epoch's sums."""
        raise NotImplementedError

    def end_epoch(self) -> dict[str, float]:
        """The epoch's training metrics, ``train_loss`` among them."""
        raise NotImplementedError

    def evaluate(self, network: nn.Module, epoch: int, train: dict[str, float]) -> dict:
        """The metrics measured after epoch ``epoch`` (0-based)."""
        return {}

    def epoch_text(self, row: dict[str, Any]) -> str:
        """The epoch's metrics in its log line."""
        raise NotImplementedError

    def after_training(self, network: nn.Module, diverged_epoch: int | None) -> dict:
        """What runs after the last epoch (e.g. linear evaluation); its results."""
        return {}

    def summary_fields(
        self, plan: Plan, rows: list[dict[str, Any]], diverged_epoch: int | None, after: dict
    ) -> dict[str, Any]:
        """The summary's fields beyond those every run has."""
        raise NotImplementedError


def run_task(
    task_class: type[Task],
    config: RunConfig,
    *,
    progress: bool = True,
    log: Log = print,
    restart: bool = False,
) -> dict[str, Any]:
    """Run (or resume, or report) the run ``config`` describes as a ``task_class`` task;
    return its summary. The run holds its folder's lock throughout; ``restart`` deletes the
    folder's previous files first (e.g. a damaged checkpoint)."""
    config = config.resolved()
    if config.threads:
        torch.set_num_threads(config.threads)
    processes = distributed.start(config.device)
    try:
        log = log if processes.is_main else _silent
        folder = RunFolder(config.out or f"runs/{config.run_id()}")
        with folder.held(processes, restart):
            return _drive(task_class(config, processes, log), folder, progress)
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


def _drive(task: Task, folder: RunFolder, progress: bool) -> dict[str, Any]:
    config, processes, log = task.config, task.processes, task.log
    run_id = config.run_id()
    summary = folder.finished_summary(run_id)  # refuses another run's folder
    if summary is not None:
        log(f"{folder.path} is finished: {task.finished_line(summary)}; nothing to do")
        return summary

    dataset = load_data(config, processes)
    check_input_kind(config.model, dataset.kind)
    plan = Plan.make(config, dataset.num_train, processes.world_size)
    device = processes.device
    network = task.build_network(dataset).to(device)
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
        augment=task.augment,
        accumulation_steps=plan.accumulation_steps,
        world_size=processes.world_size,
        rank=processes.rank,
        seed=config.seed,
        device=device,
    )
    task.prepare(dataset, plan, network)

    start_epoch, rows, elapsed, train_seconds = 0, [], 0.0, 0.0
    checkpoint = folder.load_checkpoint(run_id)  # refuses a damaged or another run's one
    if checkpoint is not None:
        _restore(folder, checkpoint, network, optimizer, scheduler, scaler)
        start_epoch, rows = checkpoint["epoch"], checkpoint["metrics"]
        elapsed, train_seconds = checkpoint["seconds"], checkpoint["train_seconds"]
        at_end = start_epoch >= config.epochs and task.final_stage is not None
        log(f"resuming {folder.path} at {task.final_stage if at_end else f'epoch {start_epoch}'}")
    elif processes.is_main:
        folder.write_json(
            folder.config,
            {
                "run_id": run_id,
                **({"task": task.kind} if task.kind else {}),
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
            tensorboard=(
                open_writer(folder.path, purge_step=start_epoch * plan.steps_per_epoch)
                if config.tensorboard
                else None
            ),
        )
    log(task.describe(plan))

    diverged_epoch = None
    epoch = start_epoch
    try:
        # A run killed after the checkpoint of a diverged epoch is over: train no further.
        diverged_before = bool(rows) and not math.isfinite(rows[-1]["train_loss"])
        for epoch in range(start_epoch, start_epoch if diverged_before else config.epochs):
            started = time.perf_counter()
            lr, train_metrics = _train_epoch(
                task, train_network, optimizer, scheduler, scaler, batches, epoch, plan, progress
            )
            train_seconds += time.perf_counter() - started
            distributed.broadcast_buffers(network, processes)
            eval_metrics = task.evaluate(network, epoch, train_metrics)
            elapsed += time.perf_counter() - started
            row = {
                "epoch": epoch + 1,
                "step": (epoch + 1) * plan.steps_per_epoch,
                "lr": lr,
                **train_metrics,
                **eval_metrics,
                "seconds": round(elapsed, 3),
            }
            rows.append(row)
            log(
                f"epoch {epoch + 1:>4}/{config.epochs}  lr {lr:.4g}  {task.epoch_text(row)}  "
                f"{elapsed:.1f}s"
            )
            save_epoch(
                folder,
                processes,
                recorder,
                rows,
                task.metric_columns,
                run_id=run_id,
                seconds=elapsed,
                train_seconds=train_seconds,
                model=network,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
            )
            if not math.isfinite(row["train_loss"]):
                diverged_epoch = epoch + 1
                loss = row["train_loss"]
                log(f"diverged at epoch {diverged_epoch}: the {task.loss_name} is {loss}")
                break
    except KeyboardInterrupt:
        raise TrainingInterrupted(epoch + 1) from None
    finally:
        if recorder is not None:
            recorder.close()
            if recorder.tensorboard is not None:
                recorder.tensorboard.close()
    if diverged_epoch is None and rows and not math.isfinite(rows[-1]["train_loss"]):
        diverged_epoch = rows[-1]["epoch"]  # killed after a diverged epoch's checkpoint

    started = time.perf_counter()
    after = task.after_training(network, diverged_epoch)
    elapsed += time.perf_counter() - started
    summary = {
        **_common_summary(config, plan, processes, rows, elapsed, train_seconds, run_id),
        **task.summary_fields(plan, rows, diverged_epoch, after),
        "diverged": diverged_epoch is not None,
        "diverged_epoch": diverged_epoch,
    }
    if processes.is_main:
        folder.write_json(folder.summary, summary)
    return summary


def _train_epoch(
    task: Task,
    train_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    batches: DeviceBatches,
    epoch: int,
    plan: Plan,
    progress: bool,
) -> tuple[float, dict[str, float]]:
    """One epoch of optimizer steps; returns (lr of its last step, the task's metrics)."""
    config, processes = task.config, task.processes
    train_network.train()
    device = processes.device
    autocast_dtype = AUTOCAST_DTYPES[config.precision]

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)

    task.begin_epoch(epoch)
    micro_batches = batches.epoch(epoch)
    bar = progress_bar(
        plan.steps_per_epoch * config.batch_size,
        f"{task.epoch_label} {epoch + 1}/{config.epochs}",
        processes,
        progress,
    )
    lr = float(optimizer.param_groups[0]["lr"])
    for step in range(plan.steps_per_epoch):
        optimizer.zero_grad(set_to_none=True)
        for micro in range(plan.accumulation_steps):
            inputs, labels = next(micro_batches)
            last = micro == plan.accumulation_steps - 1
            # Gradients are all-reduced once per optimizer step, on the last micro-batch.
            no_sync = (
                train_network.no_sync()
                if processes.distributed and not last
                else contextlib.nullcontext()
            )
            with no_sync:
                loss = task.micro_batch_loss(train_network, inputs, labels, step, micro, autocast)
                scaler.scale(loss).backward()
        lr = float(optimizer.param_groups[0]["lr"])
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if bar is not None:
            bar.update(config.batch_size)
    if bar is not None:
        bar.close()
    return lr, task.end_epoch()


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
        if recorder.tensorboard is not None:
            first_step = rows[-2]["step"] if len(rows) > 1 else 0
            write_epoch(recorder.tensorboard, rows[-1], optimizer, first_step)
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


def _restore(folder: RunFolder, checkpoint: dict[str, Any], *stateful: Any) -> None:
    """Load the checkpoint's model, optimizer, scheduler and loss-scaler states into
    ``stateful`` (in that order), or raise :class:`UserError` when they do not fit: a
    checkpoint of this run's settings written by a version of tvlars whose model or
    optimizer state differs (its run id hashes the settings, not the code)."""
    keys = ("model", "optimizer", "scheduler", "scaler")
    for key, target in zip(keys, stateful, strict=True):
        try:
            target.load_state_dict(checkpoint[key])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as error:
            # torch's first line names the module, the second what does not fit.
            reason = " ".join(line.strip() for line in str(error).strip().splitlines()[:2])
            raise UserError(
                f"{folder.checkpoint} does not fit this run: its {key} state cannot be "
                f"loaded ({type(error).__name__}: {reason}). It was probably written by "
                "another version of tvlars. Move it away (e.g. mv "
                f"{folder.checkpoint} {folder.checkpoint}.old) and run the same command again "
                "to start the run over, or add --restart"
            ) from None


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


def _common_summary(
    config: RunConfig,
    plan: Plan,
    processes: distributed.Processes,
    rows: list[dict[str, Any]],
    elapsed: float,
    train_seconds: float,
    run_id: str,
) -> dict[str, Any]:
    """The summary fields of every run."""
    epochs_run = len(rows)
    return {
        "run_id": run_id,
        "dataset": config.dataset,
        "model": config.model,
        "optimizer": config.optimizer,
        "preset": config.preset,
        "schedule": config.schedule,
        "trust_clip": config.trust_clip,
        "max_grad_norm": config.max_grad_norm,
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
        "wall_seconds": round(elapsed, 3),
        "images_per_second": (
            epochs_run * plan.steps_per_epoch * config.batch_size / train_seconds
            if train_seconds
            else None
        ),
    }
