"""What every timing script here shares: how much CPU others took, medians and paired
ratios of interleaved rounds, and the tables and header lines the scripts print."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _machine import busy_cpu_seconds


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


def emit(lines: Sequence[str], markdown: bool) -> None:
    for line in lines:
        print(f"- {line}" if markdown else line)


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


def other_load_line(share: float | None) -> str:
    if share is None:
        return "Other processes' CPU use during the timed rounds: unknown (no /proc/stat)."
    return (
        f"Other processes used {100 * share:.0f}% of the {os.cpu_count()} CPUs during the "
        "timed rounds (steal included); above a few percent, step times are inflated."
    )
