"""Host-side cost of one optimizer step on each execution path, without the arithmetic.

Every tensor of a model's parameter list is shrunk to two elements (keeping its number of
dimensions, so the same layers are adapted), so what is timed is what a step costs the
host whatever the tensor sizes: Python, dispatch, compiled-code guards and wrappers,
kernel calls. On a GPU this is what the host spends queuing a step, and where the
arithmetic is short (a ResNet-50 LARS step moves about 0.7 GB: a fraction of a
millisecond on a current GPU) it decides which path is faster. Paths: the multi-tensor
(``foreach=True``), the per-layer compiled (``fused="compile"``: one compiled call per
adapted layer), the single-tensor reference, the native C++ kernels (CPU only) and, for
LARS, the whole-group compiled experiment of ``_group_compiled.py``. Compilation and the
first steps are not timed. Contenders interleave in random order, one thread.

    python benchmarks/path_overhead.py [--models resnet18 resnet50 vit_s16] [--rounds 31]
        [--device cpu] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from _group_compiled import GroupCompiledLARS
from _machine import synchronize
from _shapes import MODELS

from tvlars import LAMB, LARS
from tvlars.optim import _native

PATHS = {
    "foreach": {"foreach": True},
    "compiled per layer": {"fused": "compile"},
    "single": {"foreach": False},
    "native": {"fused": "native"},
}


def tiny_params(shapes, device: torch.device) -> list[torch.Tensor]:
    params = []
    for _, shape in shapes:
        tiny = (2,) + (1,) * (len(shape) - 1) if shape else ()
        param = torch.nn.Parameter(torch.randn(tiny, device=device))
        param.grad = torch.randn_like(param)
        params.append(param)
    return params


def contenders(shapes, device: torch.device) -> dict[str, torch.optim.Optimizer]:
    made = {}
    for name, make in (("LARS", LARS), ("LAMB", LAMB)):
        for path, keywords in PATHS.items():
            if path == "native" and (device.type != "cpu" or _native.kernels() is None):
                continue
            made[f"{name} {path}"] = make(tiny_params(shapes, device), **keywords)
    made["LARS group-compiled"] = GroupCompiledLARS(
        tiny_params(shapes, device), lr=1.0, momentum=0.9, weight_decay=5e-4, eta=1e-3
    )
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50"], choices=sorted(MODELS))
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    for model in args.models:
        shapes = MODELS[model]()
        adapted = sum(1 for _, shape in shapes if len(shape) > 1)
        optimizers = contenders(shapes, device)
        for optimizer in optimizers.values():  # compile, allocate state
            for _ in range(3):
                optimizer.step()
        synchronize(device)
        times = {name: [] for name in optimizers}
        for _ in range(args.rounds):
            for name in rng.sample(list(optimizers), len(optimizers)):
                synchronize(device)
                start = time.perf_counter()
                optimizers[name].step()
                synchronize(device)
                times[name].append(time.perf_counter() - start)
        print(
            f"\n== {model}: {len(shapes)} tensors ({adapted} adapted), two elements each, "
            f"{args.device}; median of {args.rounds} steps =="
        )
        print(f"{'contender':24s} {'ms/step':>8s} {'us/tensor':>10s} {'x foreach':>10s}")
        for name, values in times.items():
            median = 1e3 * statistics.median(values)
            foreach = 1e3 * statistics.median(times[f"{name.split()[0]} foreach"])
            per_tensor = 1e3 * median / len(shapes)
            print(f"{name:24s} {median:8.2f} {per_tensor:10.1f} {median / foreach:10.2f}")


if __name__ == "__main__":
    main()
