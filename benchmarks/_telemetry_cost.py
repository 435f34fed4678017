"""The cost of a LayerRecorder on every step: TVLARS with and without one (and an identical
control without), and torch's SGD with and without one."""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
from _contenders import (
    BASELINE,
    Contender,
    enter,
    reference_tensors,
    run_interleaved,
    torch_contenders,
    tvlars_contenders,
)
from _shapes import NamedShapes
from _timing import emit, heading, iqr, other_load_line, paired_ratio, render_table, summarize

TELEMETRY_TARGET = 0.05

RECORDER_CAPACITY = 256  # LayerRecorder's default

# The telemetry pair is cheap to time and its target (5%) is small: more rounds.
TELEMETRY_ROUNDS_FACTOR = 4


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
