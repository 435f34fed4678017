"""``tvlars schedule``: tabulate or plot the learning-rate schedules the paper compares.

Panel 1 sets the warm-up schedule (WA: linear warm-up + cosine, Eq. 4) against the no-warm-up
one (NOWA: polynomial decay) and TVLARS's phi(t) (Eq. 8), like the paper's Figure 1; panel 2
draws phi(t) for several lambdas, like its Figure 5. Without ``--plot`` it prints the values
at a few landmark steps.

Defaults follow the paper's CIFAR setting: 100 epochs of 97 steps (50,000 images at batch
size 512, last partial batch dropped), warm-up over the first 20 epochs, phi delayed by 10.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tvlars.schedule_plot import (
    DEFAULT_DELAY_FRACTION,
    DEFAULT_EPOCHS,
    DEFAULT_LAMBDAS,
    DEFAULT_STEPS_PER_EPOCH,
    DEFAULT_WARMUP_FRACTION,
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _float_at_least(minimum: float, strict: bool):
    relation = ">" if strict else ">="

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        # Written so that NaN fails both comparisons.
        ok = value > minimum if strict else value >= minimum
        if not ok or value == float("inf"):
            raise argparse.ArgumentTypeError(
                f"expected a finite number {relation} {minimum:g}, got {text!r}"
            )
        return value

    return parse


def register(subparsers: Any) -> None:
    """Add the ``schedule`` subcommand to the ``tvlars`` command line."""
    parser = subparsers.add_parser(
        "schedule",
        help="tabulate or plot the WA, NOWA and TVLARS learning-rate schedules",
        description=(
            "Tabulate, or with --plot draw, the learning-rate multipliers of warm-up + cosine "
            "(WA, Eq. 4), polynomial decay without warm-up (NOWA) and TVLARS's phi(t) (Eq. 8). "
            "Lengths are in optimizer steps; each --*-steps option has an --*-epochs "
            "counterpart converted with --steps-per-epoch."
        ),
    )
    parser.add_argument("--plot", type=Path, metavar="PNG", help="write the figure to this file")

    total = parser.add_mutually_exclusive_group()
    total.add_argument("--total-steps", type=_positive_int, metavar="N", help="training length")
    total.add_argument(
        "--epochs",
        type=_float_at_least(0.0, strict=True),
        metavar="E",
        help=f"training length in epochs (default {DEFAULT_EPOCHS:g})",
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=_positive_int,
        default=DEFAULT_STEPS_PER_EPOCH,
        metavar="S",
        help=(
            f"optimizer steps per epoch (default {DEFAULT_STEPS_PER_EPOCH}: 50,000 CIFAR images "
            "at batch size 512)"
        ),
    )

    warmup = parser.add_mutually_exclusive_group()
    warmup.add_argument(
        "--warmup-steps",
        type=_non_negative_int,
        metavar="N",
        help=f"WA warm-up length (default {DEFAULT_WARMUP_FRACTION:.0%}% of the total)",
    )
    warmup.add_argument("--warmup-epochs", type=_float_at_least(0.0, strict=False), metavar="E")

    delay = parser.add_mutually_exclusive_group()
    delay.add_argument(
        "--delay-steps",
        type=_non_negative_int,
        metavar="D",
        help=f"phi's delay d (default {DEFAULT_DELAY_FRACTION:.0%}% of the total)",
    )
    delay.add_argument("--delay-epochs", type=_float_at_least(0.0, strict=False), metavar="E")

    parser.add_argument(
        "--lmbda",
        type=_float_at_least(0.0, strict=False),
        nargs="+",
        default=list(DEFAULT_LAMBDAS),
        metavar="L",
        help=(
            "phi's decay rates lambda, per step; the first one is the TVLARS curve of panel 1 "
            f"(default {' '.join(f'{x:g}' for x in DEFAULT_LAMBDAS)})"
        ),
    )
    parser.add_argument(
        "--alpha", type=_float_at_least(0.0, strict=True), default=1.0, help="phi's alpha"
    )
    parser.add_argument(
        "--floor",
        type=_float_at_least(0.0, strict=False),
        default=0.0,
        help="phi's lower bound gamma_min (default 0)",
    )
    parser.add_argument(
        "--power",
        type=_float_at_least(0.0, strict=True),
        default=2.0,
        help="NOWA's polynomial power (default 2)",
    )
    parser.add_argument(
        "--final-ratio",
        type=_float_at_least(0.0, strict=False),
        default=1e-3,
        help="WA's final LR as a fraction of the peak (default 1e-3, the paper's Section VI-A)",
    )
    parser.set_defaults(func=run, schedule_parser=parser)


def _resolve_lengths(args: argparse.Namespace) -> tuple[int, int, int]:
    """Total, warm-up and delay in steps, from whichever of steps or epochs was given."""
    from tvlars.schedules import epochs_to_steps

    parser: argparse.ArgumentParser = args.schedule_parser
    spe = args.steps_per_epoch
    if args.total_steps is not None:
        total = args.total_steps
    else:
        total = epochs_to_steps(DEFAULT_EPOCHS if args.epochs is None else args.epochs, spe)
        if total <= 0:
            parser.error(f"--epochs {args.epochs:g} at {spe} steps per epoch is less than a step")

    if args.warmup_steps is not None:
        warmup = args.warmup_steps
    elif args.warmup_epochs is not None:
        warmup = epochs_to_steps(args.warmup_epochs, spe)
    else:
        warmup = round(DEFAULT_WARMUP_FRACTION * total)

    if args.delay_steps is not None:
        delay = args.delay_steps
    elif args.delay_epochs is not None:
        delay = epochs_to_steps(args.delay_epochs, spe)
    else:
        delay = round(DEFAULT_DELAY_FRACTION * total)

    if warmup >= total:
        parser.error(
            f"the warm-up ({warmup} steps) must be shorter than the training ({total} steps)"
        )
    return total, warmup, delay


def run(args: argparse.Namespace) -> int:
    """Print the schedule table, or write the figure when ``--plot`` is given."""
    from tvlars.schedules import nowa_schedule, tv_schedule, wa_schedule

    parser: argparse.ArgumentParser = args.schedule_parser
    total, warmup, delay = _resolve_lengths(args)
    try:
        wa = wa_schedule(total, warmup, final_ratio=args.final_ratio)
        nowa = nowa_schedule(total, power=args.power)
        phis = {
            lmbda: tv_schedule(lmbda, alpha=args.alpha, delay=delay, floor=args.floor)
            for lmbda in args.lmbda
        }
    except ValueError as error:
        parser.error(str(error))

    if args.plot is None:
        _print_table(total, warmup, delay, args.steps_per_epoch, wa, nowa, phis)
        return 0
    from tvlars.schedule_plot import plot_schedules

    plot_schedules(
        args.plot,
        total_steps=total,
        steps_per_epoch=args.steps_per_epoch,
        warmup_steps=warmup,
        delay_steps=delay,
        lmbdas=args.lmbda,
        alpha=args.alpha,
        floor=args.floor,
        power=args.power,
        final_ratio=args.final_ratio,
    )
    print(f"wrote {args.plot}")
    return 0


def _print_table(total, warmup, delay, spe, wa, nowa, phis) -> None:
    landmarks: dict[int, list[str]] = {}
    for name, step in (
        ("start", 0),
        ("delay", delay),
        ("warm-up end", warmup),
        ("middle", total // 2),
        ("end", total),
    ):
        if step <= total:
            landmarks.setdefault(step, []).append(name)

    columns = ["WA", "NOWA"] + [f"phi[{lmbda:g}]" for lmbda in phis]
    width = max(11, *(len(c) for c in columns))
    print(
        f"LR multiplier over {total} steps ({total / spe:.4g} epochs of {spe} steps); "
        f"warm-up {warmup} steps, phi delay {delay} steps; phi[L] is phi(t) at lambda = L"
    )
    header = f"{'point':<20} {'step':>8} {'epoch':>8} " + " ".join(f"{c:>{width}}" for c in columns)
    print(header)
    print("-" * len(header))
    for step in sorted(landmarks):
        values = [wa(step), nowa(step)] + [phi(step) for phi in phis.values()]
        print(
            f"{', '.join(landmarks[step]):<20} {step:>8} {step / spe:>8.4g} "
            + " ".join(f"{v:>{width}.4g}" for v in values)
        )
