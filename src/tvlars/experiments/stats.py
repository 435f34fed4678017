"""Mean and spread over seeds, and when a difference between two cells is beyond noise.

With two or more seeds on both sides, a difference counts when it exceeds twice its
standard error (and half a point). With a single seed on either side there is no spread
to measure, so differences of up to 3 points are called noise: seed-to-seed changes of
1 to 3 points are common for these runs.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

SINGLE_SEED_NOISE = 3.0
MIN_MARGIN = 0.5
HIGHER, LOWER, TIE = "higher", "lower", "within noise"


@dataclass(frozen=True)
class Stat:
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n >= 2 else math.nan

    def text(self, digits: int = 1) -> str:
        if not self.values:
            return "—"
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"

    def text_n(self, digits: int = 1) -> str:
        return f"{self.text(digits)} (n={self.n})" if self.values else "—"


def stat(values) -> Stat:
    return Stat(tuple(v for v in values if math.isfinite(v)))


def margin(a: Stat, b: Stat) -> float:
    """The smallest difference of means that counts as real."""
    if a.n >= 2 and b.n >= 2:
        return max(MIN_MARGIN, 2 * math.sqrt(a.std**2 / a.n + b.std**2 / b.n))
    return SINGLE_SEED_NOISE


def compare(a: Stat, b: Stat) -> tuple[float, float, str]:
    """(mean of a - mean of b, margin, HIGHER / LOWER / TIE for a against b)."""
    diff = a.mean - b.mean
    m = margin(a, b)
    if not math.isfinite(diff):
        return diff, m, TIE
    return diff, m, HIGHER if diff > m else LOWER if diff < -m else TIE
