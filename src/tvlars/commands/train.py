"""``tvlars train``: one classification run (with no arguments: TVLARS on MNIST-1D, CPU).

Flags mirror the keys of ``tvlars.train.RunConfig``; ``--config FILE.toml`` supplies the
same keys, and flags given on the command line override it. Running the same command
on a folder with a checkpoint resumes it; on a finished folder it reports and exits.
Several processes: ``torchrun --nproc_per_node=N -m tvlars train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses

#: Exit status after Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130

HELP = {
    "dataset": "mnist1d (default, generated locally), cifar10, cifar100, tinyimagenet, synthetic",
    "data_dir": "folder holding the dataset's standard archive or extracted folder",
    "num_samples": "MNIST-1D: samples to generate (default 5000: 4000 train / 1000 test)",
    "model": "resnet18, resnet34, resnet18-cifar, resnet34-cifar, mnist1d-cnn, mnist1d-resnet",
    "init": "xavier_uniform, xavier_normal, kaiming_uniform (default), kaiming_normal",
    "optimizer": "tvlars (default), lars, lamb, sgd, adamw",
    "preset": "paper (default) or official: the authors' published arithmetic",
    "schedule": "none, warmup-cosine (WA), poly (NOWA), tv (phi(t) for any optimizer)",
    "lr": "target learning rate",
    "lr_scaling": "none (default: the paper) or linear256 (the authors' code: x batch/256)",
    "batch_size": "effective batch = micro-batch x accumulation x processes",
    "micro_batch": "samples per forward pass; bounds memory (default: the per-process batch)",
    "epochs": "training epochs",
    "warmup_epochs": "WA warm-up length in epochs (default: 20%% of --epochs, as the paper)",
    "lmbda": "TVLARS's lambda per step (paper: 1e-4)",
    "tv_decay": "set lambda = K / (total_steps - delay_steps): the same phi shape at every batch",
    "delay_epochs": "TVLARS's delay d_e in epochs (default: 10%% of --epochs, as the paper)",
    "min_scale": "TVLARS's gamma_min (default: batch/256 * 1e-3, the paper's)",
    "excluded_lr_scale": "LR of biases and normalization, as a multiple of the target LR",
    "weight_decay": "weight decay",
    "momentum": "momentum (LARS, TVLARS, SGD)",
    "trust_clip": "LARS/TVLARS: cap each layer's rate at the LR (LARC: trust = min(trust/lr, 1))",
    "max_grad_norm": "LAMB: divide all gradients by max(G / this, 1), G their global norm",
    "seed": "seed of weights, data order and augmentation",
    "threads": "CPU threads for this process",
    "precision": "fp32 (default), bf16 or fp16 autocast",
    "device": "auto (default), cpu or cuda",
    "compile": "torch.compile the model",
    "telemetry_every": "record per-layer norms every N steps into layers.csv",
    "tensorboard": 'TensorBoard event files in the run folder (pip install "tvlars[tensorboard]")',
    "out": "run folder (default: runs/<run id>)",
}


def add_config_flags(parser: argparse.ArgumentParser, config_class: type, help: dict) -> None:
    """One ``--flag`` per field of the config dataclass (``--config FILE.toml`` too); flags
    left out keep the file's or the dataclass's value (``argparse.SUPPRESS``)."""
    parser.add_argument("--config", help="TOML file with the same keys as these flags")
    defaults = config_class()
    for field in dataclasses.fields(config_class):
        if field.name == "extra":
            continue
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        text = help.get(field.name, "") + ("" if default is None else f" (default: {default})")
        if isinstance(default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text
            )
        else:
            kind = {"int": int, "float": float}.get(str(field.type).split(" ")[0], str)
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=text)


def add_restart_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--restart",
        action="store_true",
        default=argparse.SUPPRESS,
        help="start the run over: delete the run folder's checkpoint and results first "
        "(the way out of a damaged checkpoint)",
    )


def config_from_args(args: argparse.Namespace, config_class: type):
    """The config the flags describe: the TOML file's keys, overridden by given flags."""
    not_keys = ("func", "command", "config", "restart")
    given = {k: v for k, v in vars(args).items() if k not in not_keys}
    base = config_class.from_toml(args.config).to_dict() if args.config else {}
    return config_class.from_dict({**base, **given}, "command line")


def register(subparsers: argparse._SubParsersAction) -> None:
    from tvlars.train.config import RunConfig

    parser = subparsers.add_parser(
        "train",
        help="train a classifier (default: TVLARS on MNIST-1D, CPU)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flags(parser, RunConfig, HELP)
    add_restart_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tvlars.data import DatasetNotFoundError
    from tvlars.errors import UserError
    from tvlars.train import EXIT_DIVERGED, train
    from tvlars.train.loop import TrainingInterrupted

    try:
        from tvlars.train.config import RunConfig

        summary = train(config_from_args(args, RunConfig), restart=getattr(args, "restart", False))
    except (ValueError, DatasetNotFoundError) as error:
        raise UserError(str(error)) from None
    except KeyboardInterrupt as interrupt:
        where = f" at epoch {interrupt.epoch}" if isinstance(interrupt, TrainingInterrupted) else ""
        print(f"\ntvlars train: interrupted{where}; run the same command again to resume")
        return EXIT_INTERRUPTED
    if summary["diverged"]:
        print(f"diverged at epoch {summary['diverged_epoch']}")
        return EXIT_DIVERGED
    print(
        f"test accuracy {summary['final_test_acc']:.2f}% (best {summary['best_test_acc']:.2f}% "
        f"at epoch {summary['best_epoch']}), {summary['wall_seconds']:.0f}s"
    )
    return 0
