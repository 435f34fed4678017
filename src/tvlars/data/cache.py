"""The on-disk cache of decoded and generated datasets.

Layout (``<cache>`` is ``cache_dir``, else ``$TVLARS_CACHE``, else ``~/.cache/tvlars``)::

    <cache>/mnist1d/mnist1d-n<samples>-seed<seed>-<args hash>.npz
    <cache>/tinyimagenet/tinyimagenet-<source fingerprint>.npz

Each file is an uncompressed ``.npz`` of plain arrays (no pickles: loading uses
``allow_pickle=False``). Files are written to a temporary name in the same folder and
moved into place with ``os.replace``, so a reader sees either no file or a complete one,
even when two processes (say, the ranks of one run) build the same entry at once.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from tvlars._cache_dir import CACHE_ENV, resolve_cache_dir
from tvlars.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["CACHE_ENV", "load_arrays", "resolve_cache_dir", "save_arrays"]


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` (an ``.npz``) atomically; return ``path``. A cache
    folder that cannot be written is a :class:`~tvlars.errors.UserError` naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        )
    except OSError as error:
        raise _unusable(path, error) from None
    try:
        with handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except OSError as error:
        Path(handle.name).unlink(missing_ok=True)
        raise _unusable(path, error) from None
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def _unusable(path: Path, error: OSError) -> UserError:
    reason = error.strerror or str(error)
    if isinstance(error, FileExistsError | NotADirectoryError):
        reason = "part of the path is a file, not a folder"
    return UserError(
        f"the cache folder cannot hold {path} ({reason}). Point {CACHE_ENV} at a folder you "
        f"can write to (it is now {os.environ.get(CACHE_ENV) or 'unset'}), or free some space"
    )


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path``, or ``None`` when there is no usable file.

    An unreadable file (say, from an older layout or a full disk) is reported and treated
    as missing, so that the caller rebuilds it.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        log.warning("ignoring unreadable cache file %s (%s); rebuilding it", path, error)
        return None
