"""``tvlars demo``: a one-minute large-batch comparison on the CPU, no data to download.

A teacher network labels Gaussian inputs; a student MLP with batch norm learns them at a
large batch with WA-LARS, NOWA-LARS, WA-LAMB, TVLARS and momentum SGD. The command
prints a table of test accuracy per method, records TVLARS's and WA-LARS's per-layer
norms (LWN, LGN, LNR) and draws them in the paper's Figure 3 layout. It is the project's
smallest end-to-end check; ``tvlars train`` and ``tvlars sweep`` run the paper's study.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="compare TVLARS, LARS and LAMB at a large batch on synthetic data (CPU, ~1 min)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/demo"),
        help="folder for layers CSV files and figures (default: runs/demo)",
    )
    parser.add_argument("--epochs", type=int, default=30, help="epochs per method (default 30)")
    parser.add_argument("--batch-size", type=int, default=4096, help="batch size (default 4096)")
    parser.add_argument(
        "--samples",
        type=int,
        default=32768,
        help="training samples (default 32768); the test set is a quarter",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of data and weights")
    parser.set_defaults(func=run)


def _teacher_data(samples: int, seed: int, split: int, features: int = 32, classes: int = 10):
    """Inputs ~ N(0, I); labels = argmax of a random two-layer tanh network fixed by
    ``seed``. Each ``split`` draws its own inputs from the same teacher."""
    import torch

    teacher = torch.Generator().manual_seed(seed)
    hidden = torch.randn(features, 64, generator=teacher) / features**0.5
    readout = torch.randn(64, classes, generator=teacher) / 8.0
    inputs = torch.randn(
        samples, features, generator=torch.Generator().manual_seed(seed * 7919 + split)
    )
    labels = (torch.tanh(inputs @ hidden) @ readout).argmax(dim=1)
    return inputs, labels


def _student(seed: int, features: int = 32, classes: int = 10, width: int = 256):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(features, width),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, classes),
    )


def _methods(total_steps: int, warmup_steps: int, delay_steps: int):
    """(name, optimizer factory, schedule or None) for each method compared."""
    import torch

    from tvlars import LAMB, LARS, TVLARS
    from tvlars.schedules import nowa_schedule, wa_schedule

    return [
        (
            "SGD (WA)",
            lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9, weight_decay=5e-4),
            wa_schedule(total_steps, warmup_steps),
        ),
        ("WA-LARS", lambda p: LARS(p, lr=8.0), wa_schedule(total_steps, warmup_steps)),
        ("NOWA-LARS", lambda p: LARS(p, lr=8.0), nowa_schedule(total_steps)),
        ("WA-LAMB", lambda p: LAMB(p, lr=1e-2), wa_schedule(total_steps, warmup_steps)),
        (
            "TVLARS",
            lambda p: TVLARS(
                p,
                lr=8.0,
                lmbda=10.0 / (total_steps - delay_steps),
                delay_steps=delay_steps,
                min_scale=0.016,
            ),
            None,
        ),
    ]


def run(args: argparse.Namespace) -> int:
    import torch

    from tvlars.schedules import ScheduleLR, epochs_to_steps, steps_per_epoch
    from tvlars.telemetry import LayerRecorder, plot_layers

    if args.batch_size < 2 or args.batch_size > args.samples:
        raise SystemExit(f"tvlars demo: --batch-size must be in [2, --samples={args.samples}]")
    if args.epochs < 2:
        raise SystemExit("tvlars demo: --epochs must be at least 2")
    args.out.mkdir(parents=True, exist_ok=True)
    train_x, train_y = _teacher_data(args.samples, args.seed, split=0)
    test_x, test_y = _teacher_data(args.samples // 4, args.seed, split=1)
    per_epoch = steps_per_epoch(args.samples, args.batch_size)
    total = per_epoch * args.epochs
    warmup = epochs_to_steps(0.2 * args.epochs, per_epoch)
    delay = epochs_to_steps(0.1 * args.epochs, per_epoch)
    print(
        f"tvlars demo: {args.samples} samples, batch {args.batch_size}, {per_epoch} steps/epoch, "
        f"{args.epochs} epochs ({total} steps); warm-up {warmup} steps, TVLARS delay {delay}"
    )

    rows = []
    for name, make_optimizer, schedule in _methods(total, warmup, delay):
        model = _student(args.seed)
        optimizer = make_optimizer(model.parameters())
        scheduler = ScheduleLR(optimizer, schedule) if schedule is not None else None
        slug = name.lower().replace(" ", "-").replace("(", "").replace(")", "")
        layers_csv = args.out / f"layers-{slug}.csv"
        layers_csv.unlink(missing_ok=True)
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(args.seed)
        with LayerRecorder(optimizer, model, layers_csv, every=1):
            for _ in range(args.epochs):
                model.train()
                order = torch.randperm(args.samples, generator=generator)
                for step in range(per_epoch):
                    batch = order[step * args.batch_size : (step + 1) * args.batch_size]
                    optimizer.zero_grad(set_to_none=True)
                    loss = torch.nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
                    loss.backward()
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
        seconds = time.perf_counter() - started
        model.eval()
        with torch.no_grad():
            test_logits = model(test_x)
            test_loss = torch.nn.functional.cross_entropy(test_logits, test_y).item()
            test_acc = (test_logits.argmax(1) == test_y).float().mean().item() * 100
        rows.append((name, loss.item(), test_loss, test_acc, seconds))
        plot_layers(
            layers_csv, args.out / f"layers-{slug}.png", title=f"{name}, batch {args.batch_size}"
        )

    print("\n| method | final train loss | test loss | test acc (%) | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name, train_loss, test_loss, test_acc, seconds in rows:
        print(f"| {name} | {train_loss:.4f} | {test_loss:.4f} | {test_acc:.2f} | {seconds:.1f} |")
    print(f"\nper-layer norms (LWN, LGN, LNR) of every method: {args.out}/layers-*.csv and .png")
    return 0
