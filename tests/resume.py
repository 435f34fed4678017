"""Kill a run part-way through an epoch, resume it, and compare it with a run never killed:
the helpers the classification and the Barlow Twins resume tests share."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tvlars.data import DeviceBatches

#: The methods a resumed run must reproduce bit for bit. TVLARS carries phi(t) in the
#: optimizer's own state (no scheduler); WA-LARS and WA-LAMB warm up for two epochs and are
#: killed in the second, so they resume mid-warm-up with the scheduler's step count to restore.
RESUMED_METHODS: dict[str, dict[str, Any]] = {
    "TVLARS": {"optimizer": "tvlars", "schedule": "none"},
    "WA-LARS": {"optimizer": "lars", "schedule": "warmup-cosine", "warmup_epochs": 2},
    "WA-LAMB": {"optimizer": "lamb", "schedule": "warmup-cosine", "warmup_epochs": 2, "lr": 1e-2},
}


def metric_rows(folder: Path) -> list[dict[str, str]]:
    """``metrics.csv`` without its wall-time column, the one a resumed run may not repeat."""
    with open(folder / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        row.pop("seconds")
    return rows


def checkpoint_weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoint.pt", weights_only=True)["model"]


def kill_and_resume(
    run: Callable[[Path], Any],
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    kill_epoch: int,
    kill_batch: int,
) -> tuple[Any, int]:
    """``run(folder)`` killed (KeyboardInterrupt) as it draws micro-batch ``kill_batch`` of
    epoch ``kill_epoch`` (counted from 0), then run again to the end. Returns the resumed
    run's result and the optimizer step it resumed from (its last checkpoint's)."""
    original_epoch = DeviceBatches.epoch

    def killed(self, epoch, start=0):
        for index, batch in enumerate(original_epoch(self, epoch, start)):
            if epoch == kill_epoch and index == kill_batch:
                raise KeyboardInterrupt("killed")
            yield batch

    with monkeypatch.context() as patch:
        patch.setattr(DeviceBatches, "epoch", killed)
        with pytest.raises(KeyboardInterrupt):
            run(folder)
    assert not (folder / "summary.json").exists()
    plan = json.loads((folder / "config.json").read_text())["plan"]
    return run(folder), kill_epoch * plan["steps_per_epoch"]


def assert_resumed_run_equals_whole_run(whole: Path, resumed: Path) -> None:
    """Bit for bit: the same metrics (the LR column included), weights and telemetry."""
    assert metric_rows(resumed) == metric_rows(whole)
    whole_weights, resumed_weights = checkpoint_weights(whole), checkpoint_weights(resumed)
    assert whole_weights.keys() == resumed_weights.keys()
    for name, value in whole_weights.items():
        assert torch.equal(resumed_weights[name], value), name
    assert (resumed / "layers.csv").read_text() == (whole / "layers.csv").read_text()


def assert_resumed_mid_warmup(folder: Path, resumed_at: int) -> None:
    """The run resumed strictly inside its warm-up, where the LR changes at every step."""
    plan = json.loads((folder / "config.json").read_text())["plan"]
    assert 0 < resumed_at < plan["warmup_steps"], (resumed_at, plan["warmup_steps"])
