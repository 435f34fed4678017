"""``tvlars report DIR``: report.md, CSV files and PNG figures from a sweep folder.

Files written into DIR:

- ``report.md``: what ran; Table I's layout (mean ± spread over seeds, diverged and failed
  runs marked, Table I's numbers beside ours where the sweep runs the paper's datasets);
  epochs to 95% of each run's best accuracy; the figures; the paper's claims with this
  sweep's evidence and a verdict.
- ``runs.csv`` (one row per run), ``table.csv`` (one row per table cell, over seeds),
  ``convergence.csv``, ``paper_table_1.csv`` (the transcription of Table I).
- ``fig*.png``: see :mod:`tvlars.experiments.figures`.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from tvlars.experiments import paper_table
from tvlars.experiments.claims import evaluate_claims
from tvlars.experiments.figures import FIGURES
from tvlars.experiments.records import (
    DAMAGED,
    UNREADABLE,
    group_runs,
    read_json_object,
    read_runs,
)
from tvlars.experiments.stats import MIN_SEEDS
from tvlars.experiments.tables import (
    convergence_markdown,
    convergence_rows,
    groups_csv,
    paper_markdown,
    runs_csv,
    table_one_markdown,
    to_csv,
)

PAPER_DATASETS = {dataset for _, dataset in paper_table.COLUMN_GROUPS}
UNUSABLE = (DAMAGED, UNREADABLE)

VERDICT_RULE = (
    "How a verdict is reached: seed k gives every arm the same initial weights and data "
    "order, so two arms are compared through their per-seed differences; each comparison "
    "shows the mean difference and its 95% Student t interval over the paired seeds. It "
    "decides (higher, lower, or equivalent within ±margin) only when the whole interval "
    f"clears the margin and at least {MIN_SEEDS} seeds pair up; otherwise it is undecided. "
    "A claim holds when every deciding comparison supports it, does not hold when one "
    "contradicts it, and is undecided otherwise."
)


def _sweep_info(sweep_dir: Path, problems: list[str]) -> dict:
    return read_json_object(sweep_dir / "sweep.json", problems)


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote: ``path`` (report.md), and for a console the Table I
    section (markdown) and each claim's ``(title, verdict)``."""

    path: Path
    table: str
    verdicts: list[tuple[str, str]]
    #: Files of the sweep that could not be read (each run's folder and what is wrong).
    problems: tuple[str, ...] = ()

    def console_summary(self) -> str:
        """The table and one line per claim, for the end of ``tvlars sweep``/``report``."""
        lines = [self.table, "", "Claims (evidence in the report):"]
        lines += [
            f"  {n}. {title}: {verdict}" for n, (title, verdict) in enumerate(self.verdicts, 1)
        ]
        if self.problems:
            lines += ["", "Could not be read (left out of the tables):"]
            lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines + ["", f"report: {self.path}"])


def write_report(sweep_dir: str | Path, *, figures: bool = True) -> Report:
    """Write the report files into ``sweep_dir``. Without ``figures`` the PNGs are left out
    (they take most of the time)."""
    sweep_dir = Path(sweep_dir)
    every_run = read_runs(sweep_dir)
    problems = []
    info = _sweep_info(sweep_dir, problems)
    problems += [f"{r.folder}: {r.state}: {r.error}" for r in every_run if r.state in UNUSABLE]
    runs = [r for r in every_run if r.state != UNREADABLE]
    groups = group_runs(runs)
    with_paper = any(r.dataset in PAPER_DATASETS for r in runs)

    (sweep_dir / "runs.csv").write_text(runs_csv(runs))
    (sweep_dir / "table.csv").write_text(groups_csv(groups, with_paper))
    convergence = convergence_rows(groups)
    (sweep_dir / "convergence.csv").write_text(
        to_csv(list(convergence[0]) if convergence else ["variant"], convergence)
    )
    (sweep_dir / "paper_table_1.csv").write_text(
        to_csv(
            (
                "task",
                "dataset",
                "batch_size",
                "method",
                "paper_method",
                "lr",
                "accuracy",
                "uncertain",
            ),
            paper_table.rows(),
        )
    )

    drawn, figure_errors = [], []
    for draw in FIGURES if figures else ():
        try:
            drawn += draw(runs, sweep_dir)
        except Exception:  # noqa: BLE001 - one broken figure must not cost the report
            figure_errors.append(f"{draw.__name__}: {traceback.format_exc(limit=2).strip()}")

    lines = [f"# Sweep report: {sweep_dir.name}", ""]
    lines += _overview(every_run, info)
    lines += [f"- could not be read: {problem}" for problem in problems]
    lines += ["", "## Table I layout: final test accuracy (%)", ""]
    lines.append(
        "Mean ± sample standard deviation over seeds (n = seeds when more than one); "
        "†k: k runs diverged (their accuracy when they stopped is included), ✗k: k runs failed."
        + (
            " [x]: the paper's Table I value for the same cell."
            if with_paper
            else " This sweep does not run the paper's datasets: compare orderings with Table I "
            "(below), not numbers."
        )
    )
    table = table_one_markdown(groups, with_paper) if groups else "(no runs yet)"
    lines += ["", table, ""]
    lines += ["## Epochs to 95% of each run's best test accuracy", ""]
    lines += [convergence_markdown(convergence) or "(no finished runs)", ""]
    lines += ["## Per-layer norms: the highest finding of `tvlars diagnose` per run", ""]
    lines += _diagnosis_digests(runs) + [""]
    lines += ["## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in drawn] or ["(none: the sweep lacks their runs)"]
    if figure_errors:
        lines += ["", "Figures that failed:", ""] + [f"    {e}" for e in figure_errors]
    lines += ["", "## The paper's claims", "", VERDICT_RULE, ""]
    claims = evaluate_claims(runs)
    lines += _claims(claims)
    lines += ["", "## Table I as published (CIFAR-10, classification)", ""]
    lines += [
        f"Source: {paper_table.SOURCE}. '?' marks cells that look odd as printed "
        "(see `tvlars.experiments.paper_table.UNCERTAIN`).",
        "",
    ]
    lines += [paper_markdown(), ""]
    path = sweep_dir / "report.md"
    path.write_text("\n".join(lines))
    return Report(path, table, [(claim.title, claim.verdict) for claim in claims], tuple(problems))


def _overview(runs, info) -> list[str]:
    states = Counter(r.state for r in runs)
    presets = info.get("presets", [])
    planned = len(info.get("cells", [])) or len(runs)
    lines = [f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}."]
    if presets:
        lines.append(
            "Presets run here: "
            + "; ".join(f"`{p['name']}` ({p.get('description', '')})" for p in presets)
            + "."
        )
    lines.append(
        f"{planned} cells planned; run folders: "
        + (", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none")
        + "."
    )
    seconds = sum(r.wall_seconds for r in runs if r.wall_seconds == r.wall_seconds)
    if seconds:
        lines.append(f"Training time summed over runs: {seconds / 60:.1f} min.")
    settings = sorted({(r.task, r.dataset, r.epochs) for r in runs if r.task != "?"})
    if settings:
        lines.append(
            "Datasets and epochs: "
            + ", ".join(
                f"{d} ({e} epochs)"
                if task == "classification"
                else f"{task} / {d} ({e} pre-training epochs)"
                for task, d, e in settings
            )
            + "."
        )
    failed = [r for r in runs if r.state == "failed"]
    for r in failed[:10]:
        lines.append(f"- failed: `{r.run_id}` {r.method} B={r.batch_size} lr {r.lr:g}: {r.error}")
    return lines


def _diagnosis_digests(runs) -> list[str]:
    """The runs' highest findings counted by method (and task, where not classification),
    then one line per run with telemetry: its highest finding (``tvlars diagnose RUN`` gives
    them all)."""
    from tvlars.telemetry import DiagnoseInputError, diagnose
    from tvlars.telemetry.diagnosis import digest, highest

    lines: list[str] = []
    by_method: dict[str, Counter] = defaultdict(Counter)
    for r in runs:
        if not (r.folder / "layers.csv").exists():
            continue
        try:
            findings = diagnose(r.folder)
            text, top = digest(findings), highest(findings)
            kind = f"{top.severity}: {top.rule}" if top else "no finding"
        except DiagnoseInputError as error:
            text, kind = f"unreadable: {error}", "unreadable"
        by_method[r.method if r.task == "classification" else f"{r.method} ({r.task})"][kind] += 1
        lines.append(
            f"- `{r.run_id}` {r.method} B={r.batch_size} lr {r.lr:g} seed {r.seed}: {text}"
        )
    if not lines:
        return ["(no run has layers.csv)"]
    table = ["| method | runs | highest finding: runs |", "|---|---:|---|"]
    for method, counts in sorted(by_method.items()):
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        table.append(
            f"| {method} | {sum(counts.values())} | "
            + "; ".join(f"{kind}: {n}" for kind, n in ordered)
            + " |"
        )
    return [*table, "", "Each run:", "", *lines]


def _claims(claims) -> list[str]:
    lines = []
    for number, claim in enumerate(claims, start=1):
        lines += [
            f"### {number}. {claim.title}: **{claim.verdict}**",
            "",
            f"Paper: {claim.paper}",
            "",
        ]
        if claim.evidence:
            lines += ["Evidence:", ""]
            lines += [e if e.startswith("  -") else f"- {e}" for e in claim.evidence]
            lines.append("")
        for caveat in claim.caveats:
            lines.append(f"Note: {caveat}.")
        if claim.caveats:
            lines.append("")
    return lines
