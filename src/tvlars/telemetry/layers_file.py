"""The file a :class:`~tvlars.telemetry.LayerRecorder` writes: one row per step and layer.

A CSV file with the header :data:`HEADER`; ``step`` is the number of optimizer steps
applied before the row's step, ``layer`` the parameter's name (quoted when it holds a
separator) and the five values are written with 9 significant digits (any float32
round-trips), ``inf`` and ``nan`` as such. :func:`read_layers` reads it back.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

#: Columns of the CSV file, in order. The last five are the per-layer values.
COLUMNS = ("step", "layer", "weight_norm", "grad_norm", "norm_ratio", "trust_ratio", "step_size")
VALUE_COLUMNS = COLUMNS[2:]
HEADER = ",".join(COLUMNS)
#: Columns of the file of global gradient norms (beside the per-layer file, for optimizers
#: that clip by the global norm): the step, ``G`` and the factor ``max(G / c, 1)``.
GRAD_CLIP_COLUMNS = ("step", "global_grad_norm", "clip_factor")
GRAD_CLIP_HEADER = ",".join(GRAD_CLIP_COLUMNS)


def csv_field(text: str) -> str:
    """``text`` as a CSV field: quoted, with quotes doubled, when it holds a separator."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def read_layers(
    path: str | os.PathLike[str], *, complete_lines_only: bool = False
) -> dict[str, np.ndarray]:
    """Read a file written by :class:`LayerRecorder`.

    Returns one numpy array per column of :data:`COLUMNS`, all of the same length (one
    entry per step and layer, in file order): ``step`` as int64, ``layer`` as str and the
    five values as float64 (``inf`` and ``nan`` included).

    With ``complete_lines_only`` a last line without its newline is left out: the file of
    a run still going may be read while the recorder appends to it.

    Raises:
        ValueError: naming the file and the line, for a header or row that is not the
            recorder's.
    """
    steps: list[int] = []
    layers: list[str] = []
    values: list[list[float]] = []
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    if complete_lines_only and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path} is empty")
    if tuple(header) != COLUMNS:
        raise ValueError(f"{path}: header {header} is not {list(COLUMNS)}")
    for record in reader:
        try:
            if len(record) != len(COLUMNS):
                raise ValueError(f"{len(record)} fields, expected {len(COLUMNS)}")
            steps.append(int(record[0]))
            values.append([float(x) for x in record[2:]])
        except ValueError as error:
            raise ValueError(f"{path}, line {reader.line_num}: {error}") from None
        layers.append(record[1])
    table = np.array(values, dtype=np.float64).reshape(len(values), len(VALUE_COLUMNS))
    data: dict[str, np.ndarray] = {
        "step": np.array(steps, dtype=np.int64),
        "layer": np.array(layers, dtype=str),
    }
    for i, column in enumerate(VALUE_COLUMNS):
        data[column] = table[:, i].copy()
    return data


def read_grad_clip(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read the global gradient norms a recorder wrote (its ``grad_clip_path``): one array
    per column of :data:`GRAD_CLIP_COLUMNS`, ``step`` as int64, the others float64."""
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n")
    if header != GRAD_CLIP_HEADER:
        raise ValueError(f"{path}: header {header!r} is not {GRAD_CLIP_HEADER!r}")
    table = table.reshape(-1, len(GRAD_CLIP_COLUMNS))
    return {
        "step": table[:, 0].astype(np.int64),
        "global_grad_norm": table[:, 1].copy(),
        "clip_factor": table[:, 2].copy(),
    }


def split_by_layer(data: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Regroup :func:`read_layers` output as ``{layer: {column: array over steps}}``.

    Layers keep the order in which they first appear (the recorder's column order).
    """
    layer = np.asarray(data["layer"])
    names = list(dict.fromkeys(layer.tolist()))
    columns = [c for c in COLUMNS if c != "layer"]
    return {name: {c: np.asarray(data[c])[layer == name] for c in columns} for name in names}


def prepare_for_append(path: Path, header_text: str, start_step: int) -> None:
    """Make ``path`` ready to take rows from step ``start_step`` on: a new file gets the
    header; an existing one (a resumed run) loses every row at or past ``start_step`` and an
    incomplete last line, cut off in place. A file with another header is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.stat().st_size == 0:
        path.write_text(header_text + "\n", encoding="utf-8")
        return
    # Rows are in step order, so everything from the first row at or past start_step
    # (or from an incomplete last line) on is cut off in place.
    cut = None
    with open(path, "rb") as f:
        header = f.readline()
        if header.decode("utf-8").rstrip("\r\n") != header_text:
            raise ValueError(
                f"{path} exists and is not a layer telemetry file "
                f"(header {header[:200]!r}, expected {header_text!r})"
            )
        offset = f.tell()
        for line in f:
            if not line.endswith(b"\n") or int(line.split(b",", 1)[0]) >= start_step:
                cut = offset
                break
            offset += len(line)
    if cut is not None:
        with open(path, "r+b") as f:
            f.truncate(cut)
