"""What ``--tensorboard`` adds to a MNIST-1D training step.

Two loops train their own copy of the 1-D ResNet (``mnist1d-resnet``) with TVLARS on one
fixed batch of MNIST-1D-shaped signals, each with the layer recorder attached as ``tvlars
train`` attaches it (every step, flushed at every epoch end): one writes layers.csv only,
the other also TensorBoard events (the per-layer scalars at each flush, the epoch's
metrics and phi(t)). Rounds alternate which loop goes first; the table gives the median
time per step of each, wall-clock and CPU time of the process (all its threads: the event
writer's thread included), and the medians of the per-round ratios. CPU time moves less
than wall time when other jobs share the machine.

    python benchmarks/tensorboard_overhead.py [--batch-size 512] [--steps-per-epoch 31]
        [--epochs 2] [--rounds 9] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional

from tvlars import TVLARS
from tvlars.models import build_model
from tvlars.telemetry import LayerRecorder
from tvlars.telemetry.tensorboard import open_writer, write_epoch


def make_loop(batch: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("mnist1d-resnet", 10, generator=torch.Generator().manual_seed(seed))
    optimizer = TVLARS(model.parameters(), lr=2.0, momentum=0.9, weight_decay=5e-4,
                       lmbda=1e-3, delay_steps=10, min_scale=0.004)  # fmt: skip
    inputs = torch.randn(batch, 40, generator=torch.Generator().manual_seed(seed + 1))
    labels = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(seed + 2))
    return model, optimizer, inputs, labels


def time_run(tensorboard: bool, args: argparse.Namespace, folder: Path) -> tuple[float, float]:
    """Wall and process CPU seconds per step of ``args.epochs`` epochs, flushes and closing
    included."""
    model, optimizer, inputs, labels = make_loop(args.batch_size)
    writer = open_writer(folder) if tensorboard else None
    recorder = LayerRecorder(optimizer, model, folder / "layers.csv", tensorboard=writer)
    started, cpu_started = time.perf_counter(), time.process_time()
    step = 0
    for epoch in range(args.epochs):
        for _ in range(args.steps_per_epoch):
            optimizer.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
            step += 1
        recorder.flush()  # as the training loop does at each epoch end
        if writer is not None:
            row = {"epoch": epoch + 1, "step": step, "lr": 2.0, "train_loss": float(loss.detach())}
            write_epoch(writer, row, optimizer, step - args.steps_per_epoch)
    recorder.close()
    if writer is not None:
        writer.close()
    return (time.perf_counter() - started) / step, (time.process_time() - cpu_started) / step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps-per-epoch", type=int, default=31)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    ratios: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        time_run(True, args, Path(tmp) / "warm")  # imports, allocator, first events file
        for round_ in range(args.rounds):
            order = (False, True) if round_ % 2 == 0 else (True, False)
            seconds = {tb: time_run(tb, args, Path(tmp) / f"r{round_}-{tb}") for tb in order}
            for tb, value in seconds.items():
                times[tb].append(value)
            ratios.append(tuple(t / c for t, c in zip(seconds[True], seconds[False])))

    print(
        f"MNIST-1D ResNet, TVLARS, batch {args.batch_size}, {args.threads} thread(s), "
        f"{args.epochs} x {args.steps_per_epoch} steps per run, {args.rounds} rounds"
    )
    print("| loop | median wall ms/step | median CPU ms/step |")
    print("|---|---:|---:|")
    for tb, name in ((False, "layers.csv"), (True, "layers.csv + TensorBoard")):
        wall = statistics.median(t[0] for t in times[tb]) * 1e3
        cpu = statistics.median(t[1] for t in times[tb]) * 1e3
        print(f"| recorder, {name} | {wall:.2f} | {cpu:.2f} |")
    for i, kind in enumerate(("wall", "CPU")):
        values = [r[i] for r in ratios]
        ratio = statistics.median(values)
        print(
            f"TensorBoard overhead ({kind} time): median per-round ratio {ratio:.4f} "
            f"({(ratio - 1) * 100:+.1f}%); min {min(values):.4f}, max {max(values):.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
