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

Shared with the other scripts: the contenders and their interleaved timing
(``_contenders.py``), medians, paired ratios and tables (``_timing.py``); this script's own
parts: the compile-time measurement (``_compile_time.py``) and the telemetry pair
(``_telemetry_cost.py``).

    python benchmarks/step_time.py [--models resnet18 resnet50] [--device cpu]
        [--rounds 30] [--warmup 3] [--only REGEX] [--markdown] [--telemetry]
        [--threads N] [--skip-compile] [--group-compile] [--nesterov] [--seed N]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import random
import re
import shlex
import sys
import time
from collections.abc import Sequence

import torch
from _compile_time import child_first_step, print_compilation
from _contenders import (
    BASELINE,
    BUILT_PATHS,
    FLOOR,
    LAMB_HP,
    LARS_HP,
    SGD_HP,
    Contender,
    enter,
    fastest_peer,
    floor_contenders,
    group_compiled_contenders,
    peer_contenders,
    reference_tensors,
    run_interleaved,
    torch_contenders,
    tvlars_contenders,
)
from _shapes import MODELS, parameter_count
from _telemetry_cost import print_telemetry
from _timing import (
    Summary,
    cpu_model,
    emit,
    heading,
    iqr,
    openmp_runtimes,
    other_load_line,
    paired_ratio,
    render_table,
    source_revision,
    summarize,
)

import tvlars

TARGETS = (
    # (contender, limit on time / SGD loop, minimum speed-up over the fastest peer)
    ("LARS default", 0.5, 2.5),
    ("TVLARS default", 0.5, 2.5),
    ("LAMB default", None, 2.0),
)


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
