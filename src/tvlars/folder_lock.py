"""One writer per folder: an exclusive ``flock`` on ``DIR/.lock``, held while a sweep or a
run uses the folder.

The lock belongs to the open file, so the kernel drops it when the process exits however
it exits (even killed with SIGKILL): a stale lock file never blocks the next process. A
second process on a locked folder is refused at once, with the holder's pid, rather than
made to wait. Within one process the lock is re-entrant: a sweep's worker holds its cell's
folder and then trains the run in it, which takes the same folder's lock again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from tvlars.errors import UserError

LOCK_NAME = ".lock"

# Folders this process holds the lock of, with how many ``with`` blocks hold each.
_held: dict[Path, int] = {}


class FolderLocked(UserError, RuntimeError):
    """Another process holds the folder's lock."""


def make_folder(folder: Path, flag: str) -> None:
    """Create ``folder`` (and its parents) or raise :class:`UserError` saying why it cannot
    be had: a file in its place or on its path, no permission, a full or read-only disk."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder} is a file, not a folder; give another {flag}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(
            f"{flag} {folder}: part of this path is a file, not a folder; give another {flag}"
        ) from None
    except OSError as error:
        raise UserError(
            f"{flag} {folder}: cannot create it ({error.strerror or error}); give a folder "
            "you can write to"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {folder} is not writable; give a folder you can write to")


@contextlib.contextmanager
def folder_lock(
    folder: str | os.PathLike[str], user: str, way_out: str, flag: str = "--out"
) -> Iterator[Path]:
    """Hold ``folder/.lock`` exclusively for the ``with`` block (creating ``folder``), or
    raise :class:`FolderLocked`, naming the holder (``user``: "sweep", "run") and
    ``way_out``, if another process holds it."""
    folder = Path(folder)
    make_folder(folder, flag)
    path = folder / LOCK_NAME
    key = path.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield path
        finally:
            _held[key] -= 1
        return
    try:
        handle = open(path, "a+")  # noqa: SIM115 - held open for the whole block
    except OSError as error:
        raise UserError(
            f"{flag} {folder}: cannot open its lock file {path} ({error.strerror or error}); "
            f"move {path} away if it is not a file"
        ) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FolderLocked(
                f"{folder} is in use by another {user} ({holder}); {way_out}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        _held[key] = 1
        try:
            yield path
        finally:
            del _held[key]
    finally:
        # Closing the file releases the lock.
        handle.close()
