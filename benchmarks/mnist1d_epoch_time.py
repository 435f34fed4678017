"""Seconds per epoch of the MNIST-1D models at batch 1024 and 16384 (CPU by default).

Runs ``tvlars.train.train`` for each model and batch size on a generated MNIST-1D set
(default 60,000 samples: 48,000 train / 12,000 test), a few epochs each, and prints the
median seconds per epoch (first epoch left out: it pays one-time set-up) and training
images/s. Usage::

    python benchmarks/mnist1d_epoch_time.py [--epochs 4] [--threads 1] [--num-samples 60000]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tvlars.train import RunConfig, train


def epoch_seconds(folder: Path) -> list[float]:
    with open(folder / "metrics.csv") as file:
        cumulative = [float(row["seconds"]) for row in csv.DictReader(file)]
    return [b - a for a, b in zip([0.0, *cumulative], cumulative)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-samples", type=int, default=60000)
    parser.add_argument("--micro-batch", type=int, default=4096)
    parser.add_argument("--models", nargs="+", default=["mnist1d-cnn", "mnist1d-resnet"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1024, 16384])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# MNIST-1D epoch time: {args.num_samples} samples, torch {torch.__version__}, "
        f"{args.threads} thread(s), {args.epochs} epochs per cell, TVLARS, "
        f"{time.strftime('%Y-%m-%d')}\n"
    )
    print(
        "| model | batch | micro-batch | s/epoch incl. eval (median) | train images/s "
        "| test acc (%) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            for batch in args.batch_sizes:
                folder = Path(scratch) / f"{model}-{batch}"
                summary = train(
                    RunConfig(
                        dataset="mnist1d",
                        num_samples=args.num_samples,
                        model=model,
                        batch_size=batch,
                        micro_batch=min(args.micro_batch, batch),
                        epochs=args.epochs,
                        lr=2.0,
                        threads=args.threads,
                        out=str(folder),
                        telemetry_every=1,
                    ),
                    progress=False,
                    log=lambda message: None,
                )
                seconds = epoch_seconds(folder)[1:] or epoch_seconds(folder)
                per_epoch = statistics.median(seconds)
                print(
                    f"| {model} | {batch} | {min(args.micro_batch, batch)} | "
                    f"{per_epoch:.2f} | {summary['images_per_second']:,.0f} | "
                    f"{summary['final_test_acc']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
