"""How long the compiled paths take to build, measured in fresh processes (cold and warm
caches), and which path finishes a run of a given length first, compilation included."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from _contenders import (
    enter,
    group_compiled_contenders,
    reference_tensors,
    timed_step,
    tvlars_contenders,
)
from _shapes import MODELS
from _timing import Summary, emit, heading, render_table

# step_time.py runs this module's child_first_step in a fresh process (--first-step-of).
STEP_TIME_SCRIPT = Path(__file__).resolve().with_name("step_time.py")


CHILD_MARKER = "FIRST_STEP_RESULT "

# Run lengths (steps) over which the paths' totals, compilation included, are compared.
RUN_LENGTHS = (1_000, 10_000)

# What tvlars' automatic choice (resolve_path) is called in contender names.
PATH_SUFFIX = {"native": "fused", "fused": "compiled", "foreach": "foreach", "single": "single"}


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
        str(STEP_TIME_SCRIPT),
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
