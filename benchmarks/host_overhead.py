"""Host-side time of a native-path optimizer step: everything but the C++ kernel.

Replaces the native library's entry points with no-ops, so a step costs only its Python
and ctypes work (gathering parameters, checks, pointer arrays, telemetry hand-over), then
times LARS, TVLARS and LAMB steps on ResNet-shaped parameter lists, interleaved, with and
without a LayerRecorder. The real kernels run first (warm-up) so that every buffer exists.

These figures are for a warm cache; in training the kernel has just streamed the weights
through the cache and the same work takes about twice as long (see docs/benchmarks.md).

    python benchmarks/host_overhead.py [--models resnet18 resnet50 vit_s16] [--steps 1000]
        [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _shapes import MODELS

from tvlars import LAMB, LARS, TVLARS
from tvlars.optim import _native
from tvlars.telemetry import LayerRecorder


class _NoKernels:
    """Stands in for the loaded library: every entry point returns at once."""

    def __getattr__(self, name: str):
        return lambda *args: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18"], choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kernels = _native.kernels()
    if kernels is None:
        raise SystemExit("the native kernels are not available here (no C++ compiler?)")
    rng = random.Random(args.seed)
    print(f"{'model':10s} {'contender':28s} {'median us':>10s} {'p10 us':>8s}")
    for model in args.models:
        shapes = MODELS[model]()
        optimizers = {}
        with tempfile.TemporaryDirectory() as directory:
            recorders = []
            for name, make in (("LARS", LARS), ("TVLARS", TVLARS), ("LAMB", LAMB)):
                for recorded in (False, True):
                    params = [torch.randn(shape) for _, shape in shapes]
                    for param in params:
                        param.grad = torch.randn_like(param)
                    optimizer = make(params)
                    if recorded:
                        named = zip([n for n, _ in shapes], params, strict=True)
                        path = Path(directory) / f"{name}.csv"
                        recorders.append(LayerRecorder(optimizer, named, path, every=1))
                    optimizer.step()  # real kernels: state allocated, library loaded
                    label = name + (" + LayerRecorder" if recorded else "")
                    optimizers[label] = optimizer
            library, kernels._library = kernels._library, _NoKernels()
            try:
                times = {label: [] for label in optimizers}
                for _ in range(args.steps):
                    for label in rng.sample(list(optimizers), len(optimizers)):
                        start = time.perf_counter()
                        optimizers[label].step()
                        times[label].append(time.perf_counter() - start)
            finally:
                kernels._library = library
            for recorder in recorders:
                recorder.close()
        for label, values in times.items():
            values.sort()
            median = 1e6 * statistics.median(values)
            p10 = 1e6 * values[len(values) // 10]
            print(f"{model:10s} {label:28s} {median:10.0f} {p10:8.0f}")


if __name__ == "__main__":
    main()
