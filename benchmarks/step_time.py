"""Optimizer step time on ResNet-shaped parameter lists: tvlars against torch SGD and peers.

Every contender gets its own copy of the parameters of torchvision's ResNet-18 or ResNet-50
(or, with ``--models vit_s16``, timm's ViT-S/16; shapes from ``_shapes.py``; float32) with
random gradients set once and reused by every step. After warm-up steps, the contenders are
timed round-robin: each round times one step of every contender, in a fresh random order,
so that drift in the machine's load is shared by all of them. The tables report the median
step time, the interquartile range, the time relative to ``torch.optim.SGD``'s per-tensor
loop (``foreach=False``) and the speed-up over the fastest peer implementation of the same
algorithm.

tvlars' paths: ``single`` (per-tensor reference), ``foreach`` (multi-tensor), ``compiled``
(``fused="compile"``: torch.compile of the per-tensor update), ``fused`` (``fused=True``: on
CPU the native C++ kernels of ``tvlars.optim._native``, one call per param group; on GPUs
torch.compile) and ``default`` (what the optimizer chooses by itself). The ``compiled`` and
``fused`` contenders compile on their first step. That cost is measured in fresh
subprocesses: once with empty caches (cold) and once more with the caches that run
populated (warm cache, the usual case on a machine that compiled before).

On a shared machine, read the "other processes used N% of the CPUs" line under each
table first: with torch's default of one intra-op thread per core, a busy neighbour makes
every parallel kernel wait for a time slice and steps take many times longer; ``--threads
1`` gives figures that such load disturbs far less.

    python benchmarks/step_time.py [--models resnet18 resnet50] [--device cpu]
        [--rounds 30] [--warmup 3] [--only REGEX] [--markdown] [--telemetry]
        [--threads N] [--skip-compile] [--group-compile] [--nesterov] [--seed N]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _machine import busy_cpu_seconds, synchronize
from _shapes import MODELS, NamedShapes, parameter_count
from torch import Tensor
from torch.optim import Optimizer

import tvlars
from tvlars import LAMB, LARS, TVLARS

# Hyperparameters shared by every contender of a family, so that all do the same work.
LARS_HP = dict(lr=1.0, momentum=0.9, weight_decay=5e-4, trust=1e-3)
LAMB_HP = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
SGD_HP = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)

BASELINE = "torch SGD loop"
FLOOR = "one fused pass (floor)"
CHILD_MARKER = "FIRST_STEP_RESULT "

TARGETS = (
    # (contender, limit on time / SGD loop, minimum speed-up over the fastest peer)
    ("LARS default", 0.5, 2.5),
    ("TVLARS default", 0.5, 2.5),
    ("LAMB default", None, 2.0),
)
TELEMETRY_TARGET = 0.05
RECORDER_CAPACITY = 256  # LayerRecorder's default
# The telemetry pair is cheap to time and its target (5%) is small: more rounds.
TELEMETRY_ROUNDS_FACTOR = 4


# ------------------------------------------------------------------------ contenders


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
# Run lengths (steps) over which the paths' totals, compilation included, are compared.
RUN_LENGTHS = (1_000, 10_000)
# What tvlars' automatic choice (resolve_path) is called in contender names.
PATH_SUFFIX = {"native": "fused", "fused": "compiled", "foreach": "foreach", "single": "single"}


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


# ------------------------------------------------------------------------ tensors


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


# ------------------------------------------------------------------------ timing


def timed_step(entrant: Entrant, device: torch.device) -> float:
    if entrant.restores_grads:
        entrant.restore_grads()
    synchronize(device)
    start = time.perf_counter()
    entrant.optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


class OtherLoad:
    """Measures the share of the machine's CPUs that other processes used meanwhile.

    On a shared machine this is the first thing to read: with torch's default of one
    intra-op thread per core, any other busy process makes every parallel kernel wait for
    a time slice, and step times grow by an order of magnitude.
    """

    def __enter__(self) -> OtherLoad:
        self.share: float | None = None
        self._busy, self._own, self._wall = busy_cpu_seconds(), own_cpu_seconds(), time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        busy = busy_cpu_seconds()
        if busy is None or self._busy is None:
            return
        others = (busy - self._busy) - (own_cpu_seconds() - self._own)
        capacity = (time.time() - self._wall) * (os.cpu_count() or 1)
        self.share = min(max(others / capacity, 0.0), 1.0) if capacity > 0 else None


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


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


@dataclass
class Summary:
    """Step times of one contender, one per round, in round order (milliseconds)."""

    times_ms: list[float]
    median_ms: float
    q1_ms: float
    q3_ms: float
    best_ms: float


def summarize(times: Sequence[float]) -> Summary:
    ms = [1e3 * t for t in times]
    if len(ms) < 2:
        return Summary(ms, ms[0], ms[0], ms[0], ms[0])
    q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    return Summary(ms, statistics.median(ms), q1, q3, min(ms))


def paired_ratio(numerator: Summary, denominator: Summary) -> float:
    """Median over rounds of the ratio of two contenders' step times in the same round.

    Both steps of a pair ran close together in time, so a change in the machine's load
    between rounds cancels out, which it does not in a ratio of two medians.
    """
    return statistics.median(
        n / d for n, d in zip(numerator.times_ms, denominator.times_ms, strict=True)
    )


# ------------------------------------------------------------------------ compilation


def first_step_in_subprocess(
    contender_name: str, model: str, device: str, cache_dir: Path, seed: int
) -> dict:
    """Run a fresh process that times the first steps of one contender.

    ``cache_dir`` becomes the process's inductor cache (``TORCHINDUCTOR_CACHE_DIR``):
    empty for a cold compile, the one a previous call filled for a warm-cache compile.
    """
    env = dict(
        os.environ,
        TORCHINDUCTOR_CACHE_DIR=str(cache_dir),
        TRITON_CACHE_DIR=str(cache_dir / "triton"),
        TVLARS_CACHE=str(cache_dir / "tvlars"),  # where the native kernels are built
    )
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--first-step-of",
        contender_name,
        "--models",
        model,
        "--device",
        device,
        "--seed",
        str(seed),
        "--threads",
        str(torch.get_num_threads()),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    for line in result.stdout.splitlines():
        if line.startswith(CHILD_MARKER):
            return json.loads(line[len(CHILD_MARKER) :])
    raise RuntimeError(f"first-step subprocess failed ({result.returncode}):\n{result.stderr}")


def child_first_step(contender_name: str, model: str, device: torch.device, seed: int) -> None:
    """Subprocess body: the first step's time and the median of the next few."""
    candidates = tvlars_contenders(nesterov=True) + group_compiled_contenders()
    contender = next(c for c in candidates if c.name == contender_name)
    params, grads = reference_tensors(MODELS[model](), device, seed)
    entrant = enter(contender, params, grads)
    del params
    first = timed_step(entrant, device)
    following = [timed_step(entrant, device) for _ in range(5)]
    print(CHILD_MARKER + json.dumps({"first_s": first, "steady_s": statistics.median(following)}))


@dataclass
class CompileTiming:
    contender: str
    cold_first_s: float
    cold_compile_s: float
    warm_first_s: float
    warm_compile_s: float


def measure_compilation(
    contender_names: Sequence[str], model: str, device: str, seed: int
) -> list[CompileTiming]:
    timings = []
    for name in contender_names:
        cache_dir = Path(tempfile.mkdtemp(prefix="tvlars_bench_inductor_"))
        try:
            cold = first_step_in_subprocess(name, model, device, cache_dir, seed)
            warm = first_step_in_subprocess(name, model, device, cache_dir, seed)
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        timings.append(
            CompileTiming(
                name,
                cold["first_s"],
                cold["first_s"] - cold["steady_s"],
                warm["first_s"],
                warm["first_s"] - warm["steady_s"],
            )
        )
    return timings


# ------------------------------------------------------------------------ telemetry


def telemetry_overhead(
    shapes: NamedShapes,
    device: torch.device,
    rounds: int,
    warmup: int,
    rng: random.Random,
    seed: int,
) -> tuple[list[list[str]], dict]:
    """Interleave TVLARS (default path) with and without a LayerRecorder(every=1), and a
    second copy without one: how far two identical contenders differ (their memory lies
    elsewhere) is the resolution of the overhead figure. Also torch's SGD loop with and
    without a recorder: for an optimizer that computes no norms the recorder takes them
    itself (no target; what a user of a plain optimizer pays)."""
    from tvlars.telemetry import LayerRecorder

    params, grads = reference_tensors(shapes, device, seed)
    tvlars_default = next(c for c in tvlars_contenders() if c.name == "TVLARS default")
    plain = enter(tvlars_default, params, grads)
    control_contender = Contender(
        "TVLARS default, a second copy (control)", "LARS", "tvlars", tvlars_default.build
    )
    control = enter(control_contender, params, grads)
    recorded_contender = Contender(
        "TVLARS default + LayerRecorder(every=1)", "LARS", "tvlars", tvlars_default.build
    )
    recorded = enter(recorded_contender, params, grads)
    sgd_loop = next(c for c in torch_contenders() if c.name == BASELINE)
    sgd_plain = enter(sgd_loop, params, grads)
    sgd_recorded = enter(
        Contender(f"{BASELINE} + LayerRecorder(every=1)", "SGD", "torch", sgd_loop.build),
        params,
        grads,
    )
    del params
    with tempfile.TemporaryDirectory(prefix="tvlars_bench_telemetry_") as directory:
        names = [name for name, _ in shapes]
        recorders = [
            LayerRecorder(
                timed.optimizer,
                zip(names, timed.params, strict=True),
                Path(directory) / f"layers-{index}.csv",
                every=1,
                capacity=RECORDER_CAPACITY,
            )
            for index, timed in enumerate((recorded, sgd_recorded))
        ]
        other_load = run_interleaved(
            [plain, control, recorded, sgd_plain, sgd_recorded], rounds, warmup, device, rng
        )
        # Every step is recorded; the recorder writes when its buffer is full (that time
        # is in the timed steps where it happened) and when it is closed (timed here).
        buffered_steps = (warmup + rounds) % RECORDER_CAPACITY
        start = time.perf_counter()
        recorders[0].close()  # writes the buffered rows: the only host transfer
        flush_s = time.perf_counter() - start
        recorders[1].close()
    plain_s, recorded_s = summarize(plain.times), summarize(recorded.times)
    control_s = summarize(control.times)
    overhead = paired_ratio(recorded_s, plain_s) - 1.0
    control_difference = paired_ratio(control_s, plain_s) - 1.0
    flush_per_step_ms = 1e3 * flush_s / max(buffered_steps, 1)
    amortized = overhead + flush_per_step_ms / plain_s.median_ms
    sgd_plain_s, sgd_recorded_s = summarize(sgd_plain.times), summarize(sgd_recorded.times)
    sgd_overhead = paired_ratio(sgd_recorded_s, sgd_plain_s) - 1.0
    rows = [
        [plain.contender.name, f"{plain_s.median_ms:.2f}", iqr(plain_s), "", ""],
        [
            control.contender.name,
            f"{control_s.median_ms:.2f}",
            iqr(control_s),
            f"{100 * control_difference:+.1f}%",
            "",
        ],
        [
            recorded.contender.name,
            f"{recorded_s.median_ms:.2f}",
            iqr(recorded_s),
            f"{100 * overhead:+.1f}%",
            f"{100 * amortized:+.1f}%",
        ],
        [sgd_plain.contender.name, f"{sgd_plain_s.median_ms:.2f}", iqr(sgd_plain_s), "", ""],
        [
            sgd_recorded.contender.name,
            f"{sgd_recorded_s.median_ms:.2f}",
            iqr(sgd_recorded_s),
            f"{100 * sgd_overhead:+.1f}%",
            "",
        ],
    ]
    info = {
        "overhead": overhead,
        "amortized": amortized,
        "control": control_difference,
        "flush_ms": 1e3 * flush_s,
        "buffered_steps": buffered_steps,
        "other_load": other_load,
    }
    return rows, info


# ------------------------------------------------------------------------ output


def iqr(summary: Summary) -> str:
    return f"{summary.q1_ms:.2f}-{summary.q3_ms:.2f}"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def heading(text: str, markdown: bool, level: int = 3) -> str:
    return f"{'#' * level} {text}" if markdown else f"== {text} =="


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def source_revision() -> str:
    """The git commit of the tree, and whether ``src/`` differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" + uncommitted changes in src/" if dirty else "")


def openmp_runtimes() -> str:
    """The OpenMP runtime libraries loaded in this process (torch's and the native kernels':
    one shared library means one thread pool)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown (no /proc/self/maps)"
    names = ("libgomp", "libiomp", "libomp")
    libraries = sorted({line.split()[-1] for line in maps.splitlines()
                        if any(name in line.rsplit("/", 1)[-1] for name in names)})  # fmt: skip
    return ", ".join(libraries) if libraries else "none"


def header_lines(
    args: argparse.Namespace, device: torch.device, peers_found: list[str], notes: list[str]
) -> list[str]:
    command = "python benchmarks/step_time.py " + shlex.join(sys.argv[1:])
    hardware = cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"Command: `{command}`",
        f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"tvlars {tvlars.__version__} at {source_revision()}",
        f"torch {torch.__version__}, Python "
        f"{platform.python_version()}; device {device.type}: {hardware}; "
        f"{torch.get_num_threads()} threads (of {os.cpu_count()} CPUs); "
        f"load average at start {load}",
        f"Rounds {args.rounds} (one step per contender per round, order shuffled each "
        f"round) after {args.warmup} warm-up steps; float32; seed {args.seed}.",
        "Peers found: " + (", ".join(peers_found) if peers_found else "none"),
        "OpenMP runtimes loaded (after building the contenders): " + openmp_runtimes(),
        f"Hyperparameters: LARS/TVLARS lr {LARS_HP['lr']}, momentum {LARS_HP['momentum']}, "
        f"wd {LARS_HP['weight_decay']}, trust coefficient {LARS_HP['trust']}; LAMB lr "
        f"{LAMB_HP['lr']}, betas {LAMB_HP['betas']}, eps {LAMB_HP['eps']}, wd "
        f"{LAMB_HP['weight_decay']}; SGD momentum {SGD_HP['momentum']}, wd "
        f"{SGD_HP['weight_decay']}.",
        "Columns: median step time; IQR = 25th-75th percentile; best = fastest step (the "
        "least disturbed by other load); 'x SGD loop' = median over rounds of this step's "
        "time / the torch.optim.SGD(foreach=False) step's time in the same round; 'speed-up "
        "vs peer' = the same paired median of the fastest peer's time (lowest median; "
        "for TVLARS a peer LARS) / this time.",
    ]
    lines += [f"Note: {note}" for note in notes]
    return lines


def other_load_line(share: float | None) -> str:
    if share is None:
        return "Other processes' CPU use during the timed rounds: unknown (no /proc/stat)."
    return (
        f"Other processes used {100 * share:.0f}% of the {os.cpu_count()} CPUs during the "
        "timed rounds (steal included); above a few percent, step times are inflated."
    )


def emit(lines: Sequence[str], markdown: bool) -> None:
    for line in lines:
        print(f"- {line}" if markdown else line)


# ------------------------------------------------------------------------ one model


def fastest_peer(
    summaries: dict[str, Summary], contenders: Sequence[Contender], family: str
) -> tuple[str, Summary] | None:
    peers = [
        (c.name, summaries[c.name])
        for c in contenders
        if c.family == family and c.origin not in ("tvlars", "torch", "experiment")
    ]
    return min(peers, key=lambda item: item[1].median_ms) if peers else None


def step_time_rows(
    contenders: Sequence[Contender], summaries: dict[str, Summary]
) -> list[list[str]]:
    baseline = summaries[BASELINE]
    rows = []
    for contender in contenders:
        summary = summaries[contender.name]
        peer = fastest_peer(summaries, contenders, contender.family)
        speedup = (
            f"{paired_ratio(peer[1], summary):.2f}x"
            if peer is not None and contender.family != "SGD"
            else "-"
        )
        rows.append(
            [
                contender.name,
                f"{summary.median_ms:.2f}",
                iqr(summary),
                f"{summary.best_ms:.2f}",
                f"{paired_ratio(summary, baseline):.2f}",
                speedup,
            ]
        )
    return rows


def compile_rows(
    timings: Sequence[CompileTiming], summaries: dict[str, Summary]
) -> list[list[str]]:
    rows = []
    for timing in timings:
        fused = summaries[timing.contender].median_ms
        foreach = summaries.get(timing.contender.rsplit(" ", 1)[0] + " foreach")
        saving_ms = foreach.median_ms - fused if foreach is not None else None

        def break_even(compile_s: float, saving_ms: float | None = saving_ms) -> str:
            if saving_ms is None:
                return "-"
            if saving_ms <= 0:
                return "never (fused not faster)"
            return f"{1e3 * compile_s / saving_ms:.0f}"

        rows.append(
            [
                timing.contender,
                f"{fused:.2f}",
                f"{foreach.median_ms:.2f}" if foreach is not None else "-",
                f"{timing.cold_first_s:.2f}",
                f"{timing.cold_compile_s:.2f}",
                f"{timing.warm_first_s:.2f}",
                f"{timing.warm_compile_s:.2f}",
                break_even(timing.cold_compile_s),
                break_even(timing.warm_compile_s),
            ]
        )
    return rows


def run_length_lines(
    timings: Sequence[CompileTiming], summaries: dict[str, Summary], default_path: str
) -> list[str]:
    """For LARS, TVLARS and LAMB: which path finishes a run of each of RUN_LENGTHS steps
    first, a cold compilation included (the multi-tensor path compiles nothing), beside
    the path the automatic choice takes here: whether the default is right on this device."""
    compile_s = {timing.contender: timing.cold_compile_s for timing in timings}
    lines = []
    for optimizer in ("LARS", "TVLARS", "LAMB"):
        costs: dict[str, tuple[float, float]] = {}  # path -> (compile s, step ms)
        for suffix in ("foreach", "compiled", "fused", "group-compiled"):
            name = f"{optimizer} {suffix}"
            if name not in summaries:
                continue
            if suffix == "foreach":
                costs[suffix] = (0.0, summaries[name].median_ms)
            elif name in compile_s:
                costs[suffix] = (compile_s[name], summaries[name].median_ms)
        if len(costs) < 2:
            continue
        parts = []
        for steps in RUN_LENGTHS:
            totals = {path: c + steps * ms / 1e3 for path, (c, ms) in costs.items()}
            fastest = min(totals, key=totals.get)
            listed = ", ".join(f"{path} {total:.1f} s" for path, total in totals.items())
            parts.append(f"{steps:,} steps: {fastest} ({listed})")
        lines.append(
            f"{optimizer}, fastest run with a cold compile cache: {'; '.join(parts)}. "
            f"The automatic choice here: {PATH_SUFFIX.get(default_path, default_path)}."
        )
    return lines


def target_lines(summaries: dict[str, Summary], contenders: Sequence[Contender]) -> list[str]:
    lines = []
    if FLOOR in summaries:
        floor = paired_ratio(summaries[FLOOR], summaries[BASELINE])
        lines.append(
            f"Floor: one fused pass that only reads w, g, buffer and writes w, buffer takes "
            f"{floor:.2f}x the SGD loop here; no LARS step can take less."
        )
    for name, max_sgd_ratio, min_speedup in TARGETS:
        if name not in summaries:
            continue
        family = next(c.family for c in contenders if c.name == name)
        if max_sgd_ratio is not None:
            ratio = paired_ratio(summaries[name], summaries[BASELINE])
            verdict = "met" if ratio <= max_sgd_ratio else "MISSED"
            over_floor = (
                f"; {paired_ratio(summaries[name], summaries[FLOOR]):.2f}x the floor"
                if FLOOR in summaries
                else ""
            )
            lines.append(
                f"{name}: {ratio:.2f}x SGD loop (target <= {max_sgd_ratio}) {verdict}{over_floor}"
            )
        peer = fastest_peer(summaries, contenders, family)
        if peer is not None:
            speedup = paired_ratio(peer[1], summaries[name])
            verdict = "met" if speedup >= min_speedup else "MISSED"
            lines.append(
                f"{name}: {speedup:.2f}x faster than {peer[0]} (target >= {min_speedup}x) {verdict}"
            )
    return lines


def tvlars_default_path(device: torch.device, adapted_numel: int) -> str:
    """The path tvlars' automatic choice takes for a group of this size (internal API)."""
    try:
        from tvlars.optim import _native
        from tvlars.optim._paths import resolve_path
    except ImportError:
        return "unknown"
    native_ok = device.type == "cpu" and _native.kernels() is not None
    return resolve_path(None, None, device, adapted_numel, native_ok)


def benchmark_model(
    model: str,
    contenders: Sequence[Contender],
    args: argparse.Namespace,
    device: torch.device,
    rng: random.Random,
) -> None:
    shapes = MODELS[model]()
    adapted = sum(parameter_count([s]) for s in shapes if len(s[1]) > 1)
    default_path = tvlars_default_path(device, adapted)
    print()
    print(
        heading(
            f"{model}: {len(shapes)} tensors, {parameter_count(shapes):,} parameters "
            f"({adapted:,} adapted); tvlars default path here: {default_path}",
            args.markdown,
        )
    )
    print()

    reference_params, reference_grads = reference_tensors(shapes, device, args.seed)
    entrants = [enter(c, reference_params, reference_grads) for c in contenders]
    del reference_params  # the grads stay: mutating contenders are restored from them
    other_load = run_interleaved(entrants, args.rounds, args.warmup, device, rng)
    summaries = {e.contender.name: summarize(e.times) for e in entrants}
    restored = [e.contender.name for e in entrants if e.restores_grads]
    del entrants, reference_grads
    gc.collect()

    headers = ["contender", "median ms", "IQR ms", "best ms", "x SGD loop", "speed-up vs peer"]
    print(render_table(headers, step_time_rows(contenders, summaries), args.markdown))
    print()
    emit(
        [other_load_line(other_load)]
        + (
            [
                f"These write into p.grad; their gradients were restored (untimed) before each "
                f"step: {', '.join(restored)}."
            ]
            if restored
            else []
        ),
        args.markdown,
    )

    fused_names = [c.name for c in contenders if c.path in BUILT_PATHS]
    if fused_names and not args.skip_compile:
        print_compilation(model, fused_names, summaries, default_path, args)

    lines = target_lines(summaries, contenders)
    if args.telemetry:
        lines.append(print_telemetry(model, shapes, device, rng, args))
    if lines:
        print()
        print(heading(f"{model}: targets", args.markdown, level=4))
        print()
        emit(lines, args.markdown)


def print_compilation(
    model: str,
    fused_names: Sequence[str],
    summaries: dict[str, Summary],
    default_path: str,
    args: argparse.Namespace,
) -> None:
    timings = measure_compilation(fused_names, model, args.device, args.seed)
    print()
    print(
        heading(
            f"{model}: compilation of the fused path (fresh subprocesses)", args.markdown, level=4
        )
    )
    print()
    emit(
        [
            "cold = empty TORCHINDUCTOR_CACHE_DIR; warm cache = a new process reusing the "
            "cache the cold run filled. compile = first step - median of the next 5 steps "
            "in that process. break-even = compile / (foreach median - fused median): the "
            "steps after which the fused path has repaid its compilation."
        ],
        args.markdown,
    )
    print()
    headers = [
        "contender",
        "fused ms",
        "foreach ms",
        "cold 1st step s",
        "cold compile s",
        "warm 1st step s",
        "warm compile s",
        "break-even cold",
        "break-even warm",
    ]
    print(render_table(headers, compile_rows(timings, summaries), args.markdown))
    lines = run_length_lines(timings, summaries, default_path)
    if lines:
        print()
        emit(lines, args.markdown)


def print_telemetry(
    model: str,
    shapes: NamedShapes,
    device: torch.device,
    rng: random.Random,
    args: argparse.Namespace,
) -> str:
    """Print the telemetry-overhead table; return the line for the targets."""
    rows, info = telemetry_overhead(
        shapes, device, TELEMETRY_ROUNDS_FACTOR * args.rounds, args.warmup, rng, args.seed
    )
    print()
    print(
        heading(
            f"{model}: telemetry overhead ({TELEMETRY_ROUNDS_FACTOR * args.rounds} "
            "interleaved rounds)",
            args.markdown,
            level=4,
        )
    )
    print()
    headers = ["contender", "median ms", "IQR ms", "overhead (paired)", "with flush amortized"]
    print(render_table(headers, rows, args.markdown))
    print()
    emit(
        [
            other_load_line(info["other_load"]),
            f"close() wrote {info['buffered_steps']} buffered steps in "
            f"{info['flush_ms']:.1f} ms (capacity {RECORDER_CAPACITY}: one write per "
            f"{RECORDER_CAPACITY} steps); 'with flush amortized' adds that time per step.",
            "The control is the same optimizer on its own copy of the tensors, without a "
            "recorder: its difference from the first is what placement in memory and noise "
            "alone make of an overhead figure.",
            "For torch's SGD, which computes no norms, the recorder reads every recorded "
            "weight and gradient itself before the step (on CPU with the native kernels' "
            "norm pass); no target applies to it.",
        ],
        args.markdown,
    )
    verdict = "met" if info["amortized"] <= TELEMETRY_TARGET else "MISSED"
    return (
        f"LayerRecorder overhead {100 * info['amortized']:+.1f}% "
        f"(target <= {100 * TELEMETRY_TARGET:.0f}%) {verdict}; two copies without a "
        f"recorder differed by {100 * info['control']:+.1f}%"
    )


# ------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", choices=sorted(MODELS), default=["resnet18", "resnet50"]
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--rounds", type=int, default=30, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per contender")
    parser.add_argument(
        "--only",
        metavar="REGEX",
        help="time only contenders whose name matches (the SGD loop baseline is always kept)",
    )
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--telemetry",
        action="store_true",
        help="also time TVLARS with and without a LayerRecorder attached",
    )
    parser.add_argument(
        "--skip-compile",
        action="store_true",
        help="do not measure the fused path's compilation in subprocesses",
    )
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (default: torch's default, one per core)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--group-compile",
        action="store_true",
        help="also time the whole-group compiled LARS experiment (on by default on CUDA "
        "unless --skip-compile; see _group_compiled.py)",
    )
    parser.add_argument(
        "--nesterov",
        action="store_true",
        help="also time TVLARS in Algorithm 1's Nesterov form (nesterov=True) on each path",
    )
    parser.add_argument("--first-step-of", help=argparse.SUPPRESS)  # subprocess mode
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 1:
        parser.error("--rounds and --warmup must be >= 1 (warm-up includes compilation)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    if args.first_step_of:
        child_first_step(args.first_step_of, args.models[0], device, args.seed)
        return

    peers, peers_found, notes = peer_contenders()
    contenders = (
        torch_contenders() + floor_contenders(device) + tvlars_contenders(args.nesterov) + peers
    )
    if args.group_compile or (device.type == "cuda" and not args.skip_compile):
        contenders += group_compiled_contenders()
    if args.only:
        pattern = re.compile(args.only)
        contenders = [c for c in contenders if c.name == BASELINE or pattern.search(c.name)]
    rng = random.Random(args.seed)

    started = time.perf_counter()
    print(heading("Optimizer step time", args.markdown, level=2))
    print()
    emit(header_lines(args, device, peers_found, notes), args.markdown)
    for model in args.models:
        benchmark_model(model, contenders, args, device, rng)
    print()
    print(f"Total benchmark time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
