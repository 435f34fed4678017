"""A run's telemetry read back for diagnosis, and what a diagnosis finds.

:func:`load_run` reads a run folder (``layers.csv``, and ``metrics.csv`` and
``config.json`` when present) or a bare ``layers.csv`` into a :class:`RunTelemetry`; the
rules of :mod:`tvlars.telemetry.norm_rules` turn it into :class:`Finding`s, and
:mod:`tvlars.telemetry.diagnosis` applies and presents them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvlars.telemetry.layers_file import read_layers, split_by_layer

SEVERITIES = ("info", "warning", "high")


class DiagnoseInputError(ValueError):
    """A run folder or file that cannot be read: the message names the file and the fault."""


@dataclass(frozen=True)
class Finding:
    """One thing the telemetry shows.

    ``steps`` is the (first, last) optimizer step the finding covers, ``values`` the numbers
    that triggered it, ``summary`` what was seen and ``suggestion`` what to change.
    """

    rule: str
    severity: str
    layers: tuple[str, ...]
    steps: tuple[int, int]
    values: dict[str, float | int | str]
    summary: str
    suggestion: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: choose one of {SEVERITIES}")

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready values (non-finite numbers as the strings "nan", "inf")."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "layers": list(self.layers),
            "steps": list(self.steps),
            "values": {k: _json_number(v) for k, v in self.values.items()},
            "summary": self.summary,
            "suggestion": self.suggestion,
        }


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@dataclass
class RunTelemetry:
    """What a run left on disk, as the rules read it.

    ``layers`` maps each recorded layer to its columns over the recorded steps (see
    :func:`~tvlars.telemetry.split_by_layer`); ``metrics`` holds metrics.csv's rows (one
    per epoch) and ``config`` / ``plan`` config.json's sections, each ``None`` when the
    file is absent.
    """

    layers_csv: Path
    layers: dict[str, dict[str, np.ndarray]]
    metrics: list[dict[str, float]] | None = None
    config: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    folder: Path | None = field(default=None)

    @property
    def last_step(self) -> int:
        return max(int(s["step"][-1]) for s in self.layers.values())

    @property
    def total_steps(self) -> int:
        """The planned length of the run, else the recorded one (a run still going)."""
        if self.plan and self.plan.get("total_steps"):
            return int(self.plan["total_steps"])
        return self.last_step + 1

    def setting(self, name: str, default: Any = None) -> Any:
        """A key of the run's config, ``default`` without config.json."""
        if self.config is None:
            return default
        value = self.config.get(name)
        return default if value is None else value


def load_run(path: str | os.PathLike[str]) -> RunTelemetry:
    """Read a run folder, or a layers.csv with its sibling metrics.csv and config.json.

    Raises:
        DiagnoseInputError: naming the file and what is wrong with it.
    """
    path = Path(path)
    if path.is_dir():
        folder, layers_csv = path, path / "layers.csv"
        if not layers_csv.is_file():
            raise DiagnoseInputError(
                f"{layers_csv} does not exist: {path} is not a run folder with telemetry "
                "(tvlars train and pretrain write it unless --telemetry-every is 0)"
            )
    elif path.is_file():
        folder, layers_csv = path.parent, path
    else:
        raise DiagnoseInputError(f"{path} does not exist")
    try:
        data = read_layers(layers_csv, complete_lines_only=True)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DiagnoseInputError(f"{layers_csv} is not a layer telemetry file: {error}") from None
    if data["step"].size == 0:
        raise DiagnoseInputError(f"{layers_csv} has no rows yet: no step was recorded")
    run = RunTelemetry(layers_csv=layers_csv, layers=split_by_layer(data), folder=folder)
    metrics_csv, config_json = folder / "metrics.csv", folder / "config.json"
    if metrics_csv.is_file():
        run.metrics = _read_metrics(metrics_csv)
    if config_json.is_file():
        try:
            stored = json.loads(config_json.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise DiagnoseInputError(f"{config_json} is not valid JSON: {error}") from None
        if not isinstance(stored, dict):
            raise DiagnoseInputError(f"{config_json} holds no JSON object")
        run.config = stored.get("config") if isinstance(stored.get("config"), dict) else None
        run.plan = stored.get("plan") if isinstance(stored.get("plan"), dict) else None
    return run


def _read_metrics(path: Path) -> list[dict[str, float]]:
    try:
        text = path.read_text(encoding="utf-8")
        if not text.endswith("\n"):  # a run still writing: keep the complete lines
            text = text[: text.rfind("\n") + 1]
        rows = []
        for line, record in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            row = {}
            for key, value in record.items():
                if key is None or value is None:
                    raise ValueError(f"line {line} has a different number of fields")
                row[key] = float(value) if value not in ("", "None") else math.nan
            rows.append(row)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DiagnoseInputError(f"{path} is not a metrics file: {error}") from None
    if rows and not {"step", "train_loss"} <= set(rows[0]):
        raise DiagnoseInputError(f"{path} has no 'step' and 'train_loss' columns")
    return rows
