"""Images per second of tvlars' device-resident batch iterator against a per-sample
``torch.utils.data.DataLoader`` pipeline doing the same augmentation.

Data: CIFAR-shaped synthetic uint8 images (default 50000 x 3 x 32 x 32, from
``tvlars.data.make_synthetic``), batches of 512. Every contender yields, per batch, float32
images that were randomly cropped from a 4-pixel zero padding, randomly flipped and
normalized per channel, plus int64 labels, on ``--device``:

- ``DeviceBatches``: the dataset on the device once; per batch one gather, one crop-and-
  flip gather and one normalize (to float, scale, shift) over the whole batch.
- ``DataLoader, N workers``: a map-style dataset whose ``__getitem__`` draws the crop and
  flip for one sample and applies pad, slice, flip and normalize to it with torch ops (what
  torchvision's ``RandomCrop(32, 4)``, ``RandomHorizontalFlip`` and ``Normalize`` do on a
  tensor), default collation, ``shuffle=True``, ``drop_last=True``; workers persist
  between epochs; on CUDA with pinned memory and a non-blocking copy to the device.

Each contender is warmed up (the DataLoader workers start), then timed in interleaved
rounds: every round times ``--batches`` consecutive batches of each contender, in a fresh
random order, so that drift in the machine's load is shared. Epochs roll over inside a
round as they do in training. Persistent DataLoader workers keep prefetching (two batches
each) while the other contenders are timed, which favours the DataLoader a little. On a
shared machine read the "other processes used N%" line first: with torch's default of one
intra-op thread per core, a busy neighbour stalls every parallel kernel, and ``--threads
1`` gives figures such load disturbs far less. The table reports the median images/s over
rounds, the interquartile range and each pipeline's speed relative to the best DataLoader.

    python benchmarks/data_pipeline.py [--device cpu] [--rounds 7] [--batches 20]
        [--batch-size 512] [--samples 50000] [--workers 0 2] [--threads N] [--markdown]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from _machine import busy_cpu_seconds, synchronize
from _timing import cpu_model
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

import tvlars
from tvlars.data import DeviceBatches, make_synthetic

PADDING = 4

Batch = tuple[Tensor, Tensor]


# ------------------------------------------------------------------------ contenders


class PerSampleAugmented(TorchDataset):
    """The per-sample pipeline: crop from a zero padding, flip, to float, normalize."""

    def __init__(self, images: Tensor, labels: Tensor, mean: Sequence[float], std: Sequence[float]):
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Batch:
        image = self.images[index]
        height, width = image.shape[1:]
        top, left = torch.randint(0, 2 * PADDING + 1, (2,)).tolist()
        crop = F.pad(image, (PADDING,) * 4)[:, top : top + height, left : left + width]
        if torch.rand(()) < 0.5:
            crop = crop.flip(-1)
        return (crop.float() / 255 - self.mean) / self.std, self.labels[index]


def device_batches_stream(dataset, batch_size: int, device: torch.device) -> Iterator[Batch]:
    batches = DeviceBatches.from_dataset(dataset, micro_batch=batch_size, device=device)
    return itertools.chain.from_iterable(batches.epoch(epoch) for epoch in itertools.count())


def data_loader_stream(
    dataset, batch_size: int, device: torch.device, workers: int
) -> Iterator[Batch]:
    loader = DataLoader(
        PerSampleAugmented(dataset.train_x, dataset.train_y, dataset.mean, dataset.std),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
    )
    for _ in itertools.count():
        for images, labels in loader:
            yield (
                images.to(device, non_blocking=True),
                labels.to(device, non_blocking=True),
            )


@dataclass
class Contender:
    name: str
    make: Callable[[], Iterator[Batch]]
    stream: Iterator[Batch] | None = None
    seconds: list[float] = field(default_factory=list)


def time_batches(contender: Contender, count: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        images, _labels = next(contender.stream)
    synchronize(device)
    return time.perf_counter() - start


# ------------------------------------------------------------------------ machine load


def own_cpu_seconds() -> float:
    """This process and its finished children: DataLoader workers count as ours."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def worker_cpu_seconds() -> float:
    """CPU seconds of this process's live children (persistent DataLoader workers)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in task.read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


# ------------------------------------------------------------------------ run and report


def summarize(rates: Sequence[float]) -> tuple[float, float, float]:
    if len(rates) < 2:
        return rates[0], rates[0], rates[0]
    q1, _, q3 = statistics.quantiles(rates, n=4, method="inclusive")
    return statistics.median(rates), q1, q3


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |"]
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def hardware(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=20, help="batches per contender a round")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--samples", type=int, default=50000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    dataset = make_synthetic(args.samples, 1, sample_shape=(3, 32, 32), seed=args.seed)

    contenders = [
        Contender(
            "DeviceBatches (tvlars)",
            lambda: device_batches_stream(dataset, args.batch_size, device),
        )
    ]
    for workers in args.workers:
        contenders.append(
            Contender(
                f"DataLoader, {workers} workers",
                lambda w=workers: data_loader_stream(dataset, args.batch_size, device, w),
            )
        )
    for contender in contenders:  # warm-up: start workers, touch every code path once
        contender.stream = contender.make()
        time_batches(contender, 2, device)

    busy, own, workers_cpu, wall = (
        busy_cpu_seconds(),
        own_cpu_seconds(),
        worker_cpu_seconds(),
        time.time(),
    )
    for _ in range(args.rounds):
        order = list(contenders)
        rng.shuffle(order)
        for contender in order:
            contender.seconds.append(time_batches(contender, args.batches, device))
    other_share = None
    if busy is not None:
        ours = (own_cpu_seconds() - own) + (worker_cpu_seconds() - workers_cpu)
        others = (busy_cpu_seconds() - busy) - ours
        capacity = (time.time() - wall) * (os.cpu_count() or 1)
        other_share = min(max(others / capacity, 0.0), 1.0)

    images_per_round = args.batches * args.batch_size
    summaries = {c.name: summarize([images_per_round / s for s in c.seconds]) for c in contenders}
    best_loader = max(
        (summaries[c.name][0] for c in contenders[1:]), default=summaries[contenders[0].name][0]
    )
    rows = [
        [
            name,
            f"{median:,.0f}",
            f"{q1:,.0f}-{q3:,.0f}",
            f"{median / best_loader:.2f}x",
        ]
        for name, (median, q1, q3) in summaries.items()
    ]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = "python benchmarks/data_pipeline.py " + shlex.join(arguments)
    header = [
        f"Command: `{command}`",
        f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"tvlars {tvlars.__version__}; torch {torch.__version__}; Python "
        f"{platform.python_version()}; device {device.type}: {hardware(device)}; "
        f"{torch.get_num_threads()} threads (of {os.cpu_count()} CPUs); load average at "
        f"end {load}",
        f"Data: {args.samples} x 3 x 32 x 32 uint8 (synthetic), batch {args.batch_size}; "
        f"random crop (padding {PADDING}) + horizontal flip + normalize to float32.",
        f"{args.rounds} interleaved rounds of {args.batches} batches "
        f"({images_per_round} images) per contender, after 2 warm-up batches each.",
        "Columns: median images/s over rounds; IQR = 25th-75th percentile; 'vs best "
        "DataLoader' = median / the fastest DataLoader median.",
    ]
    if other_share is not None:
        header.append(
            f"Other processes used {100 * other_share:.0f}% of the {os.cpu_count()} CPUs "
            "during the timed rounds (DataLoader workers count as ours)."
        )
    for line in header:
        print(f"- {line}" if args.markdown else line)
    print()
    print(render_table(["pipeline", "images/s", "IQR", "vs best DataLoader"], rows, args.markdown))


if __name__ == "__main__":
    main()
