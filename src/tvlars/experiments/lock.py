"""One sweep per folder: the folder lock of :mod:`tvlars.folder_lock`, held by a sweep on
its ``--out`` folder and by each of its cells on the cell's run folder."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

from tvlars.folder_lock import LOCK_NAME, FolderLocked, folder_lock

__all__ = ["LOCK_NAME", "SweepLocked", "sweep_lock"]

#: Another sweep holds the folder's lock.
SweepLocked = FolderLocked


def sweep_lock(folder: str | os.PathLike[str]) -> AbstractContextManager[Path]:
    """Hold ``folder/.lock`` exclusively for the ``with`` block, or raise
    :class:`SweepLocked` if another process holds it."""
    return folder_lock(
        folder, "sweep", "wait for it to finish, or give this sweep another --out folder"
    )
