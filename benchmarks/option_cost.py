"""What the clipping options cost a step: LARC's ``trust_clip`` (LARS, TVLARS) and LAMB's
``max_grad_norm``, each against the same optimizer without it.

The parameters are those of ResNet-50 and ViT-S/16 (``_shapes.py``), float32, with random
gradients; no model runs. Every round times ``--steps`` steps of each variant in turn
(interleaved, so that load from other processes falls on all of them alike) and the
report gives, per variant, the median step time and the median over rounds of its ratio
to the optimizer without the option in the same round.

Two rows measure the floor under ``max_grad_norm``: LAMB's step followed by one bare read
of every gradient (a ``sum`` of each, the least a pass can do; and ``torch._foreach_norm``,
the reduction ``G`` is taken with). ``G`` must be known before the moments, so no
implementation can avoid one such read: the option is at its floor when its ratio matches
these.

    python benchmarks/option_cost.py                       # default path (native on CPU)
    python benchmarks/option_cost.py --path foreach --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _shapes import resnet50_shapes, vit_s16_shapes

from tvlars import LAMB, LARS, TVLARS

MODELS = {"resnet50": resnet50_shapes, "vit_s16": vit_s16_shapes}
PATHS = {"default": {}, "foreach": {"foreach": True}, "single": {"foreach": False}}


class StepThenRead:
    """A LAMB step followed by one read of every gradient: what ``max_grad_norm`` cannot
    avoid (``G`` needs the gradients before the moments may use them)."""

    def __init__(self, params, read: Callable, **kw) -> None:
        self.optimizer = LAMB(params, lr=1e-3, **kw)
        self.grads = [param.grad for param in params]
        self.read = read

    @property
    def last_step_paths(self):
        return self.optimizer.last_step_paths

    def step(self) -> None:
        self.optimizer.step()
        self.read(self.grads)


def read_by_sum(grads) -> None:
    for grad in grads:
        grad.sum()


def read_by_foreach_norm(grads) -> None:
    torch._foreach_norm(grads, 2)


def variants(grad_norm: float) -> dict[str, tuple[str, Callable]]:
    """name -> (the name of its baseline, a constructor taking params and path keywords).
    ``grad_norm``: the gradients' global norm, so that one LAMB variant clips and one not."""
    return {
        "LARS": ("LARS", lambda p, **kw: LARS(p, lr=1.0, **kw)),
        "LARS trust_clip": ("LARS", lambda p, **kw: LARS(p, lr=1.0, trust_clip=True, **kw)),
        "TVLARS": ("TVLARS", lambda p, **kw: TVLARS(p, lr=1.0, **kw)),
        "TVLARS trust_clip": (
            "TVLARS",
            lambda p, **kw: TVLARS(p, lr=1.0, trust_clip=True, **kw),
        ),
        "LAMB": ("LAMB", lambda p, **kw: LAMB(p, lr=1e-3, **kw)),
        "LAMB max_grad_norm (clipping)": (
            "LAMB",
            lambda p, **kw: LAMB(p, lr=1e-3, max_grad_norm=grad_norm / 2, **kw),
        ),
        "LAMB max_grad_norm (not clipping)": (
            "LAMB",
            lambda p, **kw: LAMB(p, lr=1e-3, max_grad_norm=grad_norm * 2, **kw),
        ),
        "floor: LAMB + a sum of each grad": (
            "LAMB",
            lambda p, **kw: StepThenRead(p, read_by_sum, **kw),
        ),
        "floor: LAMB + _foreach_norm of grads": (
            "LAMB",
            lambda p, **kw: StepThenRead(p, read_by_foreach_norm, **kw),
        ),
    }


def measure(model: str, path: str, rounds: int, steps: int) -> None:
    generator = torch.Generator().manual_seed(0)
    params = []
    for _, shape in MODELS[model]():
        param = torch.nn.Parameter(torch.randn(shape, generator=generator) * 0.05)
        param.grad = torch.randn(shape, generator=generator) * 1e-3
        params.append(param)
    grad_norm = torch.cat([p.grad.reshape(-1) for p in params]).norm().item()
    chosen = variants(grad_norm)
    optimizers = {name: make(params, **PATHS[path]) for name, (_, make) in chosen.items()}
    for optimizer in optimizers.values():  # state, kernel build, first-touch of memory
        optimizer.step()
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(rounds):
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            for _ in range(steps):
                optimizer.step()
            times[name].append((time.perf_counter() - start) / steps)
    taken = {name: optimizer.last_step_paths[0] for name, optimizer in optimizers.items()}
    print(f"\n{model}, path {path} (taken: {sorted(set(taken.values()))}), {rounds} rounds")
    print(f"{'variant':38s} {'median step':>12s} {'vs baseline':>12s}")
    for name, (baseline, _) in chosen.items():
        ratios = [a / b for a, b in zip(times[name], times[baseline], strict=True)]
        print(
            f"{name:38s} {statistics.median(times[name]) * 1e3:9.1f} ms "
            f"{statistics.median(ratios):11.3f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--path", choices=sorted(PATHS), default="default")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant and round")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for model in args.models:
        measure(model, args.path, args.rounds, args.steps)


if __name__ == "__main__":
    main()
