"""Processes started by ``torchrun``: who am I, and summing across all of us.

Everything collective is PyTorch's own (``torch.distributed``: Gloo on CPU, NCCL on
CUDA); this module only reads torchrun's environment and wraps the calls the loop makes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tvlars.errors import UserError


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    #: Whether :func:`start` created the process group (then :func:`stop` ends it); a
    #: group that was already there, such as a sweep's, outlives the run.
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            "numbered from 0"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: MPS is not available here; use --device cpu")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return device


def start(device_name: str) -> Processes:
    """Join torchrun's process group when started by torchrun, else run as one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    owns_group = world_size > 1 and not dist.is_initialized()
    if owns_group:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world_size, local_rank, device, owns_group)


def stop(processes: Processes) -> None:
    """End the process group if ``processes`` started it."""
    if processes.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(value, processes: Processes):
    """Process 0's ``value``, on every process (any picklable object)."""
    if not processes.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across(tensor: torch.Tensor, processes: Processes) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all processes (in place; returned)."""
    if processes.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(processes: Processes) -> None:
    if processes.distributed:
        dist.barrier()


def broadcast_buffers(model: torch.nn.Module, processes: Processes) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics).

    With per-process batch norm each process's running statistics drift apart during an
    epoch; evaluating with one set makes the test accuracy that of one model.
    """
    if processes.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
