"""The native CPU kernels of two revisions side by side: before/after for a kernel change.

Builds ``src/tvlars/optim/_native_kernels.cpp`` as it was at ``--against`` (a git revision
at or after cce673a: from there on the kernels take today's arguments and write one stats
row per adapted layer, which today's code relies on) beside the working tree's build, then
times LARS, TVLARS and LAMB steps on ResNet-shaped parameter lists with each build,
together with torch's SGD loop and the one-pass floor (see ``step_time.py``), round-robin
in a fresh order each round. Everything but the kernel (the Python side of a step) is the
working tree's for both, so the ratio "new / old" is the kernels' doing; ``--against HEAD``
(the same code twice) shows how far that ratio strays from 1 by noise alone.

    python benchmarks/kernel_ab.py --against REV [--models resnet18 resnet50]
        [--dtype float32|bfloat16|float64] [--rounds 31] [--threads N] [--seed 0]
"""

from __future__ import annotations

import argparse
import ctypes
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _shapes import MODELS
from torch import Tensor
from torch.optim import Optimizer

from tvlars import LAMB, LARS, TVLARS
from tvlars.optim import _native

ROOT = Path(__file__).resolve().parents[1]
KERNEL_SOURCE = "src/tvlars/optim/_native_kernels.cpp"
SGD_LOOP, FLOOR = "torch SGD loop", "one fused pass (floor)"
# The first commit whose kernels have today's calling convention: an older build would be
# handed arguments it reads differently, and write past the stats it is given.
SAME_CONVENTION_SINCE = "cce673a"


def build_revision(revision: str, directory: Path) -> _native.NativeKernels:
    """The kernels as they were at ``revision``, built with today's flags."""
    ancestor = subprocess.run(
        ["git", "merge-base", "--is-ancestor", SAME_CONVENTION_SINCE, revision],
        cwd=ROOT,
        capture_output=True,
    )
    if ancestor.returncode != 0:
        raise SystemExit(
            f"{revision} is not at or after {SAME_CONVENTION_SINCE} (or is not a revision "
            "here): its kernels take other arguments than today's code passes"
        )
    try:
        source = subprocess.run(
            ["git", "show", f"{revision}:{KERNEL_SOURCE}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError as error:
        raise SystemExit(
            f"git show {revision}:{KERNEL_SOURCE} failed: {error.stderr.strip()}"
        ) from None
    (directory / "old.cpp").write_text(source)
    compiler = _native._compiler()
    if compiler is None:
        raise SystemExit("no C++ compiler found (set CXX)")
    library = directory / "old.so"
    # The options the working tree's own build takes, so that only the source differs.
    _native._build(compiler, library, source=directory / "old.cpp")
    try:
        return _native.NativeKernels(ctypes.CDLL(str(library)))
    except AttributeError as error:
        raise SystemExit(
            f"{revision}'s kernels lack an entry point today's code calls: {error}"
        ) from None


def contenders(old, new) -> dict[str, tuple[Callable[[list[Tensor]], Optimizer], object]]:
    """name -> (optimizer factory, the kernels its steps use)."""
    sgd = lambda params: torch.optim.SGD(  # noqa: E731
        params, lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=False
    )
    floor = lambda params: LARS([{"params": params, "adapt": False}], lr=1.0, fused="native")  # noqa: E731
    table = {SGD_LOOP: (sgd, new), FLOOR: (floor, new)}
    for name, make in (("LARS", LARS), ("TVLARS", TVLARS), ("LAMB", LAMB)):
        native = lambda params, make=make: make(params, fused="native")  # noqa: E731
        table[f"{name} old"] = (native, old)
        table[f"{name} new"] = (native, new)
    return table


def run_model(model: str, old, new, rounds: int, seed: int, dtype: torch.dtype) -> None:
    shapes = MODELS[model]()
    generator = torch.Generator().manual_seed(seed)
    optimizers = {}
    for name, (make, kernels) in contenders(old, new).items():
        params = [torch.randn(shape, generator=generator).to(dtype) for _, shape in shapes]
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator).to(dtype)
        optimizers[name] = (make(params), kernels)
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    order = random.Random(seed)
    for round_index in range(rounds + 3):  # the first three build state and warm up
        names = list(optimizers)
        order.shuffle(names)
        for name in names:
            optimizer, kernels = optimizers[name]
            _native.kernels = lambda kernels=kernels: kernels  # what this step's calls load
            start = time.perf_counter()
            optimizer.step()
            elapsed = time.perf_counter() - start
            if round_index >= 3:
                times[name].append(elapsed)

    def paired(numerator: str, denominator: str) -> float:
        return statistics.median(n / d for n, d in zip(times[numerator], times[denominator]))

    print(f"\n{model}: {dtype}, {rounds} rounds, {torch.get_num_threads()} threads")
    print(f"  {'contender':24s} {'median ms':>9s} {'x SGD loop':>10s} {'x floor':>8s}")
    for name in optimizers:
        print(
            f"  {name:24s} {statistics.median(times[name]) * 1e3:9.2f} "
            f"{paired(name, SGD_LOOP):10.3f} {paired(name, FLOOR):8.3f}"
        )
    print(
        "  new / old (median of same-round ratios): "
        + ", ".join(f"{n} {paired(f'{n} new', f'{n} old'):.3f}" for n in ("LARS", "TVLARS", "LAMB"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision of the 'old' kernels")
    parser.add_argument(
        "--models", nargs="+", default=["resnet18", "resnet50"], choices=sorted(MODELS)
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float64"])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    new = _native.kernels()
    if new is None:
        raise SystemExit("the native kernels are not available here (no C++ compiler?)")
    with tempfile.TemporaryDirectory() as directory:
        old = build_revision(args.against, Path(directory))
        print(f"old: {KERNEL_SOURCE} at {args.against}; new: the working tree's")
        for model in args.models:
            run_model(model, old, new, args.rounds, args.seed, getattr(torch, args.dtype))


if __name__ == "__main__":
    main()
