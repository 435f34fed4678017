"""A sweep folder read back: one :class:`Run` per run folder, and their grouping over seeds.

Everything here comes from the files a cell leaves (``cell.json``, ``config.json``,
``summary.json``, ``metrics.csv``), so a report can be made from any sweep folder, even
one whose runs were started by hand with ``tvlars train --out DIR/runs/<id>``.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvlars.experiments.cell_run import CELL_FILE, ERROR_FILE, RUNS_DIR, cell_state
from tvlars.experiments.grid import method_name, uses_lambda
from tvlars.train.config import RunConfig

#: Share of a run's best test accuracy that counts as converged.
CONVERGED_SHARE = 0.95
#: Config keys a run's row label or group key already shows (the grid's axes), the seed,
#: and keys that do not change what a run computes; any other key that differs between
#: runs keeps them apart (:func:`mark_differing_settings`).
UNPOOLED_EXEMPT = frozenset(
    {
        "task", "method", "dataset", "batch_size", "lr", "optimizer", "schedule", "preset",
        "init", "lmbda", "tv_decay", "excluded_lr_scale", "seed",
        # where or how fast a run went, not what it computed (not in the run id either)
        *RunConfig._NOT_HASHED,
    }
)  # fmt: skip


@dataclass
class Run:
    """One run folder's settings and results (accuracies in %)."""

    run_id: str
    folder: Path
    state: str
    task: str
    method: str
    dataset: str
    batch_size: int
    lr: float
    seed: int
    init: str
    optimizer: str
    schedule: str
    lmbda: float
    tv_decay: float | None
    plan_lmbda: float | None
    paper_lambda: float | None
    excluded_lr_scale: float
    epochs: int
    steps_per_epoch: int | None
    #: The LR the optimizer got, where the method scales the grid's (``lr``: the column).
    optimizer_lr: float = math.nan
    preset: str = "paper"
    #: Settings (other than the grid's axes and the seed) in which this run differs from
    #: other runs of the folder, e.g. ``epochs=1``: part of its row label, so that runs of
    #: different settings are never pooled over seeds (see :func:`mark_differing_settings`).
    setting_note: str = ""
    #: Every hashed config key except the seed: runs pool over seeds only when these agree.
    settings: dict[str, Any] = field(default_factory=dict)
    final_acc: float = math.nan
    best_acc: float = math.nan
    diverged: bool = False
    #: Barlow Twins: the linear probe's accuracy on a random backbone (the baseline).
    random_acc: float = math.nan
    wall_seconds: float = math.nan
    metrics: list[dict[str, float]] = field(default_factory=list)
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    @property
    def uses_lambda(self) -> bool:
        return uses_lambda(self.optimizer, self.schedule)

    @property
    def lambda_label(self) -> str:
        """How this run sets phi's decay, for labels: a literal per-step lambda, a tv_decay
        K mimicking a paper lambda, or a bare K."""
        if self.tv_decay is None:
            return f"λ={self.lmbda:g}"
        if self.paper_lambda is not None:
            return f"λ≈{self.paper_lambda:g} (paper shape)"
        return f"K={self.tv_decay:g}"

    @property
    def decay_value(self) -> float:
        """The lambda this run stands for: the paper lambda it mimics, else its own."""
        if self.paper_lambda is not None:
            return self.paper_lambda
        return self.plan_lmbda if self.plan_lmbda is not None else self.lmbda

    def epochs_to_converge(self, share: float = CONVERGED_SHARE) -> float:
        """When test accuracy first reaches ``share`` of the run's best, in epochs, read
        off the curve between the last epoch below the target and the first at or above
        it: e_prev + (target - a_prev) / (a - a_prev). A fraction, not a whole epoch, so
        that runs which cross in the same epoch still differ (a paired interval over
        whole epochs is often zero-width, and then overconfident)."""
        # Barlow Twins runs log no test accuracy per epoch: no convergence to read.
        rows = [row for row in self.metrics if math.isfinite(row.get("test_acc", math.nan))]
        if not rows:
            return math.nan
        target = share * max(row["test_acc"] for row in rows)
        previous = None
        for row in rows:
            if row["test_acc"] >= target:
                if previous is None:
                    return row["epoch"]
                rise = row["test_acc"] - previous["test_acc"]
                step = row["epoch"] - previous["epoch"]
                return previous["epoch"] + (target - previous["test_acc"]) / rise * step
            previous = row
        return math.nan

    def instability(self) -> float:
        """Mean absolute change of test accuracy from one epoch to the next (points) over
        the second half of training, where a stable run has stopped climbing."""
        accs = [row.get("test_acc", math.nan) for row in self.metrics]
        accs = accs[len(accs) // 2 :]
        steps = [abs(b - a) for a, b in zip(accs, accs[1:], strict=False)]
        steps = [s for s in steps if math.isfinite(s)]
        return sum(steps) / len(steps) if steps else math.nan


#: States of run folders that could not be read: files there but damaged (a truncated
#: summary.json, a metrics.csv that is not CSV), or nothing saying what the run was.
DAMAGED, UNREADABLE = "damaged", "unreadable"


def read_json_object(path: Path, problems: list[str]) -> dict[str, Any]:
    """The JSON object in ``path`` (``{}`` if there is no file); a file that cannot be
    read adds a line to ``problems`` and counts as absent."""
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text())
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value
    except (OSError, ValueError) as error:
        problems.append(f"{path.name} cannot be read ({error})")
        return {}


def _read_metrics(path: Path, task: str, problems: list[str]) -> list[dict[str, float]]:
    """The rows of ``metrics.csv``: a classification run logs its test accuracy per epoch,
    a Barlow Twins run its pre-training loss (its accuracy is the probe's, in summary.json)."""
    needed = {"epoch", "test_acc"} if task == "classification" else {"epoch", "train_loss"}
    if not path.exists():
        return []
    try:
        with open(path, newline="") as file:
            rows = [
                {
                    key: float(value) if value not in ("", None) else math.nan
                    for key, value in row.items()
                }
                for row in csv.DictReader(file)
            ]
        if rows and not needed <= set(rows[0]):
            raise ValueError(f"no {' and '.join(sorted(needed))} columns")
        return rows
    except (OSError, ValueError, TypeError, csv.Error) as error:
        problems.append(f"metrics.csv cannot be read ({error})")
        return []


def read_run(folder: Path) -> Run:
    """The run in ``folder``. A folder whose files cannot be read gives a run in state
    ``damaged`` (``error`` says which file); one with nothing saying what the run was, a
    run in state ``unreadable``: both are reported, never dropped."""
    problems: list[str] = []
    try:
        return _read_run(folder, problems)
    except (TypeError, ValueError, AttributeError) as error:  # settings of the wrong kind
        problems.append(f"its settings cannot be read ({error})")
    return unreadable_run(folder, problems)


def unreadable_run(folder: Path, problems: list[str]) -> Run:
    return Run(
        run_id=folder.name,
        folder=folder,
        state=UNREADABLE,
        task="?",
        method="?",
        dataset="?",
        batch_size=0,
        lr=math.nan,
        seed=0,
        init="?",
        optimizer="?",
        schedule="?",
        lmbda=math.nan,
        tv_decay=None,
        plan_lmbda=None,
        paper_lambda=None,
        excluded_lr_scale=math.nan,
        epochs=0,
        steps_per_epoch=None,
        error="; ".join(problems) or "no config.json or cell.json: nothing says what ran here",
    )


def _read_run(folder: Path, problems: list[str]) -> Run:
    cell = read_json_object(folder / CELL_FILE, problems)
    config_file = read_json_object(folder / "config.json", problems)
    config = config_file.get("config") or {}
    plan = config_file.get("plan") or {}
    if not cell and not config:
        return unreadable_run(folder, problems)
    # config.json is what ran; cell.json stands in before the run starts (or if it failed).
    settings = {**cell, **config}
    optimizer = config.get("optimizer") or cell.get("optimizer") or "tvlars"
    schedule = config.get("schedule") or cell.get("schedule") or "none"
    preset = str(config.get("preset") or "paper")
    summary = read_json_object(folder / "summary.json", problems)
    state = cell_state(folder)
    if state == "finished" and summary.get("diverged"):
        state = "diverged"
    labels = cell.get("labels") or {}
    run = Run(
        run_id=cell.get("run_id") or config_file.get("run_id") or folder.name,
        folder=folder,
        state=state,
        task=cell.get("task", "classification"),
        method=cell.get("method") or method_name(optimizer, schedule, preset),
        dataset=str(settings.get("dataset", "?")),
        batch_size=int(settings.get("batch_size", 0)),
        # The grid's column (cell.json); the config's LR is what the optimizer got.
        lr=float(cell.get("lr") or settings.get("lr") or 0.0),
        seed=int(settings.get("seed", 0)),
        init=str(settings.get("init", "?")),
        optimizer=optimizer,
        schedule=schedule,
        lmbda=float(settings.get("lmbda", 1e-4)),
        tv_decay=settings.get("tv_decay"),
        plan_lmbda=plan.get("lmbda"),
        paper_lambda=labels.get("paper_lambda"),
        excluded_lr_scale=float(settings.get("excluded_lr_scale", 1.0)),
        epochs=int(settings.get("epochs", 0)),
        steps_per_epoch=plan.get("steps_per_epoch"),
        optimizer_lr=float(settings.get("lr") or 0.0),
        preset=preset,
        settings={
            key: value
            for key, value in {**config, "pretrain": cell.get("pretrain") or {}}.items()
            if key not in UNPOOLED_EXEMPT
        }
        if config
        else {},
    )
    if summary:
        run.final_acc = float(summary.get("final_test_acc", math.nan))
        run.best_acc = float(summary.get("best_test_acc", math.nan))
        run.diverged = bool(summary.get("diverged"))
        run.random_acc = float(summary.get("random_init_linear_acc", math.nan))
        run.wall_seconds = float(summary.get("wall_seconds", math.nan))
    run.metrics = _read_metrics(folder / "metrics.csv", run.task, problems)
    if (folder / ERROR_FILE).exists():
        try:
            lines = (folder / ERROR_FILE).read_text(errors="replace").strip().splitlines()
        except OSError as error:
            lines = [f"{ERROR_FILE} cannot be read ({error})"]
        run.error = lines[-1] if lines else "failed"
    if problems:
        run.state, run.error = DAMAGED, "; ".join(problems)
    return run


def read_runs(sweep_dir: str | Path) -> list[Run]:
    """Every run folder of the sweep, damaged and unreadable ones included."""
    root = Path(sweep_dir) / RUNS_DIR
    if not root.is_dir():
        return []
    runs = [read_run(folder) for folder in sorted(root.iterdir()) if folder.is_dir()]
    return mark_differing_settings(runs)


def mark_differing_settings(runs: list[Run]) -> list[Run]:
    """Give each run a ``setting_note`` naming the settings that vary across the folder
    besides the grid's axes and the seed (a rerun with ``--set epochs=1`` after
    ``epochs=2``), so that the tables and claims keep such runs apart instead of pooling
    them into one mean over seeds."""
    # Compared within a task and dataset (their defaults differ); a run not started yet
    # has no config to compare.
    buckets: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        if run.settings:
            buckets[(run.task, run.dataset)].append(run)
    for members in buckets.values():
        keys = sorted({key for run in members for key in run.settings})
        varying = [
            key
            for key in keys
            if len({json.dumps(r.settings.get(key), sort_keys=True, default=str) for r in members})
            > 1
        ]
        for run in members:
            run.setting_note = ", ".join(
                f"{key}={_setting_text(run.settings.get(key))}" for key in varying
            )
    return runs


def _setting_text(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_setting_text(v)}" for k, v in sorted(value.items())) + "}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def main_init(runs: list[Run]) -> str:
    """The init most runs use: the table's, so other inits are marked as variants."""
    counts = Counter(run.init for run in runs)
    return counts.most_common(1)[0][0] if counts else ""


def variant(run: Run, table_init: str) -> str:
    """The row label of a run in the tables: its method and every setting that differs
    from the table's (lambda for TVLARS-type methods, excluded-LR scale, init)."""
    parts = [run.method]
    if run.uses_lambda:
        parts.append(run.lambda_label)
    if run.excluded_lr_scale != 1.0:
        parts.append(f"excl. LR x{run.excluded_lr_scale:g}")
    if run.init != table_init:
        parts.append(run.init)
    if run.optimizer_lr and run.lr and not math.isclose(run.optimizer_lr, run.lr):
        # The row spans the block's LR columns: it names the factor its optimizer got.
        parts.append(f"LR x{run.optimizer_lr / run.lr:.3g}")
    if run.setting_note:
        parts.append(run.setting_note)
    return " · ".join(parts)


@dataclass
class Group:
    """The runs of one cell of the table: the same settings except the seed."""

    task: str
    dataset: str
    batch_size: int
    lr: float
    variant: str
    runs: list[Run]

    @property
    def done(self) -> list[Run]:
        return [r for r in self.runs if r.state in ("finished", "diverged")]

    def accuracies(self, best: bool = False) -> list[float]:
        values = [r.best_acc if best else r.final_acc for r in self.done]
        return [v for v in values if math.isfinite(v)]

    @property
    def diverged(self) -> int:
        return sum(r.diverged for r in self.done)

    @property
    def failed(self) -> int:
        return sum(r.state == "failed" for r in self.runs)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped over seeds, in the order task, dataset, batch, lr, variant."""
    table_init = main_init(runs)
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        key = (run.task, run.dataset, run.batch_size, run.lr, variant(run, table_init))
        groups[key].append(run)
    return [
        Group(*key, sorted(members, key=lambda r: r.seed))
        for key, members in sorted(groups.items())
    ]
