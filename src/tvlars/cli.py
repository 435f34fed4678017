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

from tvlars.errors import EXIT_USAGE, UserError

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
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        raise Refused(f"tvlars {args.command}: {error}") from None


class Refused(SystemExit):
    """A command refused for bad input: its message is printed to stderr at once, and the
    process exits with status 2 (:data:`~tvlars.errors.EXIT_USAGE`), with no traceback.
    ``str()`` gives the message, so callers of :func:`main` can match on it."""

    def __init__(self, message: str) -> None:
        print(message, file=sys.stderr)
        super().__init__(EXIT_USAGE)
        self.message = message

    def __str__(self) -> str:
        return self.message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
