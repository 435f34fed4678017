"""The report's figures keep apart what the tables keep apart: Barlow Twins runs (whose
accuracy is a linear probe's) and runs that differ in a setting besides the grid's axes and
the seed are never averaged into a classification curve or point."""

from __future__ import annotations

import matplotlib.axes
import pytest

from tvlars.experiments import figures
from tvlars.experiments.records import Run

EPOCHS = 4


def make_run(
    method,
    batch,
    lr,
    seed,
    accuracy,
    *,
    task="classification",
    note="",
    init="xavier_uniform",
    folder=None,
) -> Run:
    """A finished run as the report reads it; test accuracy rises to ``accuracy``."""
    optimizer = {"TVLARS": "tvlars", "WA-LAMB": "lamb"}.get(method, "lars")
    if task == "classification":
        metrics = [
            {
                "epoch": e,
                "step": 10 * e,
                "test_acc": accuracy * e / EPOCHS,
                "test_loss": 2.0 - e / EPOCHS,
            }
            for e in range(1, EPOCHS + 1)
        ]
    else:  # Barlow Twins logs its pre-training loss and k-NN accuracy, no test accuracy
        metrics = [
            {"epoch": e, "step": 10 * e, "train_loss": 5.0 - e, "knn_acc": 30.0}
            for e in range(1, EPOCHS + 1)
        ]
    return Run(
        run_id=f"{task}-{method}-{batch}-{lr}-{seed}-{init}-{note}",
        folder=folder,
        state="finished",
        task=task,
        method=method,
        dataset="mnist1d",
        batch_size=batch,
        lr=lr,
        seed=seed,
        init=init,
        optimizer=optimizer,
        schedule="warmup-cosine" if method.startswith("WA") else "polynomial",
        lmbda=1e-4,
        tv_decay=None,
        plan_lmbda=1e-4,
        paper_lambda=None,
        excluded_lr_scale=1.0,
        epochs=EPOCHS,
        steps_per_epoch=10,
        setting_note=note,
        final_acc=accuracy,
        best_acc=accuracy,
        metrics=metrics,
    )


@pytest.fixture
def drawn(monkeypatch):
    """Every curve the figures draw: (label, the runs behind it)."""
    calls: list[tuple[str, list[str]]] = []
    original = figures._draw

    def record(ax, runs, column, label, **style):
        calls.append((label, sorted(r.run_id for r in runs)))
        original(ax, runs, column, label, **style)

    monkeypatch.setattr(figures, "_draw", record)
    return calls


@pytest.fixture
def points(monkeypatch):
    """Every line of points Figure 7 draws: label -> (x values, y values)."""
    lines: dict[str, tuple[list, list]] = {}
    original = matplotlib.axes.Axes.errorbar

    def record(self, x, y, *args, **kwargs):
        lines[kwargs["label"]] = (list(x), list(y))
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", record)
    return lines


def test_figure_2_draws_classification_runs_and_leaves_barlow_twins_runs_out(tmp_path, drawn):
    runs = [
        make_run("WA-LARS", 4096, 10.0, 0, 90.0),
        make_run("WA-LARS", 4096, 10.0, 1, 92.0),
        make_run("NOWA-LARS", 4096, 10.0, 0, 88.0),
        make_run("WA-LARS", 4096, 10.0, 0, 60.0, task="barlow-twins"),
    ]
    assert figures.warmup(runs, tmp_path) == [tmp_path / "fig2_warmup.png"]
    wa = [ids for label, ids in drawn if label.startswith("WA-LARS")]
    assert wa == [[runs[0].run_id, runs[1].run_id]]


def test_figure_2_draws_runs_of_another_setting_in_a_panel_of_their_own(tmp_path, drawn):
    runs = [
        make_run("WA-LARS", 4096, 10.0, 0, 90.0),
        make_run("NOWA-LARS", 4096, 10.0, 0, 88.0),
        make_run("WA-LARS", 4096, 10.0, 0, 70.0, note="epochs=2"),
        make_run("NOWA-LARS", 4096, 10.0, 0, 68.0, note="epochs=2"),
    ]
    figures.warmup(runs, tmp_path)
    assert sorted(ids for _, ids in drawn) == sorted([r.run_id] for r in runs)


def test_figure_7_draws_a_line_per_setting_and_leaves_barlow_twins_runs_out(tmp_path, points):
    runs = [
        make_run("WA-LARS", 16384, 15.0, 0, 80.0),
        make_run("WA-LARS", 16384, 19.0, 0, 70.0),
        make_run("WA-LARS", 16384, 15.0, 0, 50.0, note="weight_decay=0"),
        make_run("WA-LARS", 16384, 19.0, 0, 40.0, note="weight_decay=0"),
        make_run("WA-LARS", 16384, 19.0, 0, 10.0, task="barlow-twins"),
    ]
    assert figures.lr_ablation(runs, tmp_path) == [tmp_path / "fig7_lr.png"]
    assert points == {
        "WA-LARS": ([15.0, 19.0], [80.0, 70.0]),
        "WA-LARS [weight_decay=0]": ([15.0, 19.0], [50.0, 40.0]),
    }


def test_figure_6_draws_each_setting_in_a_panel_of_its_own(tmp_path, drawn):
    runs = []
    for note in ("", "epochs=2"):
        for i, lmbda in enumerate((1e-5, 1e-3)):
            run = make_run("TVLARS", 1024, 4.0, 0, 80.0 + i, note=note)
            run.lmbda = run.plan_lmbda = lmbda
            run.run_id += f"-{lmbda:g}"
            runs.append(run)
    assert figures.lambda_ablation(runs, tmp_path) == [tmp_path / "fig6_lambda.png"]
    # accuracy and loss for each of the 4 runs, each curve from one run alone
    assert sorted(ids for _, ids in drawn) == sorted([r.run_id] for r in runs for _ in (0, 1))


def test_figure_8_draws_a_group_per_setting(tmp_path, monkeypatch):
    bars: list[tuple[str, list]] = []
    original = matplotlib.axes.Axes.bar

    def record(self, x, height, *args, **kwargs):
        bars.append((kwargs["label"], list(height)))
        return original(self, x, height, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", record)
    runs = [
        make_run("WA-LARS", 16384, 19.0, 0, 80.0),
        make_run("WA-LARS", 16384, 19.0, 0, 60.0, init="kaiming_normal"),
        make_run("WA-LARS", 16384, 19.0, 0, 40.0, note="epochs=2"),
        make_run("WA-LARS", 16384, 19.0, 0, 20.0, init="kaiming_normal", note="epochs=2"),
    ]
    assert figures.init_ablation(runs, tmp_path) == [tmp_path / "fig8_init.png"]
    # One bar per init and group: "WA-LARS, lr 19" and "WA-LARS, lr 19 [epochs=2]"
    # (sorted), never their mean.
    assert sorted(bars) == [("kaiming_normal", [60.0, 20.0]), ("xavier_uniform", [80.0, 40.0])]
