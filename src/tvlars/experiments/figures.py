"""The report's figures, each drawn only when the sweep has the runs it needs.

- Figures 1 and 5: the schedules (WA, NOWA, phi) and phi for several lambdas
  (:func:`tvlars.schedule_plot.plot_schedules`) at the sweep's own steps per epoch and
  epochs.
- Figure 2: test accuracy per epoch with and without warm-up, one panel per batch size.
- Figure 3: LWN, LGN, LNR per layer and test loss, WA-LARS and NOWA-LARS at the largest
  batch size (from the runs' telemetry).
- Figure 6: TVLARS's test accuracy and loss per epoch for each lambda, per batch size.
- Figure 7: final accuracy against the learning rate, per batch size.
- Figure 8: final accuracy per weight init, per batch size.

Each function returns the paths it wrote (empty when the runs are missing). Figures 2-8
plot classification runs (a Barlow Twins run's accuracy is its linear probe's, in the
table), and runs that differ in a setting besides the grid's axes and the seed (their
``setting_note``, e.g. ``epochs=2``) are drawn apart, never averaged into one curve.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from tvlars.experiments.claims import arm
from tvlars.experiments.records import Run, main_init
from tvlars.experiments.stats import stat


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _done(runs: list[Run]) -> list[Run]:
    """Classification runs that finished or diverged, with their per-epoch metrics."""
    return [
        r
        for r in runs
        if r.task == "classification" and r.state in ("finished", "diverged") and r.metrics
    ]


def _titled(text: str, note: str) -> str:
    """``text`` with a series' or panel's differing settings (a ``setting_note``), which
    label it and keep it apart."""
    return f"{text} [{note}]" if note else text


def _curve(runs: list[Run], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean, min and max of ``column`` over the runs (seeds)."""
    length = max(len(r.metrics) for r in runs)
    values = np.full((len(runs), length), np.nan)
    for i, r in enumerate(runs):
        values[i, : len(r.metrics)] = [row[column] for row in r.metrics]
    values[~np.isfinite(values)] = np.nan
    epochs = np.arange(1, length + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch where every seed is NaN
        return epochs, np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)


def _draw(ax, runs: list[Run], column: str, label: str, **style) -> None:
    epochs, mean, low, high = _curve(runs, column)
    n = len(runs)
    (line,) = ax.plot(epochs, mean, label=f"{label} (n={n})" if n > 1 else label, **style)
    if n > 1:
        ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)


def _main_setting(runs: list[Run]) -> list[Run]:
    """Runs at the table's init and excluded-LR scale 1 (the paper's setting)."""
    init = main_init(runs)
    return [r for r in runs if r.init == init and r.excluded_lr_scale == 1.0]


def schedules(runs: list[Run], out: Path) -> list[Path]:
    """Figures 1 and 5 at the sweep's smallest batch size's steps per epoch."""
    with_plan = [r for r in runs if r.steps_per_epoch and r.task == "classification"]
    with_plan = with_plan or [r for r in runs if r.steps_per_epoch]
    if not with_plan:
        return []
    first = min(with_plan, key=lambda r: r.batch_size)
    lambdas = sorted(
        {
            r.plan_lmbda
            for r in with_plan
            if r.uses_lambda and r.batch_size == first.batch_size and r.plan_lmbda
        },
        reverse=True,
    )
    if not lambdas:
        lambdas = [1e-4]
    # Figure 5 shows a family of decays. A sweep's literal lambdas may hardly move phi over
    # a short run, so add those that take phi down over this run: lambda = K / (T - d).
    total = first.steps_per_epoch * first.epochs
    after_delay = max(1.0, total * 0.9)
    extra = [k / after_delay for k in (1.0, 10.0)]
    from tvlars.schedule_plot import plot_schedules
    from tvlars.schedules import epochs_to_steps

    path = plot_schedules(
        out / "fig1_5_schedules.png",
        total_steps=epochs_to_steps(first.epochs, first.steps_per_epoch),
        steps_per_epoch=first.steps_per_epoch,
        lmbdas=lambdas + extra,
    )
    return [path]


def warmup(runs: list[Run], out: Path) -> list[Path]:
    """Figure 2: WA against NOWA for LARS (and LAMB), test accuracy per epoch."""
    runs = _main_setting(_done(runs))
    pairs = [("WA-LARS", "NOWA-LARS"), ("WA-LAMB", "NOWA-LAMB")]
    panels: dict[tuple[int, str], dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        panels[(r.batch_size, r.setting_note)][r.method].append(r)
    batches = [
        b
        for b in sorted(panels)
        if any(wa in panels[b] and nowa in panels[b] for wa, nowa in pairs)
    ]
    if not batches:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(
        1,
        len(batches),
        figsize=(max(4.2 * len(batches), 7.0), 3.8),
        squeeze=False,
        layout="constrained",
    )
    for ax, batch in zip(axes[0], batches, strict=True):
        for wa, nowa in pairs:
            for name, style in ((wa, "-"), (nowa, "--")):
                members = panels[batch].get(name, [])
                top = max((r.lr for r in members), default=None)
                chosen = [r for r in members if r.lr == top]
                if chosen and wa in panels[batch] and nowa in panels[batch]:
                    _draw(ax, chosen, "test_acc", f"{name}, lr {top:g}", linestyle=style)
        ax.set(
            title=_titled(f"batch {batch[0]}", batch[1]), xlabel="epoch", ylabel="test accuracy (%)"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Figure 2: test accuracy with (WA, solid) and without (NOWA, dashed) warm-up")
    path = out / "fig2_warmup.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def layer_norms(runs: list[Run], out: Path) -> list[Path]:
    """Figure 3: per-layer LWN, LGN, LNR and test loss, WA-LARS and NOWA-LARS, at the
    largest batch size both ran (lowest seed, highest LR)."""
    from tvlars.telemetry import plot_layers

    runs = [r for r in _main_setting(_done(runs)) if (r.folder / "layers.csv").exists()]
    by_batch: dict[tuple[int, str], dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by_batch[(r.batch_size, r.setting_note)][r.method].append(r)
    batches = [b for b in by_batch if {"WA-LARS", "NOWA-LARS"} <= set(by_batch[b])]
    if not batches:
        return []
    # The largest batch; of its settings, the folder's common one (no note) first.
    batch = max(batches, key=lambda key: (key[0], not key[1], key[1]))
    paths = []
    for method in ("WA-LARS", "NOWA-LARS"):
        run = min(by_batch[batch][method], key=lambda r: (-r.lr, r.seed))
        loss = [
            (row["step"], row["test_loss"])
            for row in run.metrics
            if math.isfinite(row["test_loss"])
        ]
        path = out / f"fig3_layers_{method.lower()}.png"
        plot_layers(
            run.folder / "layers.csv",
            path,
            test_loss=loss,
            title=_titled(
                f"Figure 3: {method}, batch {batch[0]}, lr {run.lr:g}, seed {run.seed}", batch[1]
            ),
        )
        paths.append(path)
    return paths


def lambda_ablation(runs: list[Run], out: Path) -> list[Path]:
    """Figure 6: TVLARS per lambda: test accuracy (top) and test loss (bottom) per epoch."""
    series: dict[tuple, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for r in _main_setting(_done(runs)):
        if r.optimizer == "tvlars":
            key = (r.batch_size, r.lr, r.tv_decay is None, r.setting_note)
            series[key][r.lambda_label].append(r)
    panels = sorted(k for k, v in series.items() if len(v) >= 2)
    if not panels:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(
        2,
        len(panels),
        figsize=(max(4.4 * len(panels), 5.2), 7),
        squeeze=False,
        layout="constrained",
    )
    for column, key in enumerate(panels):
        batch, lr, literal, note = key
        labels = sorted(series[key], key=lambda label: series[key][label][0].decay_value)
        for label in labels:
            _draw(axes[0][column], series[key][label], "test_acc", label)
            _draw(axes[1][column], series[key][label], "test_loss", label)
        kind = "literal λ" if literal else "λ in paper shape"
        axes[0][column].set(
            title=_titled(f"batch {batch}, lr {lr:g} ({kind})", note),
            xlabel="epoch",
            ylabel="test accuracy (%)",
        )
        axes[1][column].set(xlabel="epoch", ylabel="test loss (log scale)")
        axes[1][column].set_yscale("log")
        for ax in axes[:, column]:
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize="small")
    fig.suptitle("Figure 6: TVLARS's decay λ")
    path = out / "fig6_lambda.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def lr_ablation(runs: list[Run], out: Path) -> list[Path]:
    """Figure 7: final test accuracy against the learning rate, one line per method."""
    series: dict[int, dict[str, dict[float, list[Run]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in _main_setting(_done(runs)):
        series[r.batch_size][_titled(arm(r), r.setting_note)][r.lr].append(r)
    panels = sorted(b for b, arms in series.items() if any(len(lrs) >= 2 for lrs in arms.values()))
    if not panels:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(max(4.6 * len(panels), 6.4), 4),
        squeeze=False,
        layout="constrained",
    )
    for ax, batch in zip(axes[0], panels, strict=True):
        for name, lrs in sorted(series[batch].items()):
            if len(lrs) < 2:
                continue
            xs = sorted(lrs)
            stats = [stat(r.final_acc for r in lrs[x]) for x in xs]
            means = [s.mean for s in stats]
            errors = [s.std if s.n > 1 else 0.0 for s in stats]
            ax.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=name)
        ax.set(
            title=f"batch {batch}", xlabel="target learning rate", ylabel="final test accuracy (%)"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Figure 7: accuracy against the learning rate (error bars: std over seeds)")
    path = out / "fig7_lr.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def init_ablation(runs: list[Run], out: Path) -> list[Path]:
    """Figure 8: final test accuracy per weight init, grouped by method, per batch size."""
    series: dict[int, dict[str, dict[str, list[Run]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in _done(runs):
        if r.excluded_lr_scale == 1.0:
            name = _titled(f"{arm(r)}, lr {r.lr:g}", r.setting_note)
            series[r.batch_size][name][r.init].append(r)
    panels = sorted(b for b, arms in series.items() if any(len(i) >= 2 for i in arms.values()))
    if not panels:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False, layout="constrained"
    )
    for ax, batch in zip(axes[0], panels, strict=True):
        arms = {name: inits for name, inits in sorted(series[batch].items()) if len(inits) >= 2}
        inits = sorted({i for v in arms.values() for i in v})
        width = 0.8 / len(inits)
        for k, init in enumerate(inits):
            stats = [stat(r.final_acc for r in arms[name].get(init, [])) for name in arms]
            ax.bar(
                np.arange(len(arms)) + k * width - 0.4 + width / 2,
                [s.mean if s.n else 0 for s in stats],
                width,
                yerr=[s.std if s.n > 1 else 0 for s in stats],
                label=init,
            )
        ax.set_xticks(np.arange(len(arms)), list(arms), fontsize="small", rotation=10)
        ax.set(title=f"batch {batch}", ylabel="final test accuracy (%)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize="small", title="init")
    fig.suptitle("Figure 8: weight initialization")
    path = out / "fig8_init.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


FIGURES = (schedules, warmup, layer_norms, lambda_ablation, lr_ablation, init_ablation)
