"""``tvlars sweep PRESET_OR_TOML [--out DIR]``: run a grid of training runs, then report.

Each cell is a run folder ``DIR/runs/<run id>``; DIR defaults to ``sweeps/<preset name>``.
Running the same sweep again skips finished cells, resumes interrupted ones and, with
``--retry-failed``, retries failed ones. A failing or diverging cell is recorded and the
sweep goes on. ``--jobs N`` runs N cells at once (CPU threads split between them; on
several GPUs, one cell per GPU). Only one sweep at a time may use DIR. At the end,
``tvlars report DIR`` runs and the table and the verdict on each of the paper's claims
are printed.

``--backend ray`` runs each cell as a task on a Ray cluster, ``--backend slurm`` submits a
SLURM job array (see the options below; --out must then be on storage every node sees).

Under torchrun every cell runs data-parallel on all the processes, one cell after another:
``torchrun --nproc_per_node=8 -m tvlars sweep paper-cifar10 --data-dir ~/data``. Without
it, a machine with several GPUs runs one cell per GPU.

Presets: quick (12 cells: batch 16384, WA-LARS, both LAMBs and TVLARS, three paired
seeds), cpu (129 cells: the whole study on MNIST-1D, classification and Barlow Twins),
ablation-lambda, ablation-lr, ablation-init (CPU scale), paper-cifar10,
paper-tinyimagenet, paper-ablation-lambda, paper-ablation-lr, paper-ablation-init (the
paper's scale: GPUs and --data-dir). --dry-run lists the cells.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tvlars.commands.sweep_backends import (
    add_backend_arguments,
    check_backend_installed,
    make_backend,
)
from tvlars.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a grid of training runs (a preset or a TOML file), resumably, then report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("grid", metavar="PRESET_OR_TOML", help="a preset name or a TOML file")
    parser.add_argument(
        "--out", type=Path, help="the sweep's folder (default: sweeps/<preset name>)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="cells at once (default: 2 on CPU presets, the GPU count on several GPUs, else 1)",
    )
    parser.add_argument("--seeds", type=int, help="run seeds 0..K-1 in every grid")
    parser.add_argument(
        "--retry-failed", action="store_true", help="rerun cells that failed before"
    )
    parser.add_argument("--data-dir", help="dataset folder (the paper's presets need it)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a RunConfig key in every cell (e.g. micro_batch=512, device=cuda)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the cells and stop")
    parser.add_argument("--no-report", action="store_true", help="skip the report at the end")
    add_backend_arguments(parser)
    parser.set_defaults(func=run)


def _parse_value(text: str):
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string


def load_preset(grid: str):
    from tvlars.experiments.custom import load_toml
    from tvlars.experiments.presets import PRESETS, get_preset

    if grid in PRESETS:
        return get_preset(grid)
    if Path(grid).suffix == ".toml" or Path(grid).exists():
        return load_toml(grid)
    raise ValueError(f"{grid!r} is neither a preset ({', '.join(PRESETS)}) nor a TOML file")


def check_overrides(name: str, overrides: dict) -> None:
    """Refuse ``--set`` of a key the grid sets in every cell (it would be overridden back,
    leaving the sweep unchanged) and values of the wrong type, naming the key."""
    from tvlars.experiments.grid import GRID_KEYS
    from tvlars.train.config import RunConfig

    owned = [key for key in overrides if key in GRID_KEYS]
    if owned:
        raise ValueError(
            f"--set {', '.join(owned)}: the grid of {name} sets "
            f"{'this key' if len(owned) == 1 else 'these keys'} in every cell, so --set "
            f"cannot change {'it' if len(owned) == 1 else 'them'}; "
            + ("use --seeds for the seeds, or " if "seed" in owned else "")
            + "write a sweep TOML file with the axes you want (see tvlars sweep --help)"
        )
    RunConfig.from_dict(overrides, "--set")


def build_cells(preset, seeds: int | None, overrides: dict):
    from tvlars.experiments.grid import expand_all

    specs = list(preset.specs)
    if seeds is not None:
        specs = [spec.with_seeds(seeds) for spec in specs]
    if overrides:
        specs = [spec.with_base(overrides) for spec in specs]
    return expand_all(specs)


def _default_jobs(preset_name: str) -> tuple[int, list[int] | None]:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1:
        return gpus, list(range(gpus))
    from tvlars.experiments.presets import CPU_JOBS

    return (1 if preset_name.startswith("paper") else CPU_JOBS), None


def run(args: argparse.Namespace) -> int:
    from tvlars.experiments.backends import BackendError
    from tvlars.experiments.runner import SUBMITTED, run_sweep

    check_backend_installed(args)
    try:
        preset = load_preset(args.grid)
        overrides = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set {item!r}: expected KEY=VALUE")
            overrides[key.strip().replace("-", "_")] = _parse_value(value.strip())
        if args.data_dir:
            overrides["data_dir"] = args.data_dir
        if args.seeds is not None and args.seeds < 1:
            raise ValueError("--seeds must be >= 1")
        check_overrides(preset.name, overrides)
        cells = build_cells(preset, args.seeds, overrides)
    except ValueError as error:
        raise UserError(str(error)) from None

    if args.dry_run:
        for cell in cells:
            d = cell.describe()
            # The grid's column LR, and what the optimizer gets where that differs (WA-LAMB·η).
            lr = f"{d['lr']:g}"
            if d["optimizer_lr"] != d["lr"]:
                lr += f" (optimizer {d['optimizer_lr']:g})"
            print(
                f"{cell.run_id()}  {d['task']:<14} {d['dataset']:<12} {d['method']:<10} "
                f"B={d['batch_size']:<6} lr={lr:<5} seed={d['seed']} init={d['init']} "
                f"lambda={d['lmbda']:g} tv_decay={d['tv_decay']} excl={d['excluded_lr_scale']:g}"
            )
        print(f"{len(cells)} cells in preset {preset.name}")
        return 0

    out = args.out if args.out is not None else Path("sweeps") / preset.name
    from tvlars.experiments.cell_run import RUNS_DIR
    from tvlars.folder_lock import make_folder

    make_folder(out, "--out")
    make_folder(out / RUNS_DIR, "--out")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if args.backend != "local":
            raise UserError(
                f"--backend {args.backend} does not run under torchrun; run torchrun with the "
                "local backend, or drop torchrun and let the backend start the cells"
            )
        return _run_under_torchrun(args, preset, cells, out, overrides.get("device", "auto"))
    try:
        backend = make_backend(args, out, preset.name)
    except (ValueError, BackendError) as error:
        raise UserError(str(error)) from None
    jobs, devices = _default_jobs(preset.name)
    if args.jobs is not None:
        if args.jobs < 1:
            raise UserError("--jobs must be >= 1")
        jobs = args.jobs
    try:
        outcome = run_sweep(
            cells,
            out,
            jobs=jobs,
            retry_failed=args.retry_failed,
            devices=devices,
            name=preset.name,
            description=preset.description,
            sweep_info={"mirrors_paper": preset.mirrors_paper},
            backend=backend,
        )
    except BackendError as error:
        raise UserError(str(error)) from None
    except KeyboardInterrupt:
        print("\ntvlars sweep: interrupted; run the same command again to resume")
        return 130
    if outcome.counts().get(SUBMITTED):
        return 0  # the jobs report when they are done: the same command again, or --wait
    return _report(args, out, outcome)


def _run_under_torchrun(args, preset, cells, out: Path, device: str) -> int:
    """Started by torchrun: every cell runs on all processes together (see
    :func:`~tvlars.experiments.runner.run_sweep_together`)."""
    from tvlars.experiments.runner import run_sweep_together
    from tvlars.train import distributed

    if args.jobs not in (None, 1):
        raise UserError(
            "under torchrun every cell uses all processes; drop --jobs "
            "(or run without torchrun for one cell per GPU)"
        )
    processes = distributed.start(device)
    try:
        outcome = run_sweep_together(
            cells,
            out,
            processes,
            retry_failed=args.retry_failed,
            name=preset.name,
            description=preset.description,
            sweep_info={"mirrors_paper": preset.mirrors_paper},
            log=print if processes.is_main else (lambda message: None),
        )
    finally:
        distributed.stop(processes)
    return _report(args, out, outcome) if processes.is_main else 0


def _report(args, out: Path, outcome) -> int:
    if not args.no_report:
        from tvlars.experiments.report import write_report

        print(write_report(out).console_summary())
    return 1 if outcome.counts().get("failed") else 0
