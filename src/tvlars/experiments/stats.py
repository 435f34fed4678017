"""Mean and spread over seeds, and paired comparisons of two arms with a 95% interval.

Seeds pair the arms of a sweep: seed k gives every arm the same initial weights and the
same data order, so two arms are compared through the per-seed differences
d_k = a_k - b_k (seeds that only one arm ran are left out). Their mean and its two-sided
95% Student t interval,

    mean(d) ± t_{0.975, n-1} · sd(d) / sqrt(n),

say how far apart the arms are; the seed-to-seed spread both arms share cancels in d_k.
An outcome is decided only by where the whole interval lies against a margin delta:

- higher: the interval lies above +delta;
- lower: it lies below -delta;
- equivalent: it lies inside (-delta, +delta) (the arms agree to within delta);
- undecided: it straddles +delta or -delta, or fewer than :data:`MIN_SEEDS` seeds pair up.

A decisive outcome needs the interval to clear the margin, so a small change of the
numbers (another thread count sums floats in another order) rarely flips it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Seeds both arms need before a comparison decides anything.
MIN_SEEDS = 3
#: Accuracy points by which two arms must differ (the interval must clear it) to count.
ACCURACY_MARGIN = 1.0
HIGHER, LOWER, EQUIVALENT, UNDECIDED = "higher", "lower", "equivalent", "undecided"

# t_{0.975, df} for df = 1..30 (two-sided 95%); larger df use the Cornish-Fisher expansion.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959964


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


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: the two-sided 95% quantile of Student's t with ``df`` degrees."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Paired:
    """Per-seed differences of two arms, their mean and 95% Student t interval."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    margin: float

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.differences) if self.differences else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        """mean ± t_{0.975, n-1} sd / sqrt(n); (-inf, inf) with fewer than two pairs."""
        if self.n < 2:
            return -math.inf, math.inf
        half = t_quantile_975(self.n - 1) * statistics.stdev(self.differences) / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    @property
    def outcome(self) -> str:
        """HIGHER, LOWER, EQUIVALENT or UNDECIDED for the first arm against the second."""
        if self.n < MIN_SEEDS:
            return UNDECIDED
        low, high = self.interval
        if low > self.margin:
            return HIGHER
        if high < -self.margin:
            return LOWER
        if low > -self.margin and high < self.margin:
            return EQUIVALENT
        return UNDECIDED

    def text(self, unit: str = "points") -> str:
        """``+5.2 points, 95% CI [+3.1, +7.3] (3 seeds)`` and why it is undecided, if so."""
        if not self.n:
            return "no seed ran in both arms"
        low, high = self.interval
        ci = f"[{low:+.1f}, {high:+.1f}]" if self.n >= 2 else "(no interval from 1 seed)"
        text = f"{self.mean:+.1f} {unit}, 95% CI {ci} ({self.n} paired seed{'s' * (self.n > 1)})"
        if self.n < MIN_SEEDS:
            text += f": fewer than {MIN_SEEDS} paired seeds"
        return text


def paired(a: Mapping[int, float], b: Mapping[int, float], margin: float) -> Paired:
    """Compare two arms given as {seed: value}: the differences a - b over the seeds both
    have a finite value for."""
    seeds = tuple(sorted(s for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s])))
    return Paired(seeds, tuple(a[s] - b[s] for s in seeds), margin)


def by_seed(pairs: Iterable[tuple[int, float]]) -> dict[int, float]:
    """{seed: value}; a seed given twice (which a sweep never does) keeps its mean."""
    values: dict[int, list[float]] = {}
    for seed, value in pairs:
        values.setdefault(seed, []).append(value)
    return {seed: statistics.fmean(v) for seed, v in values.items()}
