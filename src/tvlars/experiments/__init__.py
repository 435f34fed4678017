"""Sweeps over the paper's grid and the report that compares them with the paper.

- :mod:`~tvlars.experiments.grid`: sweep specs and their expansion into cells.
- :mod:`~tvlars.experiments.presets`: the named sweeps (paper, ablations, cpu, quick).
- :mod:`~tvlars.experiments.custom`: a sweep from a TOML file.
- :mod:`~tvlars.experiments.runner`: the resumable, parallel, locked sweep runner.
- :mod:`~tvlars.experiments.backends`: where its cells run (this machine, Ray, SLURM).
- :mod:`~tvlars.experiments.paper_table`: the paper's Table I as data.
- :mod:`~tvlars.experiments.report`: tables, figures and claims from a sweep folder.
"""

from tvlars.experiments.grid import METHODS, Cell, SweepSpec, expand, expand_all, method_settings
from tvlars.experiments.presets import PRESETS, Preset, get_preset

__all__ = [
    "METHODS",
    "PRESETS",
    "Cell",
    "Preset",
    "SweepSpec",
    "expand",
    "expand_all",
    "get_preset",
    "method_settings",
]
