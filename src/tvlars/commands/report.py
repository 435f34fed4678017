"""``tvlars report DIR``: the report of a sweep folder (also written at the end of a sweep).

Writes DIR/report.md (Table I's layout with mean and spread over seeds, the paper's
numbers beside ours where the sweep runs the paper's datasets, epochs to convergence, the
paper's claims with this sweep's evidence and a verdict), CSV files of the same numbers
and PNG figures (schedules, warm-up, per-layer norms, lambda, LR and init ablations) for
whichever the sweep has the cells.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write report.md, CSV tables and figures for a sweep folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dir", type=Path, metavar="DIR", help="the sweep's folder (--out of the sweep)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tvlars.experiments.report import write_report

    if not (args.dir / "runs").is_dir():
        raise SystemExit(f"tvlars report: {args.dir} has no runs/ folder: not a sweep folder")
    print(write_report(args.dir).console_summary())
    return 0
