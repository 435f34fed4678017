"""What can go wrong when reading a dataset, as exceptions that say what to do about it."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path

# How many entries of a folder an error message lists before it says "and N more".
_LISTED_ENTRIES = 20


class DatasetNotFoundError(FileNotFoundError):
    """A data folder does not hold the files of the dataset asked for.

    The message lists what was expected and what the folder holds, so that a wrong
    ``data_dir`` (or a half-extracted archive) is recognisable at a glance.
    """

    def __init__(self, name: str, folder: Path | None, expected: Iterable[str], hint: str = ""):
        self.name = name
        self.folder = folder
        self.expected = list(expected)
        self.found = describe_folder(folder) if folder is not None else []
        lines = [
            f"{name}: no usable copy of the dataset in {folder}."
            if folder
            else f"{name}: no data_dir given."
        ]
        lines.append("Expected one of:")
        lines += [f"  - {item}" for item in self.expected]
        if folder is not None:
            if self.found:
                lines.append("Found:")
            else:
                lines.append(
                    "Found: nothing (the folder is empty)"
                    if folder.is_dir()
                    else "Found: nothing (no such folder)"
                )
            lines += [f"  - {item}" for item in self.found]
        lines.append(
            hint
            or "Point data_dir at the folder holding the archive or its extracted folder "
            "(tvlars never downloads datasets)."
        )
        super().__init__("\n".join(lines))


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside its folder, or is a link or a device."""


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for something other than plain data and numpy arrays."""


def describe_folder(folder: Path) -> list[str]:
    """The first entries of ``folder`` (folders end in ``/``), for error messages."""
    try:
        entries = sorted(folder.iterdir(), key=lambda path: path.name)
    except OSError:
        return []
    names = [entry.name + ("/" if entry.is_dir() else "") for entry in entries]
    if len(names) > _LISTED_ENTRIES:
        hidden = len(names) - _LISTED_ENTRIES
        names = names[:_LISTED_ENTRIES] + [f"... and {hidden} more"]
    return names
