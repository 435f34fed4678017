"""tvlars diagnose: findings from a run's per-layer norms (constructed files per rule, then
real tiny runs), their output forms, and the exit status."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tvlars.cli import main
from tvlars.telemetry import diagnose
from tvlars.telemetry.diagnosis import DiagnoseInputError, Finding, digest, load_run
from tvlars.telemetry.layers_file import HEADER

LAYERS = ("conv1.weight", "block.weight", "fc.weight")
STEPS = 100


def healthy_columns(steps: int = STEPS, layers=LAYERS, lr: float = 1.0, eta: float = 1e-3):
    """Per layer: LWN slowly shrinking, LGN slowly falling with noise, LARS's trust ratio:
    the update is lr * eta of the weight norm at every step."""
    rng = np.random.default_rng(0)
    t = np.arange(steps)
    columns = {}
    for i, name in enumerate(layers):
        weight = (3.0 + i) * (1 - 0.001 * t)
        grad = 0.5 * np.exp(-t / steps) * (1 + 0.1 * rng.standard_normal(steps))
        trust = eta * weight / grad
        columns[name] = {"weight_norm": weight, "grad_norm": grad, "trust_ratio": trust,
                         "step_size": lr * trust}  # fmt: skip
    return columns


def write_layers(folder, columns, steps=None, tail: str = ""):
    """Write a layers.csv as LayerRecorder does (norm_ratio = weight / grad)."""
    folder.mkdir(parents=True, exist_ok=True)
    count = len(next(iter(columns.values()))["weight_norm"])
    steps = range(count) if steps is None else steps
    lines = [HEADER]
    for row, step in enumerate(steps):
        for name, c in columns.items():
            w, g = c["weight_norm"][row], c["grad_norm"][row]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.float64(w) / np.float64(g)
            values = (w, g, ratio, c["trust_ratio"][row], c["step_size"][row])
            lines.append(f"{step},{name}," + ",".join(f"{v:.9g}" for v in values))
    (folder / "layers.csv").write_text("\n".join(lines) + "\n" + tail, encoding="utf-8")
    return folder


def write_config(folder, **config):
    plan = config.pop("plan", {})
    (folder / "config.json").write_text(json.dumps({"config": config, "plan": plan}))


def rules(findings):
    return {f.rule: f for f in findings}


# ----------------------------------------------------------------- constructed files, per rule
def test_a_healthy_constructed_run_has_no_finding(tmp_path):
    assert diagnose(write_layers(tmp_path, healthy_columns())) == []


def test_an_update_ten_times_the_weights_is_high_from_the_step_it_starts(tmp_path):
    columns = healthy_columns()
    columns["fc.weight"]["step_size"][40:] *= 1e4  # r = 1e-3 * 1e4 = 10
    found = rules(diagnose(write_layers(tmp_path, columns)))
    finding = found["step-above-weight"]
    assert finding.severity == "high"
    assert finding.layers == ("fc.weight",)
    assert finding.steps == (40, STEPS - 1)
    assert finding.values["peak_relative_step"] == pytest.approx(10, rel=1e-6)


def test_an_update_of_a_third_of_the_weights_is_a_warning(tmp_path):
    columns = healthy_columns()
    columns["block.weight"]["step_size"][10:20] *= 300  # r = 0.3
    finding = rules(diagnose(write_layers(tmp_path, columns)))["step-above-weight"]
    assert finding.severity == "warning"
    assert finding.steps == (10, 19)


def test_heavy_ball_momentum_from_config_multiplies_the_relative_step(tmp_path):
    columns = healthy_columns()
    for c in columns.values():
        c["step_size"] *= 50  # r = 0.05: nothing alone, 0.5 with momentum 0.9
    folder = write_layers(tmp_path, columns)
    assert diagnose(folder) == []
    write_config(folder, optimizer="lars", momentum=0.9, lr=50.0)
    finding = rules(diagnose(folder))["step-above-weight"]
    assert finding.values["peak_relative_step"] == pytest.approx(0.5, rel=1e-6)
    assert "--lr 25 or lower" in finding.suggestion


def test_a_weight_norm_grown_a_hundredfold_is_high(tmp_path):
    columns = healthy_columns()
    columns["conv1.weight"]["weight_norm"][50:] *= np.geomspace(2, 300, STEPS - 50)
    finding = rules(diagnose(write_layers(tmp_path, columns)))["weight-explosion"]
    assert finding.severity == "high"
    assert finding.layers == ("conv1.weight",)
    assert finding.values["peak_growth"] > 100
    assert finding.values["first_step_over_high"] > finding.values["first_step_over_warning"] >= 50


def test_a_gradient_norm_collapsing_to_zero_is_a_dead_layer(tmp_path):
    columns = healthy_columns()
    columns["block.weight"]["grad_norm"][60:] = 0.0
    finding = rules(diagnose(write_layers(tmp_path, columns)))["dead-layer"]
    assert finding.severity == "high"
    assert finding.layers == ("block.weight",)
    assert "--excluded-lr-scale" in finding.suggestion


def test_weights_turning_nan_for_good_is_a_divergence_led_by_the_first_layer_thrown(tmp_path):
    columns = healthy_columns()
    columns["fc.weight"]["step_size"][30:] *= 1e4  # fc is thrown around first
    for c in columns.values():
        c["weight_norm"][35:] = np.nan
        c["grad_norm"][35:] = np.nan
    finding = rules(diagnose(write_layers(tmp_path, columns)))["non-finite"]
    assert finding.severity == "high"
    assert finding.values["first_non_finite_step"] == 35
    assert finding.layers == ("fc.weight",)


def test_a_nan_row_followed_by_finite_rows_is_a_skipped_step_not_a_divergence(tmp_path):
    columns = healthy_columns()
    for key in ("weight_norm", "grad_norm", "trust_ratio", "step_size"):
        columns["fc.weight"][key][20] = np.nan  # the recorder's row of a layer without grad
    assert "non-finite" not in rules(diagnose(write_layers(tmp_path, columns)))


def test_a_nan_loss_in_metrics_is_a_divergence_even_without_telemetry_of_it(tmp_path):
    folder = write_layers(tmp_path, healthy_columns())
    (folder / "metrics.csv").write_text(
        "epoch,step,lr,train_loss,test_acc\n1,50,1.0,2.3,10.0\n2,100,1.0,nan,10.0\n"
    )
    write_config(folder, optimizer="lars", plan={"steps_per_epoch": 50})
    finding = rules(diagnose(folder))["non-finite"]
    assert finding.values["first_non_finite_epoch"] == 2
    assert finding.steps[0] == 50  # the first step of the epoch that went NaN


def test_an_early_lnr_spike_above_the_layers_later_level_is_reported(tmp_path):
    columns = healthy_columns()
    columns["block.weight"]["grad_norm"][2:5] /= 50  # LNR x50 in the first 10% of steps
    finding = rules(diagnose(write_layers(tmp_path, columns)))["early-lnr-spike"]
    assert finding.severity == "warning"
    assert finding.layers[0] == "block.weight"
    assert finding.steps == (0, 9)


def test_an_early_lnr_collapse_below_the_layers_later_level_is_reported(tmp_path):
    columns = healthy_columns()
    columns["fc.weight"]["grad_norm"][:6] *= 2  # LNR about 5x below its later level
    finding = rules(diagnose(write_layers(tmp_path, columns)))["early-lnr-collapse"]
    assert finding.severity == "info"
    assert finding.layers == ("fc.weight",)


def tvlars_config(folder, lmbda, total=186, delay=19):
    write_config(
        folder,
        optimizer="tvlars",
        momentum=0.9,
        lr=2.0,
        plan={"lmbda": lmbda, "delay_steps": delay, "min_scale": 0.002, "total_steps": total},
    )


def test_the_papers_lambda_over_a_short_run_leaves_phi_flat(tmp_path):
    folder = write_layers(tmp_path, healthy_columns())
    tvlars_config(folder, lmbda=1e-4)  # 1e-4 x 167 steps: phi falls by under 1%
    finding = rules(diagnose(folder))["phi-flat"]
    assert finding.severity == "warning"
    assert finding.values["fall"] < 0.01
    assert "--tv-decay" in finding.suggestion


def test_a_lambda_that_reaches_the_floor_in_the_first_half_is_reported(tmp_path):
    folder = write_layers(tmp_path, healthy_columns())
    tvlars_config(folder, lmbda=0.2)
    finding = rules(diagnose(folder))["phi-floor-early"]
    assert finding.values["floor_from_step"] < 93


def test_a_lambda_fitted_to_the_run_gives_no_phi_finding(tmp_path):
    folder = write_layers(tmp_path, healthy_columns())
    tvlars_config(folder, lmbda=3 / 167)
    assert not {"phi-flat", "phi-floor-early"} & set(rules(diagnose(folder)))


# ----------------------------------------------------------------- input handling
def test_a_run_still_writing_its_last_line_is_read_without_it(tmp_path):
    folder = write_layers(tmp_path, healthy_columns(), tail="100,conv1.weight,3.1,0.2")
    assert load_run(folder).last_step == STEPS - 1


GOOD = object()  # stands for a valid layers.csv


@pytest.mark.parametrize(
    ("files", "named", "fault"),
    [
        ({}, "layers.csv", "does not exist"),
        ({"layers.csv": HEADER + "\n"}, "layers.csv", "no rows"),
        ({"layers.csv": "step,loss\n1,2\n"}, "layers.csv", "header"),
        ({"layers.csv": HEADER + "\n0,fc.weight,1,2\n"}, "layers.csv", "line 2"),
        ({"layers.csv": GOOD, "config.json": "{"}, "config.json", "not valid JSON"),
        (
            {"layers.csv": GOOD, "metrics.csv": "epoch,step,train_loss\n1,x,2\n"},
            "metrics.csv",
            "not a metrics file",
        ),
    ],
)
def test_unreadable_input_names_the_file_and_the_fault(tmp_path, capsys, files, named, fault):
    folder = tmp_path / "run"
    folder.mkdir()
    for name, text in files.items():
        if text is GOOD:
            write_layers(folder, healthy_columns())
        else:
            (folder / name).write_text(text)
    with pytest.raises(DiagnoseInputError, match=fault) as error:
        diagnose(folder)
    assert str(folder / named) in str(error.value)
    assert main(["diagnose", str(folder)]) == 2
    assert str(folder / named) in capsys.readouterr().err


def test_json_output_carries_every_field_and_high_exits_1(tmp_path, capsys):
    columns = healthy_columns()
    columns["fc.weight"]["step_size"][40:] *= 1e4
    folder = write_layers(tmp_path, columns)
    assert main(["diagnose", str(folder), "--json"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert findings[0]["rule"] == "step-above-weight"
    assert {"rule", "severity", "layers", "steps", "values", "suggestion"} <= set(findings[0])
    assert (folder / "diagnosis.md").read_text().count("step-above-weight") >= 2
    assert (folder / "diagnosis.png").stat().st_size > 0


def test_a_run_with_nothing_high_exits_0_and_prints_its_summary(tmp_path, capsys):
    assert main(["diagnose", str(write_layers(tmp_path, healthy_columns())), "--no-write"]) == 0
    assert "no finding" in capsys.readouterr().out
    assert not (tmp_path / "diagnosis.md").exists()


def test_non_finite_values_are_json_strings():
    finding = Finding("r", "info", (), (0, 1), {"loss": math.nan}, "s", "x")
    assert json.loads(json.dumps(finding.to_dict()))["values"]["loss"] == "nan"


def test_digest_names_the_highest_finding():
    low = Finding("early-lnr-collapse", "info", ("a",), (0, 9), {}, "s", "x")
    high = Finding("weight-explosion", "high", ("b", "c", "d"), (8, 40), {}, "s", "x")
    assert digest([low, high]) == "high: weight-explosion, steps 8-40, b, c and 1 more (+1 more)"
    assert digest([]) == "no finding"


# ----------------------------------------------------------------- real tiny runs
@pytest.fixture
def small_world(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    torch.set_num_threads(1)


def tiny_run(out, **overrides):
    from tvlars.train import RunConfig, train

    values = dict(dataset="mnist1d", num_samples=1000, model="mnist1d-cnn", batch_size=128,
                  epochs=2, warmup_epochs=0.5, optimizer="lars", lr=1.0, out=str(out))  # fmt: skip
    values.update(overrides)
    return train(RunConfig(**values), progress=False)


def test_a_real_tiny_lars_run_at_a_sane_lr_has_no_high_finding(tmp_path, small_world):
    summary = tiny_run(tmp_path)
    assert not summary["diverged"]
    assert all(f.severity != "high" for f in diagnose(tmp_path))


def test_a_real_tiny_lars_run_at_lr_5000_is_flagged_before_it_diverges(tmp_path, small_world):
    summary = tiny_run(tmp_path / "run", lr=5000.0, schedule="none", epochs=8)
    assert summary["diverged"]
    found = rules(diagnose(tmp_path / "run"))
    assert found["non-finite"].severity == "high"
    diverged_at = found["non-finite"].values["first_non_finite_step"]
    # The telemetry alone, as it stood before the divergence: rows of earlier steps, the
    # config the run started with, no metrics.
    lines = (tmp_path / "run" / "layers.csv").read_text().splitlines(keepends=True)
    before = [line for line in lines[1:] if int(line.split(",")[0]) < diverged_at]
    (tmp_path / "before").mkdir()
    (tmp_path / "before" / "layers.csv").write_text(lines[0] + "".join(before))
    (tmp_path / "before" / "config.json").write_text((tmp_path / "run" / "config.json").read_text())
    early = rules(diagnose(tmp_path / "before"))
    assert "non-finite" not in early
    assert early["step-above-weight"].severity == "high"
    assert early["step-above-weight"].values["first_step_over_high"] < diverged_at


def test_the_sweep_report_gives_each_run_its_highest_finding(tmp_path):
    from test_experiments_report import write_run

    from tvlars.experiments.report import write_report

    thrown = write_run(tmp_path, "WA-LARS", 1024, 4.0, 0, 70.0)
    columns = healthy_columns()
    columns["fc.weight"]["step_size"][40:] *= 1e4
    write_layers(thrown, columns)
    calm = write_layers(write_run(tmp_path, "TVLARS", 1024, 4.0, 0, 80.0), healthy_columns())
    write_report(tmp_path, figures=False)
    text = (tmp_path / "report.md").read_text()
    assert f"`{thrown.name}` WA-LARS B=1024 lr 4 seed 0: high: step-above-weight" in text
    assert f"`{calm.name}` TVLARS B=1024 lr 4 seed 0: " in text


def test_a_real_tiny_tvlars_run_at_the_papers_lambda_has_phi_flat(tmp_path, small_world):
    tiny_run(tmp_path, optimizer="tvlars", lmbda=1e-4, lr=1.0)
    finding = rules(diagnose(tmp_path))["phi-flat"]
    assert finding.values["lambda"] == 1e-4
    assert finding.values["total_steps"] == 12  # 800 training samples / 128, 2 epochs
