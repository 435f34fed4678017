"""Random datasets of any shape, for tests and speed runs (nothing to learn in them)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tvlars.data.dataset import Dataset, image_channel_stats, signal_stats

NAME = "synthetic"


def make_synthetic(
    num_train: int = 800,
    num_test: int = 200,
    *,
    sample_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    seed: int = 0,
) -> Dataset:
    """Uniform random uint8 images (``sample_shape`` of rank 3, ``(C, H, W)``) or standard
    normal float32 signals (rank 1, ``(L,)``) with uniform random labels.

    The same arguments give the same tensors on every machine (a seeded CPU generator).
    """
    sample_shape = tuple(int(size) for size in sample_shape)
    if len(sample_shape) not in (1, 3) or min(sample_shape) < 1:
        raise ValueError(
            f"synthetic: sample_shape {sample_shape} must be (C, H, W) for images or (L,) "
            "for signals, with positive sizes"
        )
    if num_train < 1 or num_test < 1 or num_classes < 1:
        raise ValueError("synthetic: num_train, num_test and num_classes must be positive")
    generator = torch.Generator().manual_seed(seed)
    kind = "image" if len(sample_shape) == 3 else "signal"

    def inputs(count: int) -> torch.Tensor:
        shape = (count, *sample_shape)
        if kind == "image":
            return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
        return torch.randn(shape, generator=generator)

    train_x, test_x = inputs(num_train), inputs(num_test)
    train_y = torch.randint(0, num_classes, (num_train,), generator=generator)
    test_y = torch.randint(0, num_classes, (num_test,), generator=generator)
    stats = image_channel_stats if kind == "image" else signal_stats
    mean, std = stats(train_x.numpy())
    return Dataset(
        name=NAME,
        kind=kind,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=num_classes,
        mean=mean,
        std=std,
        class_names=tuple(f"class_{label}" for label in range(num_classes)),
    )
