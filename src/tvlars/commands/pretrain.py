"""``tvlars pretrain``: Barlow Twins pre-training, then linear evaluation, in one run folder
(with no arguments: TVLARS on MNIST-1D, CPU, about a minute).

The flags of ``tvlars train`` (the keys of ``tvlars.train.RunConfig``; ``--epochs`` and
``--pretrain-epochs`` both count pre-training epochs) plus those of Barlow Twins (the keys
of ``tvlars.pretrain.PretrainConfig``); ``--config FILE.toml`` supplies the same keys, and
flags given on the command line override it. Running the same command on a folder with
a checkpoint resumes it in whichever stage it was; on a finished folder it reports.
Several processes: ``torchrun --nproc_per_node=N -m tvlars pretrain ...``.
"""

from __future__ import annotations

import argparse

from tvlars.commands.train import (
    EXIT_INTERRUPTED,
    add_config_flags,
    add_restart_flag,
    config_from_args,
)
from tvlars.commands.train import HELP as TRAIN_HELP

HELP = {
    **TRAIN_HELP,
    "epochs": "pre-training epochs (same as --pretrain-epochs)",
    "lmbda": "TVLARS's lambda per step (paper, for Barlow Twins: 1e-5)",
    "projector": "widths of the projector's layers (default: 2048-2048-4096 for images, "
    "128-128-128 for MNIST-1D)",
    "bt_lambda": "weight of the off-diagonal terms of the Barlow Twins loss",
    "pretrain_epochs": "pre-training epochs (wins over --epochs)",
    "eval_epochs": "epochs of the linear probe on frozen features",
    "knn_every": "k-NN accuracy on the test set every N epochs (0: after the last only)",
    "knn_k": "neighbours voting in the k-NN accuracy",
    "blur": "Gaussian blur in the image views (--no-blur: the CIFAR recipe)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from tvlars.pretrain.config import PretrainConfig

    parser = subparsers.add_parser(
        "pretrain",
        help="Barlow Twins pre-training + linear evaluation (default: TVLARS on MNIST-1D, CPU)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flags(parser, PretrainConfig, HELP)
    add_restart_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tvlars.data import DatasetNotFoundError
    from tvlars.errors import UserError
    from tvlars.pretrain import pretrain
    from tvlars.train import EXIT_DIVERGED

    try:
        from tvlars.pretrain.config import PretrainConfig

        config = config_from_args(args, PretrainConfig)
        summary = pretrain(config, restart=getattr(args, "restart", False))
    except (ValueError, DatasetNotFoundError) as error:
        raise UserError(str(error)) from None
    except KeyboardInterrupt as interrupt:
        from tvlars.train.driver import TrainingInterrupted

        where = f" at epoch {interrupt.epoch}" if isinstance(interrupt, TrainingInterrupted) else ""
        print(f"\ntvlars pretrain: interrupted{where}; run the same command again to resume")
        return EXIT_INTERRUPTED
    if summary["diverged"]:
        print(f"diverged at epoch {summary['diverged_epoch']}")
        return EXIT_DIVERGED
    print(
        f"linear accuracy {summary['linear_acc']:.2f}% (top-5 {summary['linear_acc5']:.2f}%), "
        f"random backbone {summary['random_init_linear_acc']:.2f}%, "
        f"k-NN {summary['knn_acc']:.2f}%, {summary['wall_seconds']:.0f}s"
    )
    return 0
