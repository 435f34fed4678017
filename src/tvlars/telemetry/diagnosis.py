"""Reading a run's per-layer norms: findings that say what went wrong and which knob to turn.

:func:`diagnose` reads a run folder (``layers.csv``, and ``metrics.csv`` and
``config.json`` when present) or a bare ``layers.csv`` and applies the rules of
:mod:`tvlars.telemetry.norm_rules`, each grounded in the paper's reading of LWN ``||w||``,
LGN ``||grad||`` and LNR ``||w|| / ||grad||`` (Section IV, Figure 3). A run still going
can be read: a last line the recorder is still writing is left out.

Each :class:`Finding` names its rule, the layers, the step range, the numbers that
triggered it, a severity (``info`` < ``warning`` < ``high``) and a suggestion naming the
knob to turn. :func:`summary_text`, :func:`diagnosis_markdown` and :func:`plot_findings`
present them; :func:`digest` is the one line a report prints per run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvlars.telemetry.layers_file import read_layers, split_by_layer

SEVERITIES = ("info", "warning", "high")
_SEVERITY_COLOURS = {"info": "tab:blue", "warning": "tab:orange", "high": "tab:red"}


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


def diagnose(run_dir_or_layers_csv: str | os.PathLike[str] | RunTelemetry) -> list[Finding]:
    """The findings of every rule on a run, most severe first, then by first step.

    Args:
        run_dir_or_layers_csv: a run folder (``tvlars train --out``), a ``layers.csv``
            (its folder's metrics.csv and config.json are read too when present), or what
            :func:`load_run` returned.

    Raises:
        DiagnoseInputError: for a missing or unreadable file, naming it and the fault.
    """
    from tvlars.telemetry.norm_rules import RULES

    run = (
        run_dir_or_layers_csv
        if isinstance(run_dir_or_layers_csv, RunTelemetry)
        else load_run(run_dir_or_layers_csv)
    )
    findings = [finding for rule in RULES for finding in rule(run)]
    return sorted(findings, key=lambda f: (-f.rank, f.steps[0], f.rule))


def highest(findings: Sequence[Finding]) -> Finding | None:
    """The most severe finding (the earliest among equals), ``None`` for none."""
    return min(findings, key=lambda f: (-f.rank, f.steps[0]), default=None)


def digest(findings: Sequence[Finding]) -> str:
    """One line for a report: the highest finding, or that there is none."""
    top = highest(findings)
    if top is None:
        return "no finding"
    more = len(findings) - 1
    return (
        f"{top.severity}: {top.rule}, steps {top.steps[0]}-{top.steps[1]}, "
        f"{_layer_list(top.layers, 2)}" + (f" (+{more} more)" if more else "")
    )


def _layer_list(layers: Sequence[str], limit: int = 4) -> str:
    if not layers:
        return "the run"
    shown = ", ".join(layers[:limit])
    extra = len(layers) - limit
    return shown + (f" and {extra} more" if extra > 0 else "")


def _values_text(values: dict[str, Any]) -> str:
    parts = []
    for key, value in values.items():
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={text}")
    return ", ".join(parts)


def summary_text(findings: Sequence[Finding], source: str | os.PathLike[str] = "") -> str:
    """The terminal summary: one block per finding, the most severe first."""
    counts = {s: sum(f.severity == s for f in findings) for s in reversed(SEVERITIES)}
    head = f"{source}: " if source else ""
    if not findings:
        return f"{head}no finding: the norms show nothing the rules look for"
    lines = [head + ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    for f in findings:
        lines.append(
            f"[{f.severity.upper():>7}] {f.rule}  steps {f.steps[0]}-{f.steps[1]}  "
            f"{_layer_list(f.layers)}"
        )
        lines.append(f"          {f.summary}")
        lines.append(f"          ({_values_text(f.values)})")
        lines.append(f"          -> {f.suggestion}")
    return "\n".join(lines)


def diagnosis_markdown(
    findings: Sequence[Finding], source: str | os.PathLike[str], figure: str | None
) -> str:
    """diagnosis.md: the findings as a table and in full, with the figure that marks them."""
    lines = [f"# Diagnosis of `{source}`", ""]
    if figure:
        lines += [
            f"![Per-layer norms with the findings marked]({figure})",
            "",
            "Panels as the paper's Figure 3 (LWN, LGN, LNR per layer, test loss); shaded: the "
            "step range of each finding (red high, orange warning, blue info).",
            "",
        ]
    if not findings:
        lines.append("No finding: the norms show nothing the rules look for.")
        return "\n".join(lines) + "\n"
    lines += ["| severity | rule | steps | layers |", "|---|---|---|---|"]
    for f in findings:
        lines.append(
            f"| {f.severity} | {f.rule} | {f.steps[0]}-{f.steps[1]} | {_layer_list(f.layers)} |"
        )
    for i, f in enumerate(findings, start=1):
        lines += [
            "",
            f"## {i}. {f.rule} ({f.severity})",
            "",
            f"{f.summary}",
            "",
            f"- Steps {f.steps[0]}-{f.steps[1]}; layers: {', '.join(f.layers) or 'the run'}",
            f"- Values: {_values_text(f.values)}",
            f"- Suggestion: {f.suggestion}",
        ]
    return "\n".join(lines) + "\n"


def plot_findings(
    run: RunTelemetry, findings: Sequence[Finding], out_png: str | os.PathLike[str]
) -> Path:
    """The paper's Figure 3 layout (:func:`~tvlars.telemetry.plot_layers`) of the run with
    each finding's step range shaded in its severity's colour."""
    from tvlars.telemetry.plot import plot_layers

    data = read_layers(run.layers_csv, complete_lines_only=True)
    test_loss = None
    if run.metrics and "test_loss" in run.metrics[0]:
        test_loss = [(row["step"], row["test_loss"]) for row in run.metrics]
    spans = [
        (f.steps[0], f.steps[1], _SEVERITY_COLOURS[f.severity], f"{f.severity}: {f.rule}")
        for f in findings
    ]
    return plot_layers(data, out_png, test_loss=test_loss, title=str(run.layers_csv), spans=spans)
