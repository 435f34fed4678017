"""The clipping options on the command line, in TOML files, run folders and sweep grids:
``--trust-clip`` (LARS, TVLARS) and ``--max-grad-norm`` (LAMB)."""

from __future__ import annotations

import json

import pytest
import torch

from tvlars.cli import main
from tvlars.experiments.grid import SweepSpec, expand
from tvlars.train import RunConfig
from tvlars.train.config import Plan
from tvlars.train.optimizers import build_optimizer


@pytest.fixture(autouse=True)
def small_world(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    torch.set_num_threads(1)


TINY = [
    "--dataset", "mnist1d", "--num-samples", "1000", "--model", "mnist1d-cnn",
    "--batch-size", "128", "--epochs", "1", "--warmup-epochs", "0.5",
]  # fmt: skip


def built_optimizer(**values) -> torch.optim.Optimizer:
    config = RunConfig(num_samples=1000, model="mnist1d-cnn", **values).resolved()
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    return build_optimizer(model, config, Plan.make(config, num_train=800, world_size=1))


@pytest.mark.parametrize(
    ("optimizer", "preset"), [("lars", "paper"), ("tvlars", "paper"), ("tvlars", "official")]
)
def test_trust_clip_reaches_the_optimizer(optimizer, preset):
    built = built_optimizer(optimizer=optimizer, preset=preset, trust_clip=True)
    assert all(group["trust_clip"] is True for group in built.param_groups)


@pytest.mark.parametrize("preset", ["paper", "official"])
def test_max_grad_norm_reaches_lamb(preset):
    built = built_optimizer(optimizer="lamb", preset=preset, max_grad_norm=1.5)
    assert all(group["max_grad_norm"] == 1.5 for group in built.param_groups)


@pytest.mark.parametrize(
    ("values", "flag"),
    [
        ({"optimizer": "lamb", "trust_clip": True}, "--trust-clip"),
        ({"optimizer": "sgd", "trust_clip": True}, "--trust-clip"),
        ({"optimizer": "tvlars", "max_grad_norm": 1.0}, "--max-grad-norm"),
        ({"optimizer": "lamb", "max_grad_norm": 0.0}, "--max-grad-norm"),
        ({"optimizer": "lamb", "max_grad_norm": -2.0}, "--max-grad-norm"),
    ],
)
def test_an_option_the_run_cannot_use_is_refused_naming_its_flag(values, flag):
    with pytest.raises(ValueError, match=flag):
        RunConfig(**values).resolved()


def test_options_at_their_defaults_leave_run_ids_as_they_were():
    assert "trust_clip" not in RunConfig().hashed_items()
    assert "max_grad_norm" not in RunConfig().hashed_items()
    trust_clipped = RunConfig(optimizer="lars", trust_clip=True)
    assert trust_clipped.run_id() != RunConfig(optimizer="lars").run_id()
    grad_clipped = RunConfig(optimizer="lamb", max_grad_norm=1.0)
    assert grad_clipped.run_id() != RunConfig(optimizer="lamb").run_id()


def test_flags_reach_config_json_and_summary_json(tmp_path):
    out = tmp_path / "run"
    command = ["train", *TINY, "--optimizer", "lamb", "--lr", "0.01", "--max-grad-norm", "0.5"]
    assert main([*command, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())["config"]
    assert (summary["max_grad_norm"], summary["trust_clip"]) == (0.5, False)
    assert (config["max_grad_norm"], config["trust_clip"]) == (0.5, False)
    assert (out / "layers.grad_clip.csv").exists()


def test_toml_keys_set_the_options(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('optimizer = "tvlars"\ntrust-clip = true\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(toml), *TINY, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["optimizer"], summary["trust_clip"]) == ("tvlars", True)


def test_pretrain_flags_reach_its_summary(tmp_path):
    out = tmp_path / "run"
    command = ["pretrain", *TINY, "--optimizer", "lars", "--trust-clip", "--eval-epochs", "1"]
    assert main([*command, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trust_clip"] is True


def test_a_grid_applies_each_option_to_the_optimizers_that_have_it():
    spec = SweepSpec(
        name="clipping",
        methods=("WA-LARS", "TVLARS", "WA-LAMB", "sgd:warmup-cosine"),
        batches={512: (1.0,)},
        base={"trust_clip": True, "max_grad_norm": 1.0, "epochs": 2},
    )
    options = {
        cell.config.optimizer: (cell.config.trust_clip, cell.config.max_grad_norm)
        for cell in expand(spec)
    }
    assert options == {
        "lars": (True, None),
        "tvlars": (True, None),
        "lamb": (False, 1.0),
        "sgd": (False, None),
    }
