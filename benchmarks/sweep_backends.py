"""The Ray backend's cost against the local backend: per cell, and on a whole sweep.

Default (per cell): in this process, sweeps of N1 and of N2 tiny cells (MNIST-1D CNN, one
epoch on 500 samples) run on the local backend (one cell at a time, one thread) and on a
Ray instance of one CPU started once (one cell at a time, one thread), alternating which
goes first, fresh folders each round, after one untimed sweep on each to warm up. The
extra time of Ray in a round (median over rounds) grows with the cells: its slope between
N1 and N2 is Ray's overhead per cell (scheduling a task, shipping the cell, reading back
its result); what is left at zero cells is its cost per sweep (the shared-folder probe,
registering the task). Starting a local Ray instance and shutting it down, which a sweep
without ``--address`` adds once, is timed separately.

``--grid PRESET``: the whole ``tvlars sweep PRESET`` command, as two processes per round
(fresh folders, no report): ``--jobs 2`` (1 thread per cell on 2 cores) against
``--backend ray --cpus-per-cell 1`` (a Ray instance of this machine's cores, started and
shut down by the sweep). Usage::

    python benchmarks/sweep_backends.py [--cells 2 8] [--rounds 5]
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


def per_cell_overhead(sizes: list[int], rounds: int, scratch: Path) -> None:
    import ray

    from tvlars.experiments.backends.ray_cluster import RayBackend
    from tvlars.experiments.grid import SweepSpec, expand
    from tvlars.experiments.runner import run_sweep

    def grid(cells: int):
        lrs = tuple(round(0.1 * (k + 1), 1) for k in range(cells))
        base = {"num_samples": 500, "model": "mnist1d-cnn", "epochs": 1}
        return expand(
            SweepSpec(name="overhead", methods=("TVLARS",), batches={128: lrs}, base=base)
        )

    def quiet(message: str) -> None:
        pass

    def sweep(cells, backend: str, out: Path) -> float:
        started = time.perf_counter()
        if backend == "local":
            run_sweep(cells, out, jobs=1, threads=1, log=quiet)
        else:
            run_sweep(cells, out, backend=RayBackend(out, cpus=1), log=quiet)
        return time.perf_counter() - started

    started = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    start_seconds = time.perf_counter() - started
    extra: dict[int, float] = {}
    try:
        for backend in ("local", "ray"):
            sweep(grid(max(sizes)), backend, scratch / f"warm-{backend}")
        for size in sizes:
            cells = grid(size)
            times: dict[str, list[float]] = {"local": [], "ray": []}
            for index in range(rounds):
                order = ("local", "ray") if index % 2 == 0 else ("ray", "local")
                for backend in order:
                    out = scratch / f"{size}-{backend}-{index}"
                    times[backend].append(sweep(cells, backend, out))
                print(
                    f"{size} cells, round {index + 1}: local {times['local'][-1]:.2f} s, "
                    f"ray {times['ray'][-1]:.2f} s",
                    flush=True,
                )
            local, on_ray = (statistics.median(times[k]) for k in ("local", "ray"))
            extra[size] = statistics.median(r - h for r, h in zip(times["ray"], times["local"]))
            print(
                f"{size} cells: local {local:.2f} s, ray {on_ray:.2f} s (medians), ray/local "
                f"{on_ray / local:.2f}, ray - local {extra[size]:.2f} s (median of rounds)"
            )
    finally:
        started = time.perf_counter()
        ray.shutdown()
        stop_seconds = time.perf_counter() - started
    n1, n2 = sizes
    per_cell = (extra[n2] - extra[n1]) / (n2 - n1)
    print(f"Ray overhead per cell: {per_cell:.3f} s; per sweep: {extra[n1] - per_cell * n1:.2f} s")
    print(
        f"starting a local Ray instance: {start_seconds:.1f} s; shutting it down: "
        f"{stop_seconds:.1f} s (once per sweep without --address)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", help="time the whole sweep of this preset or TOML grid")
    parser.add_argument("--cells", nargs=2, type=int, default=[2, 8], metavar=("N1", "N2"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; medians over {args.rounds} round(s), alternating order")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if not args.grid:
            per_cell_overhead(args.cells, args.rounds, scratch)
            return
        times = measure(args.grid, args.rounds, scratch, args.grid)
        local, ray = (statistics.median(times[k]) for k in ("local", "ray"))
        print(f"{args.grid}: local {local:.1f} s, ray {ray:.1f} s, ray/local {ray / local:.2f}")


if __name__ == "__main__":
    main()
