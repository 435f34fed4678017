"""What every benchmark here needs from the machine: device waits and the CPU others use."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that a wall-clock interval covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (steal included), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
