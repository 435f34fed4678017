"""The report's tables: Table I's layout, convergence speed, and their CSV files.

Table I's layout: one block per batch size, a row of learning rates, then one row per
method; columns are (task, dataset) groups, each spanning that batch size's LRs. A cell is
the final test accuracy, mean ± sample standard deviation over seeds (n = seeds), with
"†k" when k of its runs diverged and "✗k" when k failed; a Barlow Twins cell is the linear
probe's accuracy, followed by the probe's accuracy on a random backbone (the baseline the
pre-training must beat); where the sweep runs the paper's own datasets, Table I's number
follows in brackets. A column keeps the paper's LR; a method that runs at another LR
(``WA-LAMB·η``: the LR x eta) says so in its row label (``LR x0.001``).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict

from tvlars.experiments import paper_table
from tvlars.experiments.records import Group, Run
from tvlars.experiments.stats import stat

RUN_COLUMNS = (
    "run_id", "state", "task", "method", "dataset", "batch_size", "lr", "optimizer_lr", "seed",
    "init", "setting_note",
    "lmbda", "tv_decay", "plan_lmbda", "paper_lambda", "excluded_lr_scale", "epochs",
    "final_acc", "best_acc", "random_acc", "diverged", "epochs_to_95", "wall_seconds", "error",
)  # fmt: skip
GROUP_COLUMNS = (
    "task", "dataset", "batch_size", "lr", "variant", "n", "mean_final_acc", "std_final_acc",
    "min_final_acc", "max_final_acc", "mean_best_acc", "diverged", "failed", "paper_acc",
)  # fmt: skip


def paper_value(group: Group) -> float | None:
    """Table I's accuracy for this group, if it is one of Table I's cells."""
    method = group.variant.split(" · ")[0]
    if group.task == "classification" and method == "TVLARS":
        # Table I's TVLARS is the literal lambda of the caption, nothing else varied.
        if group.variant != f"TVLARS · λ={paper_table.TASK_LAMBDA['classification']:g}":
            return None
    elif group.task == "barlow-twins" and method == "TVLARS":
        if group.variant != f"TVLARS · λ={paper_table.TASK_LAMBDA['barlow-twins']:g}":
            return None
    elif group.variant != method:
        return None
    return paper_table.paper_accuracy(group.task, group.dataset, group.batch_size, method, group.lr)


def cell_text(group: Group, with_paper: bool) -> str:
    s = stat(group.accuracies())
    text = s.text() if s.n else ("diverged" if group.diverged else "—")
    if s.n > 1:
        text += f" (n={s.n})"
    random = stat(r.random_acc for r in group.done)
    if group.task == "barlow-twins" and random.n:
        text += f" (random backbone {random.text()})"
    if group.diverged:
        text += f" †{group.diverged}"
    if group.failed:
        text += f" ✗{group.failed}"
    if with_paper:
        value = paper_value(group)
        if value is not None:
            text += f" [{value:.2f}]"
    return text


def table_one_markdown(groups: list[Group], with_paper: bool) -> str:
    """Table I's layout in markdown (see the module docstring)."""
    columns = sorted({(g.task, g.dataset) for g in groups})
    lrs_of: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    cells: dict[tuple, Group] = {}
    for g in groups:
        if g.lr not in lrs_of[(g.task, g.dataset)][g.batch_size]:
            lrs_of[(g.task, g.dataset)][g.batch_size].append(g.lr)
        cells[(g.task, g.dataset, g.batch_size, g.lr, g.variant)] = g
    width = {c: max((len(v) for v in lrs_of[c].values()), default=1) for c in columns}
    header = ["batch", "method"] + [
        f"{task} / {dataset} #{i + 1}"
        for task, dataset in columns
        for i in range(width[(task, dataset)])
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    for batch in sorted({g.batch_size for g in groups}):
        lr_row = [f"**B={batch}**", "*learning rate*"]
        for c in columns:
            lrs = sorted(lrs_of[c].get(batch, []))
            lr_row += [f"*{lr:g}*" for lr in lrs] + [""] * (width[c] - len(lrs))
        lines.append("| " + " | ".join(lr_row) + " |")
        variants = sorted(
            {g.variant: _group_order(g) for g in groups if g.batch_size == batch}.items(),
            key=lambda item: item[1],
        )
        variants = [name for name, _ in variants]
        for name in variants:
            row = ["", name]
            for c in columns:
                lrs = sorted(lrs_of[c].get(batch, []))
                for lr in lrs:
                    group = cells.get((*c, batch, lr, name))
                    row.append(cell_text(group, with_paper) if group else "")
                row += [""] * (width[c] - len(lrs))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


_METHOD_ORDER = ("WA-LARS", "NOWA-LARS", "WA-LAMB", "WA-LAMB·η", "NOWA-LAMB", "TVLARS")


def _variant_order(name: str) -> tuple:
    method = name.split(" · ")[0]
    rank = _METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER)
    return rank, name.count(" · "), name


def _group_order(group: Group) -> tuple:
    """Methods in the paper's order; within one, by lambda numerically, then by name."""
    rank, extras, name = _variant_order(group.variant)
    run = group.runs[0]
    return rank, extras, run.decay_value if run.uses_lambda else 0.0, name


def convergence_rows(groups: list[Group]) -> list[dict]:
    """Epochs to reach 95% of each run's best accuracy, mean over seeds, per group."""
    rows = []
    for g in groups:
        epochs = stat(r.epochs_to_converge() for r in g.done)
        if epochs.n:
            rows.append(
                {
                    "task": g.task,
                    "dataset": g.dataset,
                    "batch_size": g.batch_size,
                    "lr": g.lr,
                    "variant": g.variant,
                    "n": epochs.n,
                    "mean_epochs_to_95": epochs.mean,
                    "std_epochs_to_95": epochs.std,
                    "of_epochs": max(r.epochs for r in g.done),
                }
            )
    return rows


def convergence_markdown(rows: list[dict]) -> str:
    """Rows: method variants; columns: batch sizes; cells list each LR's epochs."""
    if not rows:
        return ""
    batches = sorted({r["batch_size"] for r in rows})
    by_cell: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_cell[(r["task"], r["dataset"], r["variant"], r["batch_size"])].append(r)
    keys = sorted(
        {(r["task"], r["dataset"], r["variant"]) for r in rows},
        key=lambda k: (k[0], k[1], _variant_order(k[2])),
    )
    lines = [
        "| task / dataset | method | " + " | ".join(f"B={b}" for b in batches) + " |",
        "|---|---|" + "---:|" * len(batches),
    ]
    for task, dataset, name in keys:
        row = [f"{task} / {dataset}", name]
        for b in batches:
            entries = sorted(by_cell.get((task, dataset, name, b), []), key=lambda r: r["lr"])
            row.append(
                "; ".join(
                    f"{r['mean_epochs_to_95']:.1f}"
                    + (f"±{r['std_epochs_to_95']:.1f}" if r["n"] > 1 else "")
                    + f" (lr {r['lr']:g})"
                    for r in entries
                )
            )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def runs_csv(runs: list[Run]) -> str:
    rows = []
    for r in runs:
        rows.append(
            {
                **{c: getattr(r, c, "") for c in RUN_COLUMNS if hasattr(r, c)},
                "epochs_to_95": r.epochs_to_converge(),
            }
        )
    return to_csv(RUN_COLUMNS, rows)


def groups_csv(groups: list[Group], with_paper: bool) -> str:
    rows = []
    for g in groups:
        s, best = stat(g.accuracies()), stat(g.accuracies(best=True))
        rows.append(
            {
                "task": g.task,
                "dataset": g.dataset,
                "batch_size": g.batch_size,
                "lr": g.lr,
                "variant": g.variant,
                "n": s.n,
                "mean_final_acc": s.mean,
                "std_final_acc": s.std,
                "min_final_acc": min(s.values) if s.n else math.nan,
                "max_final_acc": max(s.values) if s.n else math.nan,
                "mean_best_acc": best.mean,
                "diverged": g.diverged,
                "failed": g.failed,
                "paper_acc": paper_value(g) if with_paper else None,
            }
        )
    return to_csv(GROUP_COLUMNS, rows)


def paper_markdown(task: str = "classification", dataset: str = "cifar10") -> str:
    """Table I's numbers for one (task, dataset), in the same layout, for reference."""
    records = [r for r in paper_table.rows() if r["task"] == task and r["dataset"] == dataset]
    lines = ["| batch | method | lr #1 | lr #2 | lr #3 |", "|---|---|---:|---:|---:|"]
    for batch, lrs in paper_table.LEARNING_RATES.items():
        lines.append(
            f"| **B={batch}** | *learning rate* | " + " | ".join(f"*{lr:g}*" for lr in lrs) + " |"
        )
        for method in paper_table.METHODS.values():
            values = [
                next(
                    r
                    for r in records
                    if r["batch_size"] == batch and r["method"] == method and r["lr"] == lr
                )
                for lr in lrs
            ]
            cells = [f"{v['accuracy']:.2f}" + ("?" if v["uncertain"] else "") for v in values]
            lines.append(f"| | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_csv(columns, rows: list[dict]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(
        text, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return text.getvalue()
