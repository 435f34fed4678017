"""Helpers for the tests of the sweep backends: tiny grids and what two sweeps must share."""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import torch

from tvlars.experiments.grid import SweepSpec, expand
from tvlars.experiments.report import write_report
from tvlars.experiments.runner import run_sweep

#: Small enough for CI, large enough that the cells end at different accuracies.
TINY = {"num_samples": 2000, "model": "mnist1d-cnn", "epochs": 2, "telemetry_every": 1}


def tiny_cells(methods=("WA-LARS", "NOWA-LARS", "TVLARS"), **base):
    return expand(
        SweepSpec(name="t", methods=methods, batches={128: (0.5,)}, base={**TINY, **base})
    )


def interruptible_cells():
    """One cell whose epochs last long enough (about a second each, single-threaded) to be
    interrupted between its first checkpoint and its end."""
    return tiny_cells(methods=("TVLARS",), epochs=3, num_samples=20000)


def quiet(message: str) -> None:
    pass


def sweep_locally(cells, out: Path) -> str:
    """The local backend's table.csv for ``cells`` (one cell at a time, one thread)."""
    run_sweep(cells, out, jobs=1, threads=1, log=quiet)
    return table_of(out)


_REFERENCES: dict[tuple[str, ...], Path] = {}


def reference_sweep(cells, root: Path) -> Path:
    """The folder of a local sweep of ``cells`` under ``root``, run once per test session
    (several tests compare against the same uninterrupted runs)."""
    key = tuple(sorted(cell.run_id() for cell in cells))
    if key not in _REFERENCES or not _REFERENCES[key].exists():
        out = root / ("reference-" + "-".join(key))
        sweep_locally(cells, out)
        _REFERENCES[key] = out
    return _REFERENCES[key]


def table_of(out: Path) -> str:
    write_report(out)
    return (out / "table.csv").read_text()


def metric_rows(folder: Path) -> list[dict]:
    """metrics.csv without its wall-clock column."""
    with open(folder / "metrics.csv") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def final_weights(folder: Path) -> dict:
    return torch.load(folder / "checkpoint.pt", weights_only=True)["model"]


def assert_same_runs(first: Path, second: Path) -> None:
    """Every run folder of sweep ``first`` has a twin in ``second`` with the same metrics
    and final weights."""
    names = sorted(p.name for p in (first / "runs").iterdir())
    assert names == sorted(p.name for p in (second / "runs").iterdir())
    for name in names:
        a, b = first / "runs" / name, second / "runs" / name
        assert metric_rows(a) == metric_rows(b), name
        wa, wb = final_weights(a), final_weights(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name


def lock_holder(folder: Path) -> int | None:
    """The pid that holds (or last held) a cell's lock, from its lock file."""
    try:
        text = (folder / ".lock").read_text().split()
    except OSError:
        return None
    return int(text[1]) if len(text) > 1 and text[0] == "pid" else None


class KillAfterFirstEpoch(threading.Thread):
    """Sends ``signum`` to the process training the cell in ``folder`` once the cell has
    checkpointed its first epoch and before it finishes; ``killed`` is that pid.
    ``send(pid, signum)`` (default :func:`os.kill`) delivers it."""

    def __init__(self, folder: Path, signum: int = signal.SIGKILL, timeout: float = 300) -> None:
        super().__init__(daemon=True)
        self.folder, self.signum, self.timeout = folder, signum, timeout
        self.killed: int | None = None
        self.send = os.kill

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if (self.folder / "summary.json").exists():
                return
            if (self.folder / "checkpoint.pt").exists():
                pid = lock_holder(self.folder)
                if pid is not None:
                    self.send(pid, self.signum)
                    self.killed = pid
                    return
            time.sleep(0.02)
