"""The sweep's progress line: cells done, running and left, and an ETA."""

from __future__ import annotations

import time
from collections import Counter


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


class Progress:
    """Counts of a sweep's cells. The ETA extrapolates the rate of cells finished in this
    session (skipped cells took no time, so they do not count towards the rate)."""

    def __init__(self, total: int, done_before: int, clock=time.monotonic) -> None:
        self.total = total
        self.done_before = done_before
        self.outcomes: Counter[str] = Counter()
        self.running = 0
        self._clock = clock
        self._started = clock()

    @property
    def done(self) -> int:
        return self.done_before + sum(self.outcomes.values())

    @property
    def left(self) -> int:
        return self.total - self.done - self.running

    def eta_seconds(self) -> float | None:
        finished = sum(self.outcomes.values())
        if finished == 0:
            return None
        per_cell = (self._clock() - self._started) / finished
        return per_cell * (self.left + self.running)

    def line(self) -> str:
        extra = ", ".join(f"{n} {state}" for state, n in sorted(self.outcomes.items()) if n)
        eta = self.eta_seconds()
        return (
            f"[sweep] {self.done}/{self.total} done"
            + (f" ({extra} this session)" if extra else "")
            + f", {self.running} running, {self.left} left; "
            + f"{format_duration(self._clock() - self._started)} elapsed, ETA "
            + ("unknown" if eta is None else format_duration(eta))
        )
