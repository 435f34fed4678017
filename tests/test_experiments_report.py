"""The report, from run folders written by hand: its numbers are the summaries' numbers."""

from __future__ import annotations

import csv
import json

import pytest

from tvlars.cli import main
from tvlars.experiments.claims import HOLDS, UNDECIDED_VERDICT, UNTESTED, evaluate_claims
from tvlars.experiments.grid import SweepSpec, expand
from tvlars.experiments.records import read_runs
from tvlars.experiments.report import write_report

EPOCHS = 10


def write_run(
    root,
    method,
    batch,
    lr,
    seed,
    accuracy,
    *,
    dataset="mnist1d",
    init="xavier_uniform",
    tv_decay=None,
    excluded=1.0,
    diverged=False,
    curve=None,
    layers=False,
    lmbda=1e-4,
    epochs=EPOCHS,
):
    """A finished run folder as a sweep leaves it; test accuracy rises to ``accuracy``."""
    spec = SweepSpec(
        name="t",
        methods=(method,),
        batches={batch: (lr,)},
        seeds=(seed,),
        datasets=(dataset,),
        inits=(init,),
        lambdas={"classification": () if tv_decay else (lmbda,)},
        tv_decays=(tv_decay,) if tv_decay else (),
        excluded_lr_scales=(excluded,),
        base={"epochs": epochs},
    )
    (cell,) = expand(spec)
    folder = root / "runs" / cell.run_id()
    folder.mkdir(parents=True)
    config = cell.config.resolved()
    (folder / "cell.json").write_text(json.dumps({"run_id": cell.run_id(), **cell.describe()}))
    plan = {"steps_per_epoch": 50_000 // batch, "lmbda": lmbda}
    (folder / "config.json").write_text(
        json.dumps({"run_id": cell.run_id(), "config": config.to_dict(), "plan": plan})
    )
    curve = curve or [accuracy * min(1.0, (e + 1) / 5) for e in range(EPOCHS)]
    curve[-1] = accuracy
    with open(folder / "metrics.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            [
                "epoch",
                "step",
                "lr",
                "train_loss",
                "train_acc",
                "test_loss",
                "test_acc",
                "test_acc5",
                "seconds",
            ]
        )
        for e, acc in enumerate(curve, start=1):
            writer.writerow(
                [
                    e,
                    e * plan["steps_per_epoch"],
                    lr,
                    1.0,
                    acc,
                    2.0 - acc / 100,
                    acc,
                    min(100, acc + 20),
                    e,
                ]
            )
    if layers:
        with open(folder / "layers.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(
                [
                    "step",
                    "layer",
                    "weight_norm",
                    "grad_norm",
                    "norm_ratio",
                    "trust_ratio",
                    "step_size",
                ]
            )
            for step in range(1, 20):
                for layer in ("conv1.weight", "fc.weight"):
                    writer.writerow(
                        [step, layer, 1.0 + step, 1.0 / step, step * (1 + step), 1, 0.1]
                    )
    summary = {
        "run_id": cell.run_id(),
        "final_test_acc": curve[-1],
        "best_test_acc": max(curve),
        "diverged": diverged,
        "diverged_epoch": 3 if diverged else None,
        "wall_seconds": 5.0,
        "epochs": EPOCHS,
        "excluded_lr_scale": excluded,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def jagged(accuracy):
    """A test-accuracy curve that swings 10 points from epoch to epoch."""
    return [accuracy + (5.0 if e % 2 else -5.0) for e in range(EPOCHS)]


@pytest.fixture
def sweep(tmp_path):
    """WA-LARS, NOWA-LARS (jagged curves) and TVLARS at two batch sizes, three seeds each."""
    values = {
        ("WA-LARS", 1024): (70.0, 71.0, 72.0),
        ("TVLARS", 1024): (80.0, 81.0, 82.0),
        ("NOWA-LARS", 1024): (40.0, 60.0, 20.0),
        ("WA-LARS", 16384): (60.0, 61.0, 62.0),
        ("TVLARS", 16384): (75.0, 76.0, 77.0),
        ("NOWA-LARS", 16384): (10.0, 10.0, 30.0),
    }
    lrs = {1024: 4.0, 16384: 19.0}
    for (method, batch), accs in values.items():
        for seed, acc in enumerate(accs):
            write_run(
                tmp_path,
                method,
                batch,
                lrs[batch],
                seed,
                acc,
                diverged=(method == "NOWA-LARS" and acc == 10.0),
                layers=method.endswith("LARS") and seed == 0,
                curve=jagged(acc) if method == "NOWA-LARS" else None,
            )
    return tmp_path


def table_rows(folder):
    with open(folder / "table.csv") as file:
        return list(csv.DictReader(file))


def test_the_table_holds_the_mean_and_spread_of_the_summaries(sweep):
    write_report(sweep, figures=False)
    rows = {(int(r["batch_size"]), r["variant"]): r for r in table_rows(sweep)}
    tv = rows[(1024, "TVLARS · λ=0.0001")]
    assert float(tv["mean_final_acc"]) == pytest.approx(81.0)
    assert float(tv["std_final_acc"]) == pytest.approx(1.0)
    assert int(tv["n"]) == 3
    assert int(rows[(16384, "NOWA-LARS")]["diverged"]) == 2


def test_the_markdown_table_shows_the_same_numbers_and_marks_divergence(sweep):
    text = write_report(sweep, figures=False).path.read_text()
    assert "81.0 ± 1.0 (n=3)" in text
    assert "61.0 ± 1.0 (n=3)" in text
    assert "†2" in text
    assert "*learning rate*" in text


def test_the_console_summary_is_the_table_and_each_claims_verdict(sweep):
    report = write_report(sweep, figures=False)
    summary = report.console_summary()
    assert report.table in summary
    assert "81.0 ± 1.0 (n=3)" in summary
    assert len(report.verdicts) >= 7
    for number, (title, outcome) in enumerate(report.verdicts, start=1):
        assert f"{number}. {title}: {outcome}" in summary
        assert f"### {number}. {title}: **{outcome}**" in report.path.read_text()


def test_runs_csv_lists_every_run_folder(sweep):
    write_report(sweep, figures=False)
    with open(sweep / "runs.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 18
    assert {float(r["final_acc"]) for r in rows if r["method"] == "TVLARS"} == {
        80.0,
        81.0,
        82.0,
        75.0,
        76.0,
        77.0,
    }


def test_paper_numbers_appear_beside_ours_on_the_papers_datasets(tmp_path):
    write_run(tmp_path, "WA-LARS", 512, 1.0, 0, 70.0, dataset="cifar10")
    write_run(tmp_path, "TVLARS", 512, 1.0, 0, 71.0, dataset="cifar10")
    text = write_report(tmp_path, figures=False).path.read_text()
    assert "70.0 [74.64]" in text and "71.0 [78.92]" in text
    rows = table_rows(tmp_path)
    assert {float(r["paper_acc"]) for r in rows} == {74.64, 78.92}


def test_the_report_counts_each_methods_highest_findings_then_lists_each_run(sweep):
    from collections import Counter

    from tvlars.telemetry import diagnose
    from tvlars.telemetry.diagnosis import highest

    expected: dict[str, Counter] = {}
    for folder in sorted((sweep / "runs").iterdir()):
        if (folder / "layers.csv").exists():
            method = json.loads((folder / "cell.json").read_text())["method"]
            top = highest(diagnose(folder))
            kind = f"{top.severity}: {top.rule}" if top else "no finding"
            expected.setdefault(method, Counter())[kind] += 1
    # Seed 0 of each LARS-type method has telemetry, at two batch sizes.
    assert set(expected) == {"WA-LARS", "NOWA-LARS", "TVLARS"}
    text = write_report(sweep, figures=False).path.read_text()
    section = text.split("## Per-layer norms")[1].split("## Figures")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| method | runs | highest finding: runs |"
    for row, method in zip(rows[1:], sorted(expected), strict=True):
        ordered = sorted(expected[method].items(), key=lambda item: (-item[1], item[0]))
        counts = "; ".join(f"{kind}: {n}" for kind, n in ordered)  # most runs first
        assert row == f"| {method} | {sum(expected[method].values())} | {counts} |"
    assert sum(line.startswith("- `") for line in section.splitlines()) == 6


def test_figures_are_drawn_only_when_their_runs_exist(sweep, tmp_path_factory):
    write_report(sweep)
    for name in (
        "fig1_5_schedules.png",
        "fig2_warmup.png",
        "fig3_layers_wa-lars.png",
        "fig3_layers_nowa-lars.png",
    ):
        assert (sweep / name).stat().st_size > 1000, name
    for name in ("fig6_lambda.png", "fig7_lr.png", "fig8_init.png"):
        assert not (sweep / name).exists()


def test_ablation_figures_are_drawn_from_ablation_runs(tmp_path):
    for i, lmbda in enumerate((1e-5, 1e-4, 1e-3)):
        write_run(tmp_path, "TVLARS", 1024, 4.0, 0, 70.0 + i, lmbda=lmbda)
    for lr in (2.0, 3.0):
        write_run(tmp_path, "TVLARS", 1024, lr, 0, 60.0 + lr)
    write_run(tmp_path, "TVLARS", 1024, 4.0, 0, 65.0, init="kaiming_normal")
    write_report(tmp_path)
    for name in ("fig6_lambda.png", "fig7_lr.png", "fig8_init.png"):
        assert (tmp_path / name).exists(), name


def test_claims_give_verdicts_from_the_evidence(sweep):
    claims = {c.title: c for c in evaluate_claims(read_runs(sweep))}
    beats = claims["TVLARS is more accurate than WA-LARS at every batch size"]
    assert beats.verdict == HOLDS
    # NOWA-LARS diverged in two of three seeds at B=16384 (a mixed picture): undecided.
    assert claims["LARS without warm-up (NOWA-LARS) is unstable"].verdict == UNDECIDED_VERDICT
    assert claims["The weight initialization hardly matters"].verdict == UNTESTED
    assert claims["A higher learning rate gives higher accuracy"].verdict == UNTESTED


def test_runs_differing_in_a_setting_besides_the_seed_are_kept_apart_and_labelled(tmp_path):
    for seed, acc in enumerate((70.0, 72.0)):
        write_run(tmp_path, "WA-LARS", 1024, 4.0, seed, acc, epochs=10)
        write_run(tmp_path, "WA-LARS", 1024, 4.0, seed, acc - 30.0, epochs=5)
    write_report(tmp_path, figures=False)
    rows = {r["variant"]: r for r in table_rows(tmp_path)}
    assert set(rows) == {
        "WA-LARS · delay_epochs=0.5, epochs=5, warmup_epochs=1",
        "WA-LARS · delay_epochs=1, epochs=10, warmup_epochs=2",
    }
    assert [int(r["n"]) for r in rows.values()] == [2, 2]
    assert (
        float(rows["WA-LARS · delay_epochs=1, epochs=10, warmup_epochs=2"]["mean_final_acc"])
        == 71.0
    )


def test_runs_of_one_setting_carry_no_setting_label(sweep):
    write_report(sweep, figures=False)
    assert {r["variant"] for r in table_rows(sweep)} == {
        "WA-LARS",
        "NOWA-LARS",
        "TVLARS · λ=0.0001",
    }


def test_wa_lamb_eta_sits_in_the_papers_lr_column_and_its_row_names_the_lr_factor(tmp_path):
    write_run(tmp_path, "WA-LARS", 16384, 19.0, 0, 80.0)
    folder = write_run(tmp_path, "WA-LAMB·η", 16384, 19.0, 0, 90.0)
    config = json.loads((folder / "config.json").read_text())["config"]
    assert config["lr"] == pytest.approx(0.019) and config["preset"] == "paper"
    lamb = write_run(tmp_path, "WA-LAMB", 16384, 19.0, 0, 12.0)
    lamb_config = json.loads((lamb / "config.json").read_text())["config"]
    assert lamb_config["lr"] == 19.0 and lamb_config["preset"] == "official"
    text = write_report(tmp_path, figures=False).table
    assert "*19*" in text and "*0.019*" not in text
    assert "| WA-LAMB·η · LR x0.001 | 90.0 |" in text
    assert "| WA-LAMB | 12.0 |" in text


def test_the_report_command_writes_report_md_and_prints_the_table(tmp_path, capsys):
    write_run(tmp_path, "TVLARS", 1024, 4.0, 0, 70.0)
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").exists()
    out = capsys.readouterr().out
    assert "| TVLARS · λ=0.0001 | 70.0 |" in out
    assert f"report: {tmp_path / 'report.md'}" in out


def test_runs_differing_only_where_or_how_fast_they_ran_are_pooled(tmp_path):
    for seed, acc in enumerate((70.0, 72.0)):
        write_run(tmp_path, "WA-LARS", 1024, 4.0, seed, acc)
    # Seed 1 ran with other threads and a TensorBoard export: same computation, same row.
    (folder,) = [
        f
        for f in (tmp_path / "runs").iterdir()
        if '"seed": 1' in f.joinpath("config.json").read_text()
    ]
    config_file = json.loads((folder / "config.json").read_text())
    config_file["config"].update(threads=2, tensorboard=True)
    (folder / "config.json").write_text(json.dumps(config_file))
    write_report(tmp_path, figures=False)
    (row,) = table_rows(tmp_path)
    assert (row["variant"], int(row["n"])) == ("WA-LARS", 2)
