"""The step-time benchmark's ResNet parameter lists match torchvision's models."""

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
