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

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tvlars.telemetry.layers_file import read_layers
from tvlars.telemetry.norm_rules import RULES
from tvlars.telemetry.run_telemetry import (
    SEVERITIES,
    DiagnoseInputError,
    Finding,
    RunTelemetry,
    load_run,
)

__all__ = [
    "SEVERITIES",
    "DiagnoseInputError",
    "Finding",
    "RunTelemetry",
    "diagnose",
    "diagnosis_markdown",
    "digest",
    "highest",
    "load_run",
    "plot_findings",
    "summary_text",
]

_SEVERITY_COLOURS = {"info": "tab:blue", "warning": "tab:orange", "high": "tab:red"}


def diagnose(run_dir_or_layers_csv: str | os.PathLike[str] | RunTelemetry) -> list[Finding]:
    """The findings of every rule on a run, most severe first, then by first step.

    Args:
        run_dir_or_layers_csv: a run folder (``tvlars train --out``), a ``layers.csv``
            (its folder's metrics.csv and config.json are read too when present), or what
            :func:`load_run` returned.

    Raises:
        DiagnoseInputError: for a missing or unreadable file, naming it and the fault.
    """
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
