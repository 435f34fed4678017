"""Telemetry of the clipping options: the trust ratio and step size as applied after LARC's
clip, and LAMB's global gradient norm and clip factor in a file of their own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvlars import LAMB, LARS
from tvlars.telemetry import COLUMNS, LayerRecorder, read_grad_clip, read_layers


def model_and_batches(steps: int):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    batches = [(torch.randn(16, 6), torch.randint(0, 3, (16,))) for _ in range(steps)]
    return model, batches


def train(model, optimizer, batches, before_step=None) -> None:
    for inputs, targets in batches:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        if before_step is not None:
            before_step()
        optimizer.step()


def test_recorded_trust_ratio_and_step_size_are_those_after_the_clip(tmp_path):
    model, batches = model_and_batches(3)
    lr, eta = 2.0, 0.5
    optimizer = LARS(model.parameters(), lr=lr, eta=eta, weight_decay=0.0, trust_clip=True)
    expected_steps = []

    def unclipped_rates():
        # eta*|w|/|g| of each adapted layer (weight_decay 0): the rate the clip caps at lr.
        expected_steps.append(
            [eta * p.norm().item() / p.grad.norm().item() for p in model.parameters() if p.ndim > 1]
        )

    with LayerRecorder(optimizer, model, tmp_path / "layers.csv"):
        train(model, optimizer, batches, unclipped_rates)
    table = read_layers(tmp_path / "layers.csv")
    rates = np.array(expected_steps).reshape(-1)
    assert (rates > lr).any() and (rates < lr).any()  # capped and uncapped layers
    np.testing.assert_allclose(table["step_size"], np.minimum(rates, lr), rtol=1e-5)
    np.testing.assert_allclose(table["trust_ratio"], np.minimum(rates / lr, 1.0), rtol=1e-5)


def test_global_grad_norm_and_clip_factor_are_recorded_beside_the_layers_file(tmp_path):
    model, batches = model_and_batches(4)
    max_norm = 0.5
    optimizer = LAMB(model.parameters(), lr=0.01, max_grad_norm=max_norm)
    norms = []

    def global_norm():
        norms.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm().item())

    path = tmp_path / "layers.csv"
    with LayerRecorder(optimizer, model, path, every=2) as recorder:
        train(model, optimizer, batches, global_norm)
    assert recorder.grad_clip_path == tmp_path / "layers.grad_clip.csv"
    assert tuple(path.read_text().splitlines()[0].split(",")) == COLUMNS
    clip = read_grad_clip(recorder.grad_clip_path)
    recorded = np.array(norms)[[0, 2]]
    assert list(clip["step"]) == [0, 2]
    np.testing.assert_allclose(clip["global_grad_norm"], recorded, rtol=1e-6)
    np.testing.assert_allclose(clip["clip_factor"], np.maximum(recorded / max_norm, 1.0), rtol=1e-6)


def test_no_global_norm_file_without_max_grad_norm(tmp_path):
    model, batches = model_and_batches(2)
    optimizer = LAMB(model.parameters(), lr=0.01)
    with LayerRecorder(optimizer, model, tmp_path / "layers.csv") as recorder:
        train(model, optimizer, batches)
    assert not recorder.grad_clip_path.exists()


def test_resumed_recorder_drops_global_norm_rows_from_its_start_step_on(tmp_path):
    model, batches = model_and_batches(4)
    optimizer = LAMB(model.parameters(), lr=0.01, max_grad_norm=0.5)
    path = tmp_path / "layers.csv"
    with LayerRecorder(optimizer, model, path):
        train(model, optimizer, batches)
    with LayerRecorder(optimizer, model, path, start_step=2) as recorder:
        train(model, optimizer, batches[:1])
    assert list(read_grad_clip(recorder.grad_clip_path)["step"]) == [0, 1, 2]


def test_a_foreign_file_at_the_global_norm_path_is_not_overwritten(tmp_path):
    model, _ = model_and_batches(1)
    (tmp_path / "layers.grad_clip.csv").write_text("something,else\n1,2\n")
    optimizer = LAMB(model.parameters(), max_grad_norm=0.5)
    with pytest.raises(ValueError, match="not a layer telemetry file"):
        LayerRecorder(optimizer, model, tmp_path / "layers.csv", start_step=1)
