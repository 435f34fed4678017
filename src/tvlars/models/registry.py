"""Models by name, for configs and the command line: :func:`build_model` and friends.

Each name maps to a :class:`ModelSpec`: how to build the model and what kind of input it
reads, so that a training run can refuse a dataset/model mismatch (an image dataset for an
MNIST-1D model, say) with a clear message before it builds anything.

    ``resnet18``, ``resnet34``              ImageNet stem, as the TVLARS authors used them
    ``resnet18-cifar``, ``resnet34-cifar``  CIFAR stem (3x3 stride-1 conv, no max-pool)
    ``mnist1d-cnn``                         the MNIST-1D reference CNN (Greydanus 2020)
    ``mnist1d-resnet``                      a small 1-D ResNet with batch norm
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from tvlars.models.classifier import Classifier, InputKind
from tvlars.models.init import DEFAULT_INIT, apply_init, check_init_scheme
from tvlars.models.mnist1d import MNIST1DCNN, MNIST1DResNet
from tvlars.models.resnet import resnet18, resnet34

__all__ = [
    "MODEL_NAMES",
    "ModelSpec",
    "build_model",
    "check_input_kind",
    "input_kind",
    "model_spec",
]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        name: the registry name.
        input_kind: ``"image"`` (N, C, H, W) or ``"signal"`` (N, L) / (N, C, L).
        default_in_channels: input channels when the caller does not say.
        factory: ``factory(num_classes=..., in_channels=...)`` builds the model.
    """

    name: str
    input_kind: InputKind
    default_in_channels: int
    factory: Callable[..., Classifier]


_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("resnet18", "image", 3, partial(resnet18, stem="imagenet")),
        ModelSpec("resnet34", "image", 3, partial(resnet34, stem="imagenet")),
        ModelSpec("resnet18-cifar", "image", 3, partial(resnet18, stem="cifar")),
        ModelSpec("resnet34-cifar", "image", 3, partial(resnet34, stem="cifar")),
        ModelSpec("mnist1d-cnn", "signal", 1, MNIST1DCNN),
        ModelSpec("mnist1d-resnet", "signal", 1, MNIST1DResNet),
    )
}

#: Names :func:`build_model` accepts.
MODEL_NAMES: tuple[str, ...] = tuple(_SPECS)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``; ValueError listing the names otherwise."""
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODEL_NAMES)}") from None


def input_kind(name: str) -> InputKind:
    """What the model ``name`` reads: ``"image"`` or ``"signal"``."""
    return model_spec(name).input_kind


def check_input_kind(name: str, data_kind: str) -> None:
    """Raise ValueError when the model ``name`` cannot read inputs of kind ``data_kind``."""
    expected = input_kind(name)
    if data_kind != expected:
        compatible = [other for other in MODEL_NAMES if _SPECS[other].input_kind == data_kind]
        raise ValueError(
            f"model {name!r} reads {expected} inputs but the dataset gives {data_kind} inputs; "
            f"models for {data_kind} inputs: {compatible}"
        )


def build_model(
    name: str,
    num_classes: int,
    *,
    in_channels: int | None = None,
    init: str | None = DEFAULT_INIT,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Build the model registered as ``name`` and initialize its weights.

    Args:
        name: one of :data:`MODEL_NAMES`.
        num_classes: logits of the linear head; 0 builds the backbone alone, whose forward
            returns (N, model.feature_dim) features.
        in_channels: input channels; by default 3 for images and 1 for signals.
        init: a scheme of :data:`tvlars.models.init.INIT_SCHEMES`, or None to keep PyTorch's
            default initialization.
        generator: random source for the initial weights; the global one when None.

    Raises:
        ValueError: for an unknown model or init scheme, or a negative ``num_classes``.
    """
    spec = model_spec(name)
    if init is not None:
        check_init_scheme(init)  # fail before building a large model
    channels = spec.default_in_channels if in_channels is None else in_channels
    model = spec.factory(num_classes=num_classes, in_channels=channels)
    if init is not None:
        apply_init(model, init, generator=generator)
    return model
