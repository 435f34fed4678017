"""``tvlars diagnose RUN_DIR``: what a run's per-layer norms say, and which knob to turn.

Reads RUN_DIR/layers.csv (and metrics.csv and config.json when present; a run still
going can be read) or a layers.csv given directly, prints the findings, most severe
first, and writes diagnosis.md with diagnosis.png (the paper's Figure 3 panels with each
finding's steps shaded) beside the telemetry. Exit status: 0 when no finding is high,
1 when one is, 2 when the input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_HIGH = 1
EXIT_UNREADABLE = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help="read a run's per-layer norms: findings, severity and the knob to turn",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run", type=Path, metavar="RUN_DIR", help="a run folder (tvlars train --out) or layers.csv"
    )
    parser.add_argument(
        "--json", action="store_true", help='print {"findings": [...]} as JSON instead of text'
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; write no diagnosis.md or figure"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tvlars.telemetry.diagnosis import (
        DiagnoseInputError,
        diagnose,
        diagnosis_markdown,
        load_run,
        plot_findings,
        summary_text,
    )
    from tvlars.train.run_folder import write_atomically

    try:
        telemetry = load_run(args.run)
    except DiagnoseInputError as error:
        print(f"tvlars diagnose: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    findings = diagnose(telemetry)
    if not args.no_write:
        folder = telemetry.layers_csv.parent
        figure = plot_findings(telemetry, findings, folder / "diagnosis.png")
        text = diagnosis_markdown(findings, telemetry.layers_csv, figure.name)
        write_atomically(folder / "diagnosis.md", text.encode("utf-8"))
    if args.json:
        print(json.dumps({"findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        print(summary_text(findings, telemetry.layers_csv))
        if not args.no_write:
            print(f"wrote {telemetry.layers_csv.parent / 'diagnosis.md'}")
    return EXIT_HIGH if any(f.severity == "high" for f in findings) else 0
