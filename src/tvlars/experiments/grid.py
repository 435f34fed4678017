"""Sweep grids: what a sweep varies, and its expansion into cells (one training run each).

A :class:`SweepSpec` names the axes of a grid: methods, batch sizes each with its own
learning rates, TVLARS's lambdas (literal per step, or ``tv_decay`` K with lambda =
K / steps after the delay), weight inits, excluded-LR scales, tasks, datasets, seeds, plus
``base``: any other :class:`~tvlars.train.RunConfig` key, the same for every cell. A
preset (see :mod:`tvlars.experiments.presets`) is one or more specs; their cells are
pooled and duplicates dropped, so a cell shared by the main grid and an ablation runs once.

A cell's identity is the run id of its config (:meth:`RunConfig.run_id`), so the same
experiment has the same folder whichever sweep asks for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from tvlars.train.config import OPTIMIZERS, SCHEDULES, RunConfig

TASKS = ("classification", "barlow-twins")

#: The paper's method names and the (optimizer, schedule) each stands for. WA: linear
#: warm-up then cosine decay; NOWA: polynomial decay, no warm-up; TVLARS carries phi(t)
#: itself and runs without a scheduler.
METHODS: dict[str, tuple[str, str]] = {
    "WA-LARS": ("lars", "warmup-cosine"),
    "NOWA-LARS": ("lars", "poly"),
    "WA-LAMB": ("lamb", "warmup-cosine"),
    "WA-LAMB·η": ("lamb", "warmup-cosine"),
    "NOWA-LAMB": ("lamb", "poly"),
    "TVLARS": ("tvlars", "none"),
}
#: The RunConfig keys the grid's axes set in every cell (methods give optimizer and
#: schedule; batches give batch_size and lr): ``base`` cannot set them.
GRID_KEYS = (
    "dataset",
    "init",
    "optimizer",
    "schedule",
    "lr",
    "batch_size",
    "lmbda",
    "tv_decay",
    "excluded_lr_scale",
    "seed",
)

#: eta, LARS's trust-ratio coefficient: ``WA-LAMB·η`` runs the standard LAMB at the grid's
#: LR x eta, which gives each adapted layer the relative step per update that LARS's trust
#: ratio gives it (|Δw| / |w| = lr x eta).
LAMB_ETA = 1e-3
#: Methods that are not the optimizer's default preset at the grid's LR: ``WA-LAMB`` is
#: Table I's LAMB, the authors' arithmetic (``LAMB.official``) at the paper's LRs;
#: ``WA-LAMB·η`` the standard LAMB at the LR times eta (the fair baseline).
METHOD_PRESET: dict[str, str] = {"WA-LAMB": "official", "NOWA-LAMB": "official"}
METHOD_LR_FACTOR: dict[str, float] = {"WA-LAMB·η": LAMB_ETA}
#: ASCII spellings accepted on the command line and in TOML files.
METHOD_ALIASES: dict[str, str] = {"WA-LAMB-eta": "WA-LAMB·η"}
#: The lambda a cell records when its method never reads it, so that such a cell has one
#: run id whatever lambdas the sweep lists (RunConfig's default).
UNUSED_LAMBDA = RunConfig().lmbda
#: Base keys (``[base]``, ``--set``) that only some optimizers have: a cell of another
#: optimizer runs without them, so that one grid may clip its LARS-type cells' trust
#: ratios and its LAMB cells' gradients, and its other cells keep their run ids.
OPTIMIZER_OPTIONS: dict[str, tuple[str, ...]] = {
    "trust_clip": ("lars", "tvlars"),
    "max_grad_norm": ("lamb",),
}


def canonical_method(method: str) -> str:
    """The method's name as the report prints it (``WA-LAMB-eta`` is ``WA-LAMB·η``)."""
    return METHOD_ALIASES.get(method, method)


def method_settings(method: str) -> tuple[str, str]:
    """(optimizer, schedule) of a method: a paper name (``WA-LARS``) or any
    ``optimizer:schedule`` pair (``lamb:tv`` is TV-LAMB, ``sgd:warmup-cosine``)."""
    method = canonical_method(method)
    if method in METHODS:
        return METHODS[method]
    optimizer, sep, schedule = method.partition(":")
    if not sep or optimizer not in OPTIMIZERS or schedule not in SCHEDULES:
        raise ValueError(
            f"unknown method {method!r}: use one of {sorted(METHODS)} (or "
            f"{sorted(METHOD_ALIASES)}) or 'optimizer:schedule' with an optimizer in "
            f"{OPTIMIZERS} and a schedule in {SCHEDULES}"
        )
    return optimizer, schedule


def method_name(optimizer: str, schedule: str, preset: str = "paper") -> str:
    """The inverse of :func:`method_settings` for a run made by hand (its LR is the one it
    got): the paper's name where the settings are one of its methods."""
    for name, settings in METHODS.items():
        if name in METHOD_LR_FACTOR:
            continue
        if settings == (optimizer, schedule) and METHOD_PRESET.get(name, "paper") == preset:
            return name
    return f"{optimizer}:{schedule}" + ("" if preset == "paper" else f":{preset}")


def uses_lambda(optimizer: str, schedule: str) -> bool:
    """Whether phi(t), and so lambda, shapes this method's learning rate."""
    return optimizer == "tvlars" or schedule == "tv"


@dataclass(frozen=True)
class SweepSpec:
    """One grid: the cartesian product of its axes (lambda axes only for TVLARS-type
    methods). ``batches`` maps each batch size to its learning rates."""

    name: str
    methods: tuple[str, ...]
    batches: dict[int, tuple[float, ...]]
    seeds: tuple[int, ...] = (0,)
    tasks: tuple[str, ...] = ("classification",)
    datasets: tuple[str, ...] = ("mnist1d",)
    inits: tuple[str, ...] = ("xavier_uniform",)
    #: TVLARS's literal per-step lambdas, per task (the paper: 1e-4 and 1e-5).
    lambdas: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {"classification": (1e-4,), "barlow-twins": (1e-5,)}
    )
    #: Extra TVLARS variants with lambda = K / (total - delay steps): phi has one shape at
    #: every batch size.
    tv_decays: tuple[float, ...] = ()
    excluded_lr_scales: tuple[float, ...] = (1.0,)
    #: Any other RunConfig key, the same for every cell (epochs, model, micro_batch, ...).
    base: dict[str, Any] = field(default_factory=dict)
    #: Barlow Twins settings (pre-training and evaluation epochs, ...), for that task only.
    pretrain: dict[str, Any] = field(default_factory=dict)
    #: Notes copied into every cell's cell.json for the report (not part of the run id),
    #: e.g. ``{"paper_lambda": 1e-4}`` on cells whose tv_decay mimics that lambda.
    labels: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for method in self.methods:
            method_settings(method)
        for task in self.tasks:
            if task not in TASKS:
                raise ValueError(f"{self.name}: unknown task {task!r}; known: {TASKS}")
        if not self.batches or any(not lrs for lrs in self.batches.values()):
            raise ValueError(f"{self.name}: every batch size needs at least one learning rate")
        if not self.seeds:
            raise ValueError(f"{self.name}: no seeds")
        # Fail now, not when a cell starts: every key must be a RunConfig key, of its type,
        # and none an axis's (the axis would silently win).
        RunConfig.from_dict(dict(self.base), f"{self.name}: base")
        owned = sorted(set(self.base) & set(GRID_KEYS))
        if owned:
            raise ValueError(
                f"{self.name}: base sets {owned}, which the grid's axes set in every cell; "
                "give them as axes (methods, batches, datasets, inits, lambdas, tv_decays, "
                "excluded_lr_scales, seeds) instead"
            )

    def with_seeds(self, count: int) -> SweepSpec:
        return dataclasses.replace(self, seeds=tuple(range(count)))

    def with_base(self, overrides: dict[str, Any]) -> SweepSpec:
        return dataclasses.replace(self, base={**self.base, **overrides})


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: its task, the method's name and the run's config."""

    task: str
    method: str
    config: RunConfig
    pretrain: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    #: The LR of the grid's column when the optimizer runs at another one (``WA-LAMB·η``
    #: in column 19 runs at 0.019); ``None``: the optimizer's own.
    grid_lr: float | None = None

    def run_id(self) -> str:
        """The folder name: the config's run id for classification; for Barlow Twins a hash
        of the config and the pre-training settings, prefixed so the two never collide."""
        if self.task == "classification":
            return self.config.run_id()
        try:
            return "bt-" + self.pretrain_config().run_id()
        except ImportError:  # Barlow Twins not installed: a stable id all the same
            pass
        text = json.dumps(
            {"config": self.config.resolved().hashed_items(), "pretrain": self.pretrain},
            sort_keys=True,
            default=str,
        )
        return "bt-" + hashlib.sha256(text.encode()).hexdigest()[:12]

    def pretrain_config(self, **overrides: Any):
        """The :class:`~tvlars.pretrain.PretrainConfig` of a Barlow Twins cell: its run config
        plus its pre-training settings (``pretrain_epochs``, ``eval_epochs``, ...)."""
        from tvlars.pretrain import PretrainConfig

        return PretrainConfig(**{**dataclasses.asdict(self.config), **self.pretrain, **overrides})

    @property
    def table_lr(self) -> float:
        return self.config.lr if self.grid_lr is None else self.grid_lr

    def describe(self) -> dict[str, Any]:
        """The cell's coordinates on the grid's axes (what cell.json records)."""
        c = self.config
        return {
            "task": self.task,
            "method": self.method,
            "dataset": c.dataset,
            "batch_size": c.batch_size,
            "lr": self.table_lr,
            "optimizer_lr": c.lr,
            "seed": c.seed,
            "init": c.init,
            "lmbda": c.lmbda,
            "tv_decay": c.tv_decay,
            "excluded_lr_scale": c.excluded_lr_scale,
            "epochs": c.epochs,
            "pretrain": dict(self.pretrain),
            "labels": dict(self.labels),
        }


def expand(spec: SweepSpec) -> list[Cell]:
    """Every cell of one grid, in a stable order (task, dataset, batch, lr, method, ...)."""
    cells = []
    for task in spec.tasks:
        for dataset in spec.datasets:
            for batch_size, lrs in spec.batches.items():
                for lr in lrs:
                    for method in spec.methods:
                        cells.extend(_method_cells(spec, task, dataset, batch_size, lr, method))
    return cells


def _method_cells(spec, task, dataset, batch_size, lr, method) -> list[Cell]:
    method = canonical_method(method)
    optimizer, schedule = method_settings(method)
    if uses_lambda(optimizer, schedule):
        decays = [(lmbda, None) for lmbda in spec.lambdas.get(task, ())]
        decays += [(UNUSED_LAMBDA, k) for k in spec.tv_decays]
    else:
        decays = [(UNUSED_LAMBDA, None)]
    base = {
        key: value
        for key, value in spec.base.items()
        if optimizer in OPTIMIZER_OPTIONS.get(key, (optimizer,))
    }
    cells = []
    for lmbda, tv_decay in decays:
        for init in spec.inits:
            for scale in spec.excluded_lr_scales:
                for seed in spec.seeds:
                    values = {
                        **base,
                        "dataset": dataset,
                        "init": init,
                        "optimizer": optimizer,
                        "schedule": schedule,
                        **({"preset": METHOD_PRESET[method]} if method in METHOD_PRESET else {}),
                        "lr": float(lr) * METHOD_LR_FACTOR.get(method, 1.0),
                        "batch_size": int(batch_size),
                        "lmbda": float(lmbda),
                        "tv_decay": None if tv_decay is None else float(tv_decay),
                        "excluded_lr_scale": float(scale),
                        "seed": int(seed),
                    }
                    pretrain = dict(spec.pretrain) if task == "barlow-twins" else {}
                    config = RunConfig.from_dict(values)
                    grid_lr = float(lr) if config.lr != float(lr) else None
                    cells.append(Cell(task, method, config, pretrain, dict(spec.labels), grid_lr))
    return cells


def expand_all(specs: list[SweepSpec] | tuple[SweepSpec, ...]) -> list[Cell]:
    """The cells of several grids pooled, each run id once (first occurrence kept)."""
    seen: dict[str, Cell] = {}
    for spec in specs:
        for cell in expand(spec):
            seen.setdefault(cell.run_id(), cell)
    return list(seen.values())
