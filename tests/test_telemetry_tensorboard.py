"""TensorBoard output: the recorder's flushes as per-layer scalars, a run's metrics and
phi(t), and the missing-extra error."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from tvlars import LARS
from tvlars.cli import main
from tvlars.schedules import tv_sigmoid
from tvlars.telemetry import LayerRecorder, read_layers, split_by_layer
from tvlars.telemetry.tensorboard import LAYER_SCALARS
from tvlars.train import RunConfig

COLUMN_OF = dict(zip(LAYER_SCALARS, ("weight_norm", "grad_norm", "norm_ratio", "trust_ratio",
                                     "step_size"), strict=True))  # fmt: skip


def events(folder):
    """Every scalar TensorBoard reads from the folder: {tag: {step: value}}."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    reader = accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0})
    reader.Reload()
    return {tag: {e.step: e.value for e in reader.Scalars(tag)} for tag in reader.Tags()["scalars"]}


def assert_events_match_layers_csv(folder, csv_path):
    scalars = events(folder)
    series = split_by_layer(read_layers(csv_path))
    for layer, columns in series.items():
        for short, column in COLUMN_OF.items():
            logged = scalars[f"layers/{layer}/{short}"]
            assert sorted(logged) == columns["step"].tolist()
            got = np.array([logged[s] for s in columns["step"]])
            np.testing.assert_allclose(got, columns[column], rtol=2e-6)


def test_the_recorder_writes_every_flushed_row_as_scalars_grouped_by_layer(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = LARS(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    writer = SummaryWriter(str(tmp_path / "tb"))
    # capacity 4 and every 2: several flushes, of full and partial buffers
    with LayerRecorder(
        optimizer, model, tmp_path / "layers.csv", every=2, capacity=4, tensorboard=writer
    ):
        for _ in range(21):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(torch.randn(8, 6)), torch.randn(8, 3)).backward()
            optimizer.step()
    writer.close()
    assert_events_match_layers_csv(tmp_path / "tb", tmp_path / "layers.csv")
    assert sorted(events(tmp_path / "tb")["layers/0.weight/lnr"]) == list(range(0, 21, 2))


@pytest.fixture
def small_world(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    torch.set_num_threads(1)


def test_a_tvlars_run_with_tensorboard_logs_metrics_phi_and_the_layers(tmp_path, small_world):
    pytest.importorskip("tensorboard")
    from tvlars.train import train

    config = RunConfig(dataset="mnist1d", num_samples=1000, model="mnist1d-cnn", batch_size=128,
                       epochs=2, delay_epochs=1, lmbda=0.05, out=str(tmp_path),
                       tensorboard=True)  # fmt: skip
    train(config, progress=False)
    scalars = events(tmp_path)
    assert_events_match_layers_csv(tmp_path, tmp_path / "layers.csv")
    metrics = {int(float(r.split(",")[1])): r for r in (tmp_path / "metrics.csv").read_text()
               .splitlines()[1:]}  # fmt: skip
    assert sorted(scalars["loss/train"]) == sorted(scalars["accuracy/test"]) == sorted(metrics)
    plan = json.loads((tmp_path / "config.json").read_text())["plan"]
    phi = scalars["schedule/phi"]
    assert sorted(phi) == list(range(plan["total_steps"]))
    expected = [tv_sigmoid(t, 0.05, 1.0, plan["delay_steps"], plan["min_scale"]) for t in phi]
    np.testing.assert_allclose([phi[t] for t in sorted(phi)], expected, rtol=1e-6)
    assert "lr" in scalars


def test_tensorboard_without_the_package_fails_at_once_with_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    with pytest.raises(ValueError, match=r'pip install "tvlars\[tensorboard\]"'):
        RunConfig(tensorboard=True).resolved()
    with pytest.raises(SystemExit, match=r"tvlars\[tensorboard\]"):
        main(["train", "--tensorboard", "--out", "/nonexistent/never-made"])


def test_tensorboard_output_does_not_change_the_run_id():
    pytest.importorskip("tensorboard")
    assert RunConfig(tensorboard=True).run_id() == RunConfig().run_id()


def test_a_pretrain_run_with_tensorboard_logs_its_loss_and_layers(tmp_path, small_world):
    pytest.importorskip("tensorboard")
    from tvlars.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(dataset="mnist1d", num_samples=1000, model="mnist1d-cnn",
                            projector="32-32", batch_size=200, epochs=2, eval_epochs=1,
                            knn_every=0, lr=0.5, out=str(tmp_path), tensorboard=True)  # fmt: skip
    pretrain(config, progress=False)
    assert_events_match_layers_csv(tmp_path, tmp_path / "layers.csv")
    assert sorted(events(tmp_path)["loss/train"]) == [4, 8]  # 800 train samples / 200


SWEEP_TOML = """
name = "tb"
methods = ["WA-LARS"]
[batches]
128 = [1]
[base]
dataset = "mnist1d"
num_samples = 1000
tensorboard = true
"""


def test_a_sweeps_tensorboard_key_reaches_every_cell(tmp_path):
    pytest.importorskip("tensorboard")
    from tvlars.commands.sweep import build_cells, load_preset

    (tmp_path / "grid.toml").write_text(SWEEP_TOML)
    cells = build_cells(load_preset(str(tmp_path / "grid.toml")), None, {})
    assert [cell.config.tensorboard for cell in cells] == [True]


def test_a_sweep_asking_for_tensorboard_without_the_package_fails_before_any_cell(
    tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    (tmp_path / "grid.toml").write_text(SWEEP_TOML)
    with pytest.raises(SystemExit, match=r"tvlars\[tensorboard\]"):
        main(["sweep", str(tmp_path / "grid.toml"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "runs").exists()


def test_the_overhead_benchmark_runs_and_prints_its_table():
    pytest.importorskip("tensorboard")
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "tensorboard_overhead.py"
    result = subprocess.run(
        [sys.executable, str(script), "--rounds", "1", "--epochs", "1", "--steps-per-epoch",
         "2", "--batch-size", "16"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TensorBoard overhead (CPU time): median per-round ratio" in result.stdout
