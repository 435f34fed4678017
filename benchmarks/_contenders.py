"""The optimizers the step-time scripts race, each on its own copy of the same tensors:
torch's SGD (the baseline), the memory-traffic floor, tvlars on each path, and the peer
LARS/LAMB implementations that import here; and the interleaved timing of their steps."""

from __future__ import annotations

import gc
import importlib.metadata
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from _machine import synchronize
from _shapes import NamedShapes, parameter_count
from _timing import OtherLoad, Summary
from torch import Tensor
from torch.optim import Optimizer

from tvlars import LAMB, LARS, TVLARS

# Hyperparameters shared by every contender of a family, so that all do the same work.
LARS_HP = dict(lr=1.0, momentum=0.9, weight_decay=5e-4, trust=1e-3)

LAMB_HP = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)

SGD_HP = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)

BASELINE = "torch SGD loop"

FLOOR = "one fused pass (floor)"


@dataclass
class Contender:
    """One optimizer configuration to time.

    ``family`` is the algorithm ("SGD", "LARS", "LAMB"; TVLARS belongs to the LARS family,
    whose peers it is compared with).
    """

    name: str
    family: str
    origin: str
    build: Callable[[list[Tensor]], Optimizer]
    path: str | None = None  # tvlars' requested path: a key of TVLARS_PATHS, None for default


def torch_contenders() -> list[Contender]:
    def sgd(foreach: bool) -> Callable[[list[Tensor]], Optimizer]:
        return lambda params: torch.optim.SGD(params, **SGD_HP, foreach=foreach)

    return [
        Contender(BASELINE, "SGD", "torch", sgd(False)),
        Contender("torch SGD foreach", "SGD", "torch", sgd(True)),
    ]


def floor_contenders(device: torch.device) -> list[Contender]:
    """The memory-traffic floor of a momentum step, where tvlars' native kernels run.

    Any LARS or SGD step with momentum must read w, g and the momentum buffer and write w
    and the buffer. This contender does exactly that and nothing more: one pass per layer,
    no norms (tvlars' native kernel with every layer excluded from adaptation, so d = g).
    A LARS step cannot be faster than this on the same machine; its time over this is what
    the norms cost."""
    from tvlars.optim import _native

    if device.type != "cpu" or _native.kernels() is None:
        return []

    def build(params: list[Tensor]) -> Optimizer:
        return LARS(
            [{"params": params, "adapt": False}],
            lr=LARS_HP["lr"],
            momentum=LARS_HP["momentum"],
            fused="native",
        )

    return [Contender(FLOOR, "SGD", "tvlars", build)]


TVLARS_PATHS = {  # contender suffix -> constructor keywords
    "single": dict(foreach=False),
    "foreach": dict(foreach=True),
    "compiled": dict(fused="compile"),  # torch.compile of the per-tensor update
    "fused": dict(fused=True),  # on CPU the native C++ kernels; on GPUs torch.compile
    "default": dict(),
}

BUILT_PATHS = ("compiled", "fused")  # paths that compile something on their first step


def tvlars_contenders(nesterov: bool = False) -> list[Contender]:
    """tvlars' optimizers on each path; with ``nesterov``, also TVLARS in Algorithm 1's
    Nesterov form."""
    lars_hp = dict(
        lr=LARS_HP["lr"],
        momentum=LARS_HP["momentum"],
        weight_decay=LARS_HP["weight_decay"],
        eta=LARS_HP["trust"],
    )
    makers = {
        "LARS": ("LARS", lambda params, **path: LARS(params, **lars_hp, **path)),
        "TVLARS": ("LARS", lambda params, **path: TVLARS(params, **lars_hp, lmbda=1e-4, **path)),
        "LAMB": ("LAMB", lambda params, **path: LAMB(params, **LAMB_HP, **path)),
    }
    if nesterov:
        makers["TVLARS nesterov"] = (
            "LARS",
            lambda params, **path: TVLARS(params, **lars_hp, lmbda=1e-4, nesterov=True, **path),
        )
    contenders = []
    for optimizer_name, (family, make) in makers.items():
        for suffix, path_keywords in TVLARS_PATHS.items():
            contenders.append(
                Contender(
                    f"{optimizer_name} {suffix}",
                    family,
                    "tvlars",
                    lambda params, make=make, kw=path_keywords: make(params, **kw),
                    path=None if suffix == "default" else suffix,
                )
            )
    return contenders


def group_compiled_contenders() -> list[Contender]:
    """The whole-group compiled LARS experiment (``_group_compiled.py``)."""
    from _group_compiled import GroupCompiledLARS

    def build(params: list[Tensor]) -> Optimizer:
        return GroupCompiledLARS(
            params,
            lr=LARS_HP["lr"],
            momentum=LARS_HP["momentum"],
            weight_decay=LARS_HP["weight_decay"],
            eta=LARS_HP["trust"],
        )

    # path "compiled": its compilation is timed beside tvlars' compiled paths.
    return [Contender("LARS group-compiled", "LARS", "experiment", build, path="compiled")]


def package_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def peer_contenders() -> tuple[list[Contender], list[str], list[str]]:
    """Peers that import here, the names of those found, and notes on their arithmetic."""
    contenders: list[Contender] = []
    found: list[str] = []
    notes: list[str] = []

    try:
        import pytorch_optimizer
    except ImportError:
        pass
    else:
        found.append(f"pytorch_optimizer {package_version('pytorch_optimizer')}")
        for label, foreach in (("loop", False), ("foreach", True)):
            contenders.append(
                Contender(
                    f"pytorch_optimizer LARS {label}",
                    "LARS",
                    "pytorch_optimizer",
                    lambda params, foreach=foreach: pytorch_optimizer.LARS(
                        params,
                        lr=LARS_HP["lr"],
                        momentum=LARS_HP["momentum"],
                        weight_decay=LARS_HP["weight_decay"],
                        trust_coefficient=LARS_HP["trust"],
                        foreach=foreach,
                    ),
                )
            )
        for label, foreach in (("loop", False), ("foreach", True)):
            contenders.append(
                Contender(
                    f"pytorch_optimizer Lamb {label}",
                    "LAMB",
                    "pytorch_optimizer",
                    lambda params, foreach=foreach: pytorch_optimizer.Lamb(
                        params, **LAMB_HP, weight_decouple=False, foreach=foreach
                    ),
                )
            )
        notes += [
            "pytorch_optimizer LARS divides by |g| + wd*|w| (tvlars: |g + wd*w|, one more "
            "norm) and builds its update in p.grad.",
            "pytorch_optimizer Lamb (weight_decouple=False, as tvlars: wd*w inside the "
            "direction) has no bias correction, adapts 1-D tensors too and clamps |w| at 10.",
        ]

    try:
        import torch_optimizer
    except ImportError:
        pass
    else:
        found.append(f"torch_optimizer {package_version('torch_optimizer')}")
        contenders.append(
            Contender(
                "torch_optimizer Lamb",
                "LAMB",
                "torch_optimizer",
                lambda params: torch_optimizer.Lamb(params, **LAMB_HP),
            )
        )
        notes.append(
            "torch_optimizer Lamb: no bias correction, |w| clamped at 10, every tensor adapted."
        )

    try:
        from timm.optim import Lamb as TimmLamb
        from timm.optim import Lars as TimmLars
    except ImportError:
        pass
    else:
        found.append(f"timm {package_version('timm')}")
        contenders.append(
            Contender(
                "timm Lars",
                "LARS",
                "timm",
                lambda params: TimmLars(
                    params,
                    lr=LARS_HP["lr"],
                    momentum=LARS_HP["momentum"],
                    weight_decay=LARS_HP["weight_decay"],
                    trust_coeff=LARS_HP["trust"],
                ),
            )
        )
        contenders.append(
            Contender(
                "timm Lamb",
                "LAMB",
                "timm",
                lambda params: TimmLamb(params, **LAMB_HP, max_grad_norm=None),
            )
        )
        notes.append(
            "timm Lars/Lamb adapt every tensor when weight_decay != 0 (1-D "
            "included); timm Lamb runs without global gradient clipping here."
        )
    return contenders, found, notes


def reference_tensors(
    shapes: NamedShapes, device: torch.device, seed: int
) -> tuple[list[Tensor], list[Tensor]]:
    """Parameters as a fresh network has them (He-normal weights, BN scales near 1, small
    shifts and biases), and random gradients."""
    generator = torch.Generator().manual_seed(seed)
    params, grads = [], []
    for name, shape in shapes:
        if len(shape) > 1:
            fan_in = parameter_count([(name, shape)]) // shape[0]
            param = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif name.endswith(".weight"):
            param = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            param = 0.1 * torch.randn(shape, generator=generator)
        params.append(param.to(device))
        grads.append((1e-3 * torch.randn(shape, generator=generator)).to(device))
    return params, grads


@dataclass
class Entrant:
    """A contender with its own parameters, gradients and optimizer state.

    An implementation that writes into ``p.grad`` (found out on its first step) gets its
    gradients restored, untimed, before each step, so every step sees the same gradients.
    """

    contender: Contender
    params: list[Tensor]
    optimizer: Optimizer
    pristine_grads: list[Tensor]
    times: list[float] = field(default_factory=list)
    restores_grads: bool = False

    def grads_changed(self) -> bool:
        return any(
            not torch.equal(p.grad, g)
            for p, g in zip(self.params, self.pristine_grads, strict=True)
        )

    def restore_grads(self) -> None:
        torch._foreach_copy_([p.grad for p in self.params], self.pristine_grads)


def enter(
    contender: Contender, reference_params: list[Tensor], reference_grads: list[Tensor]
) -> Entrant:
    params = [torch.nn.Parameter(p.clone()) for p in reference_params]
    for param, grad in zip(params, reference_grads, strict=True):
        param.grad = grad.clone()
    return Entrant(contender, params, contender.build(params), reference_grads)


def timed_step(entrant: Entrant, device: torch.device) -> float:
    if entrant.restores_grads:
        entrant.restore_grads()
    synchronize(device)
    start = time.perf_counter()
    entrant.optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


def run_interleaved(
    entrants: Sequence[Entrant], rounds: int, warmup: int, device: torch.device, rng: random.Random
) -> float | None:
    """Warm every entrant up, then time ``rounds`` rounds of one step each, shuffled.

    Returns the share of the CPUs that other processes used during the timed rounds.
    """
    for entrant in entrants:
        for _ in range(warmup):
            timed_step(entrant, device)
            if not entrant.restores_grads and entrant.grads_changed():
                entrant.restores_grads = True
                entrant.restore_grads()
    gc.collect()
    gc.disable()
    try:
        with OtherLoad() as other_load:
            for _ in range(rounds):
                order = list(entrants)
                rng.shuffle(order)
                for entrant in order:
                    entrant.times.append(timed_step(entrant, device))
    finally:
        gc.enable()
    return other_load.share


def fastest_peer(
    summaries: dict[str, Summary], contenders: Sequence[Contender], family: str
) -> tuple[str, Summary] | None:
    peers = [
        (c.name, summaries[c.name])
        for c in contenders
        if c.family == family and c.origin not in ("tvlars", "torch", "experiment")
    ]
    return min(peers, key=lambda item: item[1].median_ms) if peers else None
