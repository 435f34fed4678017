"""Models for the TVLARS experiments: ResNet-18/34 for images, MNIST-1D models for signals.

Every model is a :class:`Classifier`: ``forward(x)`` gives logits, ``forward_features(x)``
(alias ``features``) gives pooled penultimate features of width ``feature_dim``, and
``num_classes=0`` builds the backbone without its head. Build them by name with
:func:`build_model`, which also applies a weight initialization scheme (:func:`apply_init`).
"""

from tvlars.models.blocks import BasicBlock
from tvlars.models.classifier import Classifier, InputKind
from tvlars.models.init import DEFAULT_INIT, INIT_SCHEMES, apply_init
from tvlars.models.mnist1d import MNIST1DCNN, MNIST1DResNet
from tvlars.models.registry import (
    MODEL_NAMES,
    ModelSpec,
    build_model,
    check_input_kind,
    input_kind,
    model_spec,
)
from tvlars.models.resnet import ResNet, resnet18, resnet34

__all__ = [
    "DEFAULT_INIT",
    "INIT_SCHEMES",
    "MNIST1DCNN",
    "MODEL_NAMES",
    "BasicBlock",
    "Classifier",
    "InputKind",
    "MNIST1DResNet",
    "ModelSpec",
    "ResNet",
    "apply_init",
    "build_model",
    "check_input_kind",
    "input_kind",
    "model_spec",
    "resnet18",
    "resnet34",
]
