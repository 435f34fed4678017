"""The ``tvlars`` command line: one subcommand per module under ``tvlars.commands``.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit status. Modules
import torch and matplotlib inside ``func`` so that ``tvlars --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "tvlars.commands.demo",
    "tvlars.commands.pretrain",
    "tvlars.commands.schedule",
    "tvlars.commands.train",
    "tvlars.commands.sweep",
    "tvlars.commands.report",
    "tvlars.commands.diagnose",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvlars",
        description=(
            "Large-batch training with layer-wise adaptive optimizers: TVLARS, LARS, LAMB."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
