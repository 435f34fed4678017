"""The ``tvlars sweep`` options that choose where cells run: ``--backend`` and its flags.

- ``local`` (default): this machine (``--jobs`` cells at once).
- ``ray``: one Ray task per cell on a Ray cluster (``--address``; none starts a local
  instance), each of ``--cpus-per-cell`` CPUs and ``--gpus-per-cell`` GPUs.
- ``slurm``: one SLURM job array through submitit (``--slurm-*``); returns after
  submitting, and ``--wait`` (or the same command later) reports.

``--out`` must be on storage every node sees for ``ray`` and ``slurm``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

BACKENDS = ("local", "ray", "slurm")


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where cells run (--out on shared storage for ray, slurm)")
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local: this machine; ray: a Ray cluster; slurm: a SLURM job array",
    )
    group.add_argument(
        "--address",
        help="ray: the cluster to join (auto, HOST:PORT or ray://HOST:10001); "
        "default: start a Ray instance on this machine for the sweep",
    )
    group.add_argument(
        "--cpus-per-cell", type=int, default=1, help="ray, slurm: CPUs (threads) per cell"
    )
    group.add_argument(
        "--gpus-per-cell",
        type=int,
        default=0,
        help="ray: GPUs per cell (several: torchrun over them, data-parallel)",
    )
    group.add_argument("--slurm-partition", help="slurm: the partition (sbatch --partition)")
    group.add_argument("--slurm-account", help="slurm: the account (sbatch --account)")
    group.add_argument(
        "--slurm-gpus-per-node",
        type=int,
        help="slurm: GPUs per array task, i.e. per cell (default: --gpus-per-cell); "
        "several: torchrun over them",
    )
    group.add_argument(
        "--slurm-time",
        default="24:00:00",
        help="slurm: time limit per task (MINUTES, HH:MM:SS or DAYS-HH:MM:SS); a cell that "
        "needs longer is requeued and resumes",
    )
    group.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="slurm: any other sbatch option, e.g. qos=high, constraint=a100, mem=64G",
    )
    group.add_argument(
        "--slurm-cluster",
        choices=("slurm", "local"),
        default="slurm",
        help="slurm: 'local' runs the array with submitit's local executor (for testing)",
    )
    group.add_argument("--wait", action="store_true", help="slurm: wait for the jobs, then report")


def check_backend_installed(args: argparse.Namespace) -> None:
    """Fail at once, with the ``pip install`` line, when the backend's extra is missing."""
    if args.backend == "local":
        return
    from tvlars.experiments.backends import MissingExtra, require_engine

    try:
        require_engine(args.backend)
    except MissingExtra as error:
        raise SystemExit(f"tvlars sweep: {error}") from None


def make_backend(args: argparse.Namespace, out: Path, name: str):
    """The backend ``args`` ask for, or None for the local one (the caller builds it)."""
    if args.backend != "local" and args.jobs is not None:
        raise ValueError(
            f"--jobs is for the local backend; --backend {args.backend} runs as many cells "
            "at once as the cluster holds, each of --cpus-per-cell CPUs and its GPUs"
        )
    if args.backend == "ray":
        from tvlars.experiments.backends.ray_cluster import RayBackend

        return RayBackend(
            out, address=args.address, cpus=args.cpus_per_cell, gpus=args.gpus_per_cell
        )
    if args.backend == "slurm":
        from tvlars.experiments.backends.slurm import SlurmBackend

        options = {}
        for item in args.slurm_option:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--slurm-option {item!r}: expected KEY=VALUE (e.g. qos=high)")
            options[key.strip().lstrip("-").replace("-", "_")] = value.strip()
        gpus = args.slurm_gpus_per_node
        return SlurmBackend(
            out,
            cluster=args.slurm_cluster,
            cpus=args.cpus_per_cell,
            gpus=args.gpus_per_cell if gpus is None else gpus,
            partition=args.slurm_partition,
            account=args.slurm_account,
            time_limit=args.slurm_time,
            options=options,
            name=f"tvlars-{name}",
            wait=args.wait,
            poll_seconds=30.0 if args.slurm_cluster == "slurm" else 1.0,
        )
    return None
