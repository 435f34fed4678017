"""Finding a dataset on disk from the ``data_dir`` a user gives.

``data_dir`` may be the extracted folder itself (``.../cifar-10-batches-py``), the folder
that holds it or the archive (``.../datasets`` with ``cifar-10-python.tar.gz`` inside), or
the archive file. Without ``data_dir``, ``$TVLARS_DATA`` is used. A complete extracted
folder wins over the archive (it is faster to read); nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tvlars.data.errors import DatasetNotFoundError

DATA_ENV = "TVLARS_DATA"


@dataclass(frozen=True)
class Source:
    """Where a dataset's files are: an extracted ``folder`` or an ``archive`` file."""

    kind: Literal["folder", "archive"]
    path: Path


def missing_files(folder: Path, required: Sequence[str]) -> list[str]:
    """The entries of ``required`` (relative paths; a trailing ``/`` means a folder) that
    ``folder`` lacks."""
    missing = []
    for entry in required:
        path = folder / entry.rstrip("/")
        present = path.is_dir() if entry.endswith("/") else path.is_file()
        if not present:
            missing.append(entry)
    return missing


def find_source(
    name: str,
    data_dir: str | os.PathLike | None,
    folder_name: str,
    archive_name: str,
    required: Sequence[str],
) -> Source:
    """Locate dataset ``name``: its extracted folder ``folder_name`` (holding ``required``)
    or its archive ``archive_name``. Raises :class:`DatasetNotFoundError` listing what was
    expected and what was found."""
    expected = [f"{folder_name}/ holding {', '.join(required)}", archive_name]
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or None
    if data_dir is None:
        raise DatasetNotFoundError(
            name,
            None,
            expected,
            hint=f"Pass data_dir (or set ${DATA_ENV}) to the folder holding {archive_name} or "
            f"{folder_name}/; tvlars never downloads datasets.",
        )
    root = Path(data_dir).expanduser()
    if root.is_file():
        return Source("archive", root)
    for folder in (root, root / folder_name):
        if folder.is_dir() and not missing_files(folder, required):
            return Source("folder", folder)
    if (root / archive_name).is_file():
        return Source("archive", root / archive_name)
    hint = ""
    for folder in (root, root / folder_name):
        if folder.name == folder_name and folder.is_dir():  # a partial copy of the folder
            lacking = ", ".join(missing_files(folder, required))
            hint = (
                f"{folder} is incomplete: it lacks {lacking}. Extract the archive again, or "
                f"put {archive_name} beside it."
            )
    raise DatasetNotFoundError(name, root, expected, hint=hint)
