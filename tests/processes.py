"""Helpers for tests that start several processes the way torchrun would."""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    """A TCP port on localhost that nothing listens on (for MASTER_PORT)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def join_as_torchrun_rank(rank: int, port: int, world_size: int = 2, **extra: str) -> None:
    """Set the environment torchrun gives process ``rank`` (plus ``extra`` variables)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world_size),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        **extra,
    )
