"""Linear evaluation: a linear classifier trained on frozen backbone features.

The backbone stays in eval mode (batch norm uses its running statistics, which nothing
updates) and runs under ``no_grad``, once over the training set and once over the test
set, without augmentation (:func:`extract_features`). A :class:`LinearProbe` is then fit to
the training features alone: features standardized per dimension with the training set's
mean and standard deviation (a fixed affine map, so the probe is still linear in the
features; it puts pre-trained and random backbones, whose feature scales differ by
orders of magnitude, on one footing), then one linear layer, trained by SGD with momentum
on the cross-entropy, with a learning rate decayed per epoch by a cosine::

    lr_e = lr * (1 + cos(pi * e / epochs)) / 2,   e = 0 .. epochs - 1

Top-1 and top-5 accuracy are measured on the whole test set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tvlars.data import EvalBatches
from tvlars.data.batches import derive_seed

DEFAULT_EVAL_EPOCHS = 100
DEFAULT_PROBE_LR = 0.1
DEFAULT_PROBE_BATCH = 256
_PROBE_STREAM = 7


@dataclass(frozen=True)
class LinearEvalResult:
    """Accuracies (%) of a linear probe: top-1 and top-5 on the test set, top-1 on the
    training set it was fit to."""

    top1: float
    top5: float
    train_top1: float


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    autocast_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """``(features, labels)`` of every batch, the backbone in eval mode (float32)."""
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    try:
        for inputs, targets in batches:
            with torch.autocast(
                inputs.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                features.append(backbone(inputs).float())
            labels.append(targets)
    finally:
        backbone.train(was_training)
    return torch.cat(features), torch.cat(labels)


def dataset_features(
    backbone: nn.Module,
    dataset,
    device: torch.device,
    batch_size: int = 512,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Features and labels of the whole training set and the whole test set (no
    augmentation, no sharding: every process computes all of them)."""
    splits = []
    for inputs, labels in ((dataset.train_x, dataset.train_y), (dataset.test_x, dataset.test_y)):
        batches = EvalBatches(
            inputs,
            labels,
            batch_size=batch_size,
            device=device,
            mean=dataset.mean,
            std=dataset.std,
        )
        splits.append(extract_features(backbone, batches, autocast_dtype))
    return splits[0], splits[1]


class LinearProbe(nn.Module):
    """``linear((x - mean) / std)`` with the standardization fixed from training features."""

    def __init__(self, train_features: Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", train_features.mean(dim=0))
        # Dead units (a ReLU that never fires) have std 0: leave them at 0, not NaN.
        self.register_buffer("std", train_features.std(dim=0).clamp(min=1e-6))
        self.linear = nn.Linear(train_features.shape[1], num_classes)
        nn.init.zeros_(self.linear.weight)  # a convex problem: any start, so a fixed one
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear((features - self.mean) / self.std)


def fit_linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    num_classes: int,
    *,
    epochs: int = DEFAULT_EVAL_EPOCHS,
    batch_size: int = DEFAULT_PROBE_BATCH,
    lr: float = DEFAULT_PROBE_LR,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> LinearProbe:
    """Train a :class:`LinearProbe` (see the module docstring); the sample order of each
    epoch follows from ``(seed, epoch)``."""
    probe = LinearProbe(train_features, num_classes).to(train_features.device)
    optimizer = torch.optim.SGD(
        probe.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    count = len(train_features)
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
        generator = torch.Generator().manual_seed(derive_seed(seed, epoch, _PROBE_STREAM))
        order = torch.randperm(count, generator=generator).to(train_features.device)
        for first in range(0, count, batch_size):
            index = order[first : first + batch_size]
            loss = F.cross_entropy(probe(train_features[index]), train_labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return probe.eval()


@torch.no_grad()
def top_k_accuracy(logits: Tensor, labels: Tensor, k: int) -> float:
    """Share (%) of samples whose label is among the ``k`` largest logits."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels[:, None]).any(dim=1).sum().item() * 100 / len(labels)


def linear_evaluation(
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    num_classes: int,
    **probe_options,
) -> LinearEvalResult:
    """Fit a probe to ``train = (features, labels)``; score it on ``test``."""
    probe = fit_linear_probe(train[0], train[1], num_classes, **probe_options)
    with torch.no_grad():
        test_logits, train_logits = probe(test[0]), probe(train[0])
    return LinearEvalResult(
        top1=top_k_accuracy(test_logits, test[1], 1),
        top5=top_k_accuracy(test_logits, test[1], 5),
        train_top1=top_k_accuracy(train_logits, train[1], 1),
    )
