"""Wall time of one sweep on the local backend and on a local Ray instance, side by side.

Each round runs the same grid as two whole ``tvlars sweep`` processes (fresh folders, no
report), local first in odd rounds and Ray first in even ones: the local backend with
``--jobs 2`` (1 thread per cell on 2 cores) and ``--backend ray --cpus-per-cell 1`` (a
Ray instance of this machine's cores, started and shut down by the sweep). Prints each
round, the medians and the Ray/local ratio. With ``--sizes N1 N2`` (the default) the grid
is N tiny cells (MNIST-1D CNN, one epoch on 500 samples: nearly all of their time is the
engine's), and the slope of the extra time between the two sizes is Ray's overhead per
cell; the intercept is Ray's fixed cost (start, the shared-folder probe, shut down).
``--grid quick`` times a preset instead. Usage::

    python benchmarks/sweep_backends.py [--sizes 2 8] [--rounds 3]
    python benchmarks/sweep_backends.py --grid quick --rounds 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import busy_cpu_seconds  # noqa: E402


def tiny_grid(folder: Path, cells: int) -> Path:
    """A TOML grid of ``cells`` one-epoch cells (distinct learning rates)."""
    lrs = ", ".join(f"{0.1 * (k + 1):.1f}" for k in range(cells))
    path = folder / f"tiny-{cells}.toml"
    path.write_text(
        f'methods = ["TVLARS"]\n[batches]\n128 = [{lrs}]\n'
        '[base]\nnum_samples = 500\nmodel = "mnist1d-cnn"\nepochs = 1\n'
    )
    return path


def timed_sweep(grid: str, out: Path, backend: str) -> float:
    command = [sys.executable, "-m", "tvlars", "sweep", grid, "--out", str(out), "--no-report"]
    if backend == "ray":
        command += ["--backend", "ray", "--cpus-per-cell", "1"]
    else:
        command += ["--jobs", "2"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds


def measure(grid: str, rounds: int, scratch: Path, label: str) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for index in range(rounds):
        order = ("local", "ray") if index % 2 == 0 else ("ray", "local")
        busy_before, wall_before = busy_cpu_seconds(), time.perf_counter()
        for backend in order:
            times[backend].append(
                timed_sweep(grid, scratch / f"{label}-{backend}-{index}", backend)
            )
        busy_after, wall = busy_cpu_seconds(), time.perf_counter() - wall_before
        load = ""
        if busy_before is not None and busy_after is not None:
            load = f"; machine busy {(busy_after - busy_before) / wall:.1f} cores on average"
        print(
            f"{label} round {index + 1}: local {times['local'][-1]:.1f} s, "
            f"ray {times['ray'][-1]:.1f} s{load}",
            flush=True,
        )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", help="a preset or TOML grid instead of the tiny ones")
    parser.add_argument("--sizes", nargs=2, type=int, default=[2, 8], metavar=("N1", "N2"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; medians over {args.rounds} round(s), local and Ray alternating")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if args.grid:
            times = measure(args.grid, args.rounds, scratch, args.grid)
            local, ray = (statistics.median(times[k]) for k in ("local", "ray"))
            print(f"{args.grid}: local {local:.1f} s, ray {ray:.1f} s, ray/local {ray / local:.2f}")
            return
        extra = {}
        for cells in args.sizes:
            times = measure(str(tiny_grid(scratch, cells)), args.rounds, scratch, f"{cells} cells")
            local, ray = (statistics.median(times[k]) for k in ("local", "ray"))
            extra[cells] = statistics.median(
                on_ray - here for on_ray, here in zip(times["ray"], times["local"])
            )
            print(
                f"{cells} cells: local {local:.1f} s, ray {ray:.1f} s, ray/local "
                f"{ray / local:.2f}, ray - local {extra[cells]:.1f} s (median of rounds)"
            )
        n1, n2 = args.sizes
        per_cell = (extra[n2] - extra[n1]) / (n2 - n1)
        print(
            f"Ray overhead per cell: {per_cell:.2f} s; fixed: {extra[n1] - per_cell * n1:.1f} s "
            f"(start, probe, shut down)"
        )


if __name__ == "__main__":
    main()
