"""One sweep per folder: an exclusive ``flock`` on ``DIR/.lock`` held for the whole sweep.

The lock belongs to the open file, so the kernel drops it when the sweep exits however it
exits (even killed with SIGKILL): a stale lock file never blocks the next sweep. A second
sweep on a locked folder refuses at once, naming the holder, rather than waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".lock"


class SweepLocked(RuntimeError):
    """Another sweep holds the folder's lock."""


@contextlib.contextmanager
def sweep_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``folder/.lock`` exclusively for the ``with`` block, or raise
    :class:`SweepLocked` if another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SweepLocked(
                f"{folder} is in use by another sweep ({holder}); wait for it to finish, "
                "or give this sweep another --out folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield path
    finally:
        # Closing the file releases the lock.
        handle.close()
