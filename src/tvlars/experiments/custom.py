"""A sweep from a TOML file: the same keys as :class:`~tvlars.experiments.grid.SweepSpec`.

One grid at the top level, or several as ``[[grid]]`` tables (their cells are pooled)::

    name = "lars-vs-tvlars"
    methods = ["WA-LARS", "TVLARS", "lamb:tv"]
    seeds = [0, 1, 2]
    lambdas = [1e-4, 1e-3]          # or a table: {classification = [...], barlow-twins = [...]}
    tv_decays = [10.0]
    inits = ["xavier_uniform"]
    excluded_lr_scales = [1.0, 1e-3]
    [batches]                       # batch size = its learning rates
    4096 = [8, 10]
    16384 = [19]
    [base]                          # any RunConfig key, the same for every cell
    dataset = "mnist1d"             # or datasets = [...] at the top level
    num_samples = 62500
    epochs = 15
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tvlars.experiments.grid import SweepSpec
from tvlars.experiments.presets import Preset
from tvlars.train.config import read_toml

_TUPLE_KEYS = ("methods", "seeds", "tasks", "datasets", "inits", "tv_decays", "excluded_lr_scales")
_DICT_KEYS = ("base", "pretrain", "labels")
_PRESET_KEYS = ("name", "description", "mirrors_paper", "grid")


def load_toml(path: str | Path) -> Preset:
    """Read a custom sweep; raise ``ValueError`` naming any unknown key."""
    path = Path(path)
    values = read_toml(path, str(path), "give a preset name or the path of a sweep TOML file")
    name = str(values.get("name", path.stem))
    grids = values.get("grid")
    if grids is None:
        grids = [{k: v for k, v in values.items() if k not in _PRESET_KEYS}]
    specs = tuple(
        spec_from_dict({"name": f"{name}-{i}", **grid}, where=f"{path}")
        for i, grid in enumerate(grids)
    )
    return Preset(
        name,
        str(values.get("description", f"custom sweep from {path}")),
        specs,
        mirrors_paper=bool(values.get("mirrors_paper", False)),
    )


def spec_from_dict(values: dict[str, Any], where: str = "grid") -> SweepSpec:
    values = {k.replace("-", "_"): v for k, v in values.items()}
    known = {"name", "batches", "lambdas", *_TUPLE_KEYS, *_DICT_KEYS}
    unknown = sorted(set(values) - known - {"dataset"})
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    if "methods" not in values or "batches" not in values:
        raise ValueError(f"{where}: a grid needs 'methods' and 'batches'")
    kwargs: dict[str, Any] = {"name": str(values["name"])}
    for key in _TUPLE_KEYS:
        if key in values:
            kwargs[key] = tuple(values[key])
    for key in _DICT_KEYS:
        if key in values:
            kwargs[key] = dict(values[key])
    base = kwargs.setdefault("base", {})
    if "dataset" in base:  # a dataset in [base] is the one dataset of the grid
        kwargs.setdefault("datasets", (base.pop("dataset"),))
    if "dataset" in values:
        kwargs["datasets"] = (values["dataset"],)
    kwargs["batches"] = {
        int(batch): tuple(float(lr) for lr in (lrs if isinstance(lrs, list) else [lrs]))
        for batch, lrs in values["batches"].items()
    }
    if "lambdas" in values:
        lambdas = values["lambdas"]
        if isinstance(lambdas, dict):
            kwargs["lambdas"] = {
                task.replace("_", "-"): tuple(float(x) for x in xs) for task, xs in lambdas.items()
            }
        else:
            kwargs["lambdas"] = {"classification": tuple(float(x) for x in lambdas)}
    return SweepSpec(**kwargs)
