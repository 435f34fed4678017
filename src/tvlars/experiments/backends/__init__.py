"""Where a sweep's cells run: the engines behind ``tvlars sweep --backend``.

The runner (:mod:`tvlars.experiments.runner`) decides which cells need a run, records how
each one ended and writes the report; a backend only runs the pending cells it is handed
and reports each result as it comes in. Every backend runs a cell with
:func:`~tvlars.experiments.cell_run.execute_cell` (or, with several GPUs, with
:func:`~tvlars.experiments.backends.data_parallel.execute_data_parallel`) in the cell's run
folder, so skipping finished cells, resuming interrupted ones from their checkpoint and
``--retry-failed`` behave the same whichever engine runs them.

- :mod:`~tvlars.experiments.backends.local`: this machine (one cell after another, or a
  process pool); needs nothing beyond tvlars.
- :mod:`~tvlars.experiments.backends.ray_cluster`: one Ray task per cell
  (``pip install "tvlars[ray]"``).
- :mod:`~tvlars.experiments.backends.slurm`: one SLURM job array through submitit
  (``pip install "tvlars[slurm]"``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Protocol

from tvlars.experiments.cell_run import CellResult, CellTask
from tvlars.experiments.progress import Progress

#: The optional engine behind each backend: (module to import, the extra that installs it).
EXTRAS = {"ray": ("ray", "ray"), "slurm": ("submitit", "slurm")}


class MissingExtra(RuntimeError):
    """A backend's engine is not installed; the message is the ``pip install`` line."""


class BackendError(RuntimeError):
    """A backend cannot run this sweep as asked (e.g. an --out its workers cannot write)."""


def require_engine(backend: str):
    """Import the engine ``backend`` runs on, or raise :class:`MissingExtra` naming the
    ``pip install`` line that provides it."""
    module, extra = EXTRAS[backend]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"the {backend} backend needs {module}, which is not installed: "
            f'pip install "tvlars[{extra}]"'
        ) from None


class Backend(Protocol):
    """Runs the pending cells of a sweep.

    ``threads`` is the CPU threads each cell trains with (the runner records it in each
    task). :meth:`run` calls ``record`` once per cell that ended, keeps ``progress.running``
    up to date and logs the progress line; it returns the run ids of cells it handed to an
    engine that is still working on them after it returned (a SLURM array it does not wait
    for), else an empty list.
    """

    threads: int | None
    #: Whether cells run at once (then the driver prepares each dataset once beforehand).
    parallel: bool

    def describe(self) -> str:
        """How the cells run, for the sweep's first line."""
        ...

    def run(
        self,
        todo: Sequence[CellTask],
        progress: Progress,
        record: Callable[[CellResult], None],
        log: Callable[[str], None],
    ) -> list[str]: ...
