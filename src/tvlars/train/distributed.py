"""Processes started by ``torchrun``: who am I, and summing across all of us.

Everything collective is PyTorch's own (``torch.distributed``: Gloo on CPU, NCCL on
CUDA); this module only reads torchrun's environment and wraps the calls the loop makes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available; use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def start(device_name: str) -> Processes:
    """Join torchrun's process group when started by torchrun, else run as one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


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
