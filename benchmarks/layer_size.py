"""What the layer-wise norms cost, by layer size: LARS against a single pass and torch SGD.

A LARS step needs each layer's |w| and |g + wd*w| before it may change any element of the
layer, so it reads w and g twice: once for the norms, once for the update. Counted in
passes over the layer's float32 elements (one pass = reading or writing every element of
one tensor once):

- one fused pass (floor): read w, g, buffer; write w, buffer                    5 passes
- LARS (tvlars native):   read w, g (norms), then the floor                      7 passes
- torch SGD loop:         d = g + wd*w into a new tensor (3, plus 1 to bring the new
                          tensor's lines into cache before writing them), buffer *= mu
                          (2), buffer += d (3), w -= lr*buffer (3)              12 passes

When memory bandwidth bounds all three, LARS takes 7/5 = 1.40x the floor and 7/12 = 0.58x
the SGD loop. A layer small enough for w and g to stay in cache between the two reads
costs less than that; this script measures where that stops on this machine.

For each layer size, every contender gets its own set of float32 layers of that size,
about ``--total-mib`` MiB per tensor in all (so that one step streams more than the
caches hold, as a whole model's step does), with gradients set once. Contenders are timed
round-robin in a fresh order each round; the table gives the median time per element and
the median over rounds of the paired ratios.

    python benchmarks/layer_size.py [--sizes 16384 262144 ...] [--total-mib 64]
        [--rounds 15] [--threads N] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from tvlars import LARS
from tvlars.optim import _native

# ResNet's 3x3 convolutions hold 147,456 (64->64), 589,824 (128->256's 256->256) and
# 2,359,296 (512->512) weights; the others are powers of two around them.
DEFAULT_SIZES = (4_096, 16_384, 147_456, 589_824, 1_048_576, 2_359_296, 4_194_304, 16_777_216)
SGD_HP = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
PASSES = {"one fused pass (floor)": 5, "LARS (native)": 7, "torch SGD loop": 12}
FLOOR, LARS_NAME, SGD_LOOP = PASSES


def contenders() -> dict[str, Callable[[list[Tensor]], Optimizer]]:
    return {
        SGD_LOOP: lambda params: torch.optim.SGD(params, **SGD_HP, foreach=False),
        "torch SGD foreach": lambda params: torch.optim.SGD(params, **SGD_HP, foreach=True),
        # tvlars' native kernel with every layer excluded from adaptation: one pass, no norms.
        FLOOR: lambda params: LARS(
            [{"params": params, "adapt": False}], lr=1.0, momentum=0.9, fused="native"
        ),
        LARS_NAME: lambda params: LARS(params, lr=1.0, fused="native"),
    }


def layers(size: int, total_elements: int, generator: torch.Generator) -> list[Tensor]:
    count = max(1, round(total_elements / size))
    params = []
    for _ in range(count):
        # 2-D so that LARS adapts it (1-D tensors are excluded by default).
        param = torch.randn((size // 64, 64) if size % 64 == 0 else (1, size), generator=generator)
        param.grad = torch.randn(param.shape, generator=generator)
        params.append(param)
    return params


def measure(size: int, total_elements: int, rounds: int, seed: int) -> dict[str, list[float]]:
    """Seconds per element of every contender's step, one entry per round."""
    generator = torch.Generator().manual_seed(seed)
    optimizers = {}
    for name, build in contenders().items():
        params = layers(size, total_elements, generator)
        optimizers[name] = (build(params), sum(p.numel() for p in params))
    for optimizer, _ in optimizers.values():  # state, kernel build, allocator warm-up
        for _ in range(2):
            optimizer.step()
    order = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(rounds):
        names = list(optimizers)
        order.shuffle(names)
        for name in names:
            optimizer, elements = optimizers[name]
            start = time.perf_counter()
            optimizer.step()
            times[name].append((time.perf_counter() - start) / elements)
    return times


def paired(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    return statistics.median(n / d for n, d in zip(times[numerator], times[denominator]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--total-mib", type=float, default=64.0)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if _native.kernels() is None:
        raise SystemExit("the native kernels are not available here (no C++ compiler?)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    total_elements = int(args.total_mib * 2**20 / 4)
    print(
        f"float32 layers, about {args.total_mib:g} MiB per tensor per contender, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds; "
        "ns per element are medians, ratios are medians of same-round ratios"
    )
    print(
        f"model (all bandwidth-bound): LARS/floor {PASSES[LARS_NAME] / PASSES[FLOOR]:.2f}, "
        f"LARS/SGD loop {PASSES[LARS_NAME] / PASSES[SGD_LOOP]:.2f}, "
        f"floor/SGD loop {PASSES[FLOOR] / PASSES[SGD_LOOP]:.2f}"
    )
    header = (
        f"{'layer size':>10} {'w+g MiB':>8} {'layers':>6} | {'SGD loop':>8} {'SGD fe':>7} "
        f"{'floor':>6} {'LARS':>6} ns/elem | {'LARS/floor':>10} {'LARS/SGD':>8} "
        f"{'floor/SGD':>9} | {'floor GB/s':>10} {'LARS GB/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        times = measure(size, total_elements, args.rounds, args.seed)
        ns = {name: statistics.median(values) * 1e9 for name, values in times.items()}
        # Bytes the model says each step must move, over the time it took.
        floor_bandwidth = PASSES[FLOOR] * 4 / ns[FLOOR]
        lars_bandwidth = PASSES[LARS_NAME] * 4 / ns[LARS_NAME]
        print(
            f"{size:>10,} {size * 8 / 2**20:>8.2f} {max(1, round(total_elements / size)):>6} | "
            f"{ns[SGD_LOOP]:>8.2f} {ns['torch SGD foreach']:>7.2f} {ns[FLOOR]:>6.2f} "
            f"{ns[LARS_NAME]:>6.2f}         | {paired(times, LARS_NAME, FLOOR):>10.2f} "
            f"{paired(times, LARS_NAME, SGD_LOOP):>8.2f} {paired(times, FLOOR, SGD_LOOP):>9.2f} | "
            f"{floor_bandwidth:>10.1f} {lars_bandwidth:>9.1f}"
        )
    print(
        "GB/s: the bytes the pass counts above say a step must move, over its time "
        "(above the machine's bandwidth where the cache served part of them)"
    )


if __name__ == "__main__":
    main()
