"""The optimizer step inside a training step: a real model's forward and backward pass
before every step, as in training, for each optimizer of ``step_time.py``.

``step_time.py`` times steps alone, on parameter lists, one contender after another. Here
each contender trains its own copy of one model on one fixed batch, so its step meets the
memory a training step leaves behind: gradients freshly allocated by the backward pass
(``zero_grad(set_to_none=True)``, torch's default), caches filled with activations, and the
allocator's state after the forward pass's temporaries. The table gives each contender's
median step time, that step over torch's SGD step in the same round, the forward and
backward time, and what the user sees: the whole training step over SGD's.

    python benchmarks/train_step.py [--model resnet18-cifar] [--batch-size 16]
        [--image-size 32] [--rounds 15] [--warmup 2] [--device cpu] [--only REGEX]
        [--seed 0] [--markdown]
"""

from __future__ import annotations

import argparse
import copy
import gc
import random
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _contenders import (
    BASELINE,
    FLOOR,
    Contender,
    floor_contenders,
    peer_contenders,
    torch_contenders,
    tvlars_contenders,
)
from _machine import synchronize
from _timing import (
    OtherLoad,
    Summary,
    emit,
    heading,
    other_load_line,
    paired_ratio,
    render_table,
    source_revision,
    summarize,
)
from torch import nn
from torch.nn import functional

import tvlars
from tvlars.models import build_model
from tvlars.telemetry import LayerRecorder

RECORDED = "TVLARS default + LayerRecorder"


@dataclass
class Trainee:
    """A contender with its own copy of the model, and its optimizer."""

    contender: Contender
    model: nn.Module
    optimizer: torch.optim.Optimizer
    recorder: LayerRecorder | None = None
    forward_backward: list[float] = field(default_factory=list)
    step: list[float] = field(default_factory=list)


def contenders(device: torch.device) -> tuple[list[Contender], list[str]]:
    """SGD (loop and foreach), the floor, tvlars' defaults, the recorded TVLARS step and the
    peers found; with the names of the peers' packages."""
    ours = [c for c in tvlars_contenders() if c.path is None]  # the default paths
    recorded = next(c for c in ours if c.name == "TVLARS default")
    peers, found, _notes = peer_contenders()
    chosen = [
        *torch_contenders(),
        *floor_contenders(device),
        *ours,
        Contender(RECORDED, "LARS", "tvlars", recorded.build),
        *peers,
    ]
    return chosen, found


def enrol(
    contender: Contender, reference: nn.Module, device: torch.device, folder: Path
) -> Trainee:
    model = copy.deepcopy(reference).to(device)
    optimizer = contender.build(list(model.parameters()))
    recorder = None
    if contender.name == RECORDED:
        recorder = LayerRecorder(optimizer, model, folder / "layers.csv", every=1)
    return Trainee(contender, model, optimizer, recorder)


def train_step(
    trainee: Trainee, inputs: torch.Tensor, targets: torch.Tensor, device: torch.device
) -> tuple[float, float]:
    """One training step; returns (forward and backward seconds, optimizer step seconds)."""
    trainee.model.zero_grad(set_to_none=True)
    synchronize(device)
    start = time.perf_counter()
    functional.cross_entropy(trainee.model(inputs), targets).backward()
    synchronize(device)
    backward_done = time.perf_counter()
    trainee.optimizer.step()
    synchronize(device)
    return backward_done - start, time.perf_counter() - backward_done


def run_interleaved(
    trainees: Sequence[Trainee],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    args: argparse.Namespace,
    device: torch.device,
) -> float | None:
    """Warm-up steps, then ``args.rounds`` rounds of one training step per trainee in a
    shuffled order. Returns the share of the CPUs that other processes used meanwhile."""
    for trainee in trainees:
        for _ in range(args.warmup):
            train_step(trainee, inputs, targets, device)
    rng = random.Random(args.seed)
    gc.collect()
    gc.disable()
    try:
        with OtherLoad() as other_load:
            for _ in range(args.rounds):
                order = list(trainees)
                rng.shuffle(order)
                for trainee in order:
                    forward_backward, step = train_step(trainee, inputs, targets, device)
                    trainee.forward_backward.append(forward_backward)
                    trainee.step.append(step)
    finally:
        gc.enable()
    return other_load.share


def whole_steps(trainee: Trainee) -> Summary:
    return summarize([a + b for a, b in zip(trainee.forward_backward, trainee.step)])


def table_rows(trainees: Sequence[Trainee]) -> list[list[str]]:
    by_name = {t.contender.name: t for t in trainees}
    baseline = by_name.get(BASELINE)
    baseline_step = summarize(baseline.step) if baseline else None
    baseline_whole = whole_steps(baseline) if baseline else None
    floor = by_name.get(FLOOR)
    floor_step = summarize(floor.step) if floor else None
    rows = []
    for trainee in trainees:
        step, forward_backward = summarize(trainee.step), summarize(trainee.forward_backward)
        whole = whole_steps(trainee)
        shares = [s / (s + f) for s, f in zip(trainee.step, trainee.forward_backward)]
        rows.append([
            trainee.contender.name,
            f"{step.median_ms:.2f}",
            f"{step.q1_ms:.2f}-{step.q3_ms:.2f}",
            f"{paired_ratio(step, baseline_step):.2f}x" if baseline_step else "-",
            f"{paired_ratio(step, floor_step):.2f}x" if floor_step else "-",
            f"{forward_backward.median_ms:.1f}",
            f"{100 * statistics.median(shares):.1f}%",
            f"{paired_ratio(whole, baseline_whole):.3f}x" if baseline_whole else "-",
        ])  # fmt: skip
    return rows


def peer_lines(trainees: Sequence[Trainee]) -> list[str]:
    """Each tvlars default step against the fastest peer of its family, paired by round."""
    lines = []
    ours_by_family = {"LARS": ("LARS default", "TVLARS default"), "LAMB": ("LAMB default",)}
    for family, ours in ours_by_family.items():
        peers = [
            t
            for t in trainees
            if t.contender.family == family and t.contender.origin not in ("tvlars", "torch")
        ]
        if not peers:
            continue
        fastest = min(peers, key=lambda t: statistics.median(t.step))
        for trainee in trainees:
            if trainee.contender.name in ours:
                speedup = paired_ratio(summarize(fastest.step), summarize(trainee.step))
                lines.append(
                    f"{trainee.contender.name}: {speedup:.2f}x as fast as the fastest peer "
                    f"({fastest.contender.name}) inside training"
                )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18-cifar", help="a tvlars model name")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=32, help="side of the images")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per contender")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--only", help="time only contenders matching this regex (and SGD)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args(argv)
    for name in ("batch_size", "image_size", "classes", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    reference = build_model(
        args.model, args.classes, generator=torch.Generator().manual_seed(args.seed)
    )
    generator = torch.Generator().manual_seed(args.seed + 1)
    if args.model.startswith("mnist1d"):
        inputs = torch.randn(args.batch_size, 40, generator=generator)
    else:
        side = args.image_size
        inputs = torch.randn(args.batch_size, 3, side, side, generator=generator)
    inputs = inputs.to(device)
    targets = torch.randint(args.classes, (args.batch_size,), generator=generator).to(device)

    chosen, found = contenders(device)
    if args.only:
        chosen = [c for c in chosen if c.name == BASELINE or re.search(args.only, c.name)]
    with tempfile.TemporaryDirectory() as folder:
        trainees = [enrol(c, reference, device, Path(folder)) for c in chosen]
        share = run_interleaved(trainees, inputs, targets, args, device)
        recorded_rows = None
        for trainee in trainees:
            if trainee.recorder is not None:
                trainee.recorder.close()
                with open(Path(folder) / "layers.csv") as file:
                    recorded_rows = sum(1 for _ in file) - 1  # less the header

    parameters = sum(p.numel() for p in reference.parameters())
    images = "" if args.model.startswith("mnist1d") else f" of {args.image_size}px images"
    emit([
        "Command: `python benchmarks/train_step.py " + shlex.join(sys.argv[1:]) + "`",
        f"tvlars {tvlars.__version__} at {source_revision()}; torch {torch.__version__}; "
        f"device {device}; {torch.get_num_threads()} threads",
        f"Model {args.model} ({parameters:,} parameters), batch {args.batch_size}{images}; "
        f"{args.rounds} rounds after {args.warmup} warm-up steps, order shuffled each round",
        "Peers found: " + (", ".join(found) if found else "none"),
        "Columns: median optimizer step; its IQR; 'x SGD step' and 'x floor' = median over "
        "rounds of this step / that contender's step in the same round; forward+backward "
        "median; the step's share of the training step (median); 'training x SGD' = the "
        "same paired median for the whole training step (forward, backward and step).",
        other_load_line(share),
    ], args.markdown)  # fmt: skip
    print()
    print(heading(f"Inside a training step: {args.model}", args.markdown))
    print()
    headers = ["contender", "step ms", "IQR", "x SGD step", "x floor", "fwd+bwd ms",
               "step share", "training x SGD"]  # fmt: skip
    print(render_table(headers, table_rows(trainees), args.markdown))
    print()
    lines = peer_lines(trainees)
    if recorded_rows is not None:
        steps = args.warmup + args.rounds
        lines.append(f"{RECORDED}: {recorded_rows} rows recorded over {steps} steps")
    emit(lines, args.markdown)


if __name__ == "__main__":
    main()
