"""The step-time benchmark's parameter lists match the models they stand for."""

from __future__ import annotations

import importlib.util
from math import prod
from pathlib import Path

import pytest

_SHAPES_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "_shapes.py"


def _load_shapes_module():
    spec = importlib.util.spec_from_file_location("benchmark_shapes", _SHAPES_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shapes = _load_shapes_module()


@pytest.mark.parametrize(
    ("model", "parameters", "tensors", "weight_tensors"),
    [("resnet18", 11_689_512, 62, 21), ("resnet50", 25_557_032, 161, 54)],
)
def test_resnet_shapes_match_torchvision(model, parameters, tensors, weight_tensors):
    named = shapes.MODELS[model]()
    assert len(named) == tensors
    assert sum(prod(shape) for _, shape in named) == parameters
    assert shapes.parameter_count(named) == shapes.EXPECTED[model]["parameters"] == parameters
    assert shapes.EXPECTED[model]["tensors"] == tensors
    # Convolutions and the classifier are the layers LARS-style optimizers adapt (ndim > 1).
    assert sum(len(shape) > 1 for _, shape in named) == weight_tensors
    names = [name for name, _ in named]
    assert len(set(names)) == len(names)
    assert named[0] == ("conv1.weight", (64, 3, 7, 7))
    assert named[-1] == ("fc.bias", (1000,))


def test_vit_s16_shapes_match_timms_vit_small_patch16_224():
    named = shapes.MODELS["vit_s16"]()
    assert (
        sum(prod(shape) for _, shape in named)
        == 22_050_664
        == shapes.EXPECTED["vit_s16"]["parameters"]
    )
    assert len(named) == 152 == shapes.EXPECTED["vit_s16"]["tensors"]
    names = [name for name, _ in named]
    assert len(set(names)) == len(names)
    assert named[:3] == [
        ("cls_token", (1, 1, 384)),
        ("pos_embed", (1, 197, 384)),
        ("patch_embed.proj.weight", (384, 3, 16, 16)),
    ]
    assert ("blocks.11.mlp.fc2.weight", (384, 1536)) in named
    assert named[-2:] == [("head.weight", (1000, 384)), ("head.bias", (1000,))]
    # 12 blocks x 8 one-dimensional tensors, the patch bias, the final norm and head bias.
    assert sum(len(shape) == 1 for _, shape in named) == 12 * 8 + 4
