"""Samples per second of Barlow Twins' two-view augmentation, batched on the device
(``tvlars.pretrain.views``) against the same transformations applied one sample at a time.

Per sample, both contenders produce two views of a model-ready input:

- images (CIFAR-shaped, 3 x 32 x 32): random resized crop + flip, colour jitter (p 0.8),
  grayscale (p 0.2), Gaussian blur (p 1.0 / 0.1), solarization (p 0 / 0.2), normalize;
- MNIST-1D signals (length 40): translation, scaling, noise, masking.

``batched``: ``TwoViews.draw`` for the whole batch (CPU generator), one copy of the
parameters to the device, ``TwoViews.apply`` on the batch: a few tensor operations.
``per-sample``: the same functions called on one sample at a time (draw its parameters,
transform a 1-sample batch), then the views stacked into a batch: the work a per-image
transform pipeline does, in this process (no DataLoader workers: their parallelism would
be the same for both).

Rounds are interleaved: each round times ``--batches`` batches of every contender in a
fresh random order, so drift in the machine's load is shared; the table gives the median
samples/s over rounds and the interquartile range. On a shared machine use ``--threads 1``.

    python benchmarks/two_view_augment.py [--device cpu] [--rounds 5] [--batches 3]
        [--batch-size 256] [--threads 1] [--kinds image signal] [--markdown]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
from _machine import synchronize

from tvlars.pretrain.views import (
    TwoViews,
    apply_image_view,
    apply_signal_view,
    sample_image_view,
    sample_signal_view,
)

SHAPES = {"image": (3, 32, 32), "signal": (40,)}
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def make_views(kind: str) -> TwoViews:
    return TwoViews(kind, seed=0, sample_shape=SHAPES[kind], mean=MEAN, std=STD)


def batched(views: TwoViews, inputs: torch.Tensor, step: int):
    params = tuple(view.to(inputs.device) for view in views.draw(0, step, len(inputs)))
    return views.apply(inputs, params)


def per_sample(views: TwoViews, inputs: torch.Tensor, step: int):
    generator = torch.Generator().manual_seed(step)
    mean = torch.tensor(MEAN, device=inputs.device).view(3, 1, 1)
    std = torch.tensor(STD, device=inputs.device).view(3, 1, 1)
    first, second = [], []
    for sample in inputs:
        if views.kind == "image":
            image = (sample * std + mean).clamp(0, 1)[None]
            for recipe, out in zip(views.image_recipes, (first, second)):
                params = sample_image_view(1, recipe, generator).to(inputs.device)
                out.append((apply_image_view(image, params)[0] - mean) / std)
        else:
            for recipe, out in zip(views.signal_recipes, (first, second)):
                params = sample_signal_view(1, len(sample), recipe, generator).to(inputs.device)
                out.append(apply_signal_view(sample[None], params)[0])
    return torch.stack(first), torch.stack(second)


def time_batches(
    make: Callable, views: TwoViews, inputs: torch.Tensor, count: int, step: int
) -> float:
    synchronize(inputs.device)
    start = time.perf_counter()
    for offset in range(count):
        make(views, inputs, step + offset)
    synchronize(inputs.device)
    return time.perf_counter() - start


def quartiles(rates: list[float]) -> tuple[float, float, float]:
    if len(rates) < 2:
        return rates[0], rates[0], rates[0]
    q1, _, q3 = statistics.quantiles(rates, n=4, method="inclusive")
    return statistics.median(rates), q1, q3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--kinds", nargs="+", default=["image", "signal"])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    contenders = {"batched": batched, "per-sample": per_sample}
    rows = []
    for kind in args.kinds:
        views = make_views(kind)
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(args.batch_size, *SHAPES[kind], generator=generator).to(device)
        for make in contenders.values():  # warm-up
            time_batches(make, views, inputs, 1, 0)
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        shuffler = random.Random(0)
        for round_index in range(args.rounds):
            order = list(contenders)
            shuffler.shuffle(order)
            for name in order:
                seconds = time_batches(
                    contenders[name], views, inputs, args.batches, round_index * args.batches
                )
                rates[name].append(args.batch_size * args.batches / seconds)
        reference = statistics.median(rates["per-sample"])
        for name in contenders:
            median, q1, q3 = quartiles(rates[name])
            rows.append(
                (kind, name, f"{median:,.0f}", f"{q1:,.0f}-{q3:,.0f}", f"{median / reference:.1f}x")
            )
    headers = ("input", "pipeline", "samples/s (median)", "IQR", "vs per-sample")
    print(
        f"two views per sample, batch {args.batch_size}, {args.rounds} rounds x {args.batches} "
        f"batches, {device}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    if args.markdown:
        print("| " + " | ".join(headers) + " |")
        print("|---|---|---:|---:|---:|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
        for line in (headers, *rows):
            print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))


if __name__ == "__main__":
    main()
