"""The configuration of a Barlow Twins run: every classification setting plus its own.

:class:`PretrainConfig` extends :class:`tvlars.train.RunConfig`, so the same flags, TOML
keys, :class:`~tvlars.train.Plan`, optimizers and schedules apply; ``epochs`` counts
pre-training epochs (``pretrain_epochs`` is its name on this command line and wins when
both are given). Defaults that differ from classification: TVLARS's ``lmbda`` is the
paper's 1e-5 for self-supervised learning; biases and normalization parameters learn at
``excluded_lr_scale = 0.024`` times the target LR, the ratio of the reference Barlow Twins
code (0.0048 / 0.2; at 1.0, LARS-type runs on MNIST-1D learned features no better than a
random backbone's); and the run is sized so that ``tvlars pretrain`` with no arguments
finishes on two CPU cores in about a minute.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tvlars.models import input_kind
from tvlars.pretrain.barlow_twins import DEFAULT_BT_LAMBDA
from tvlars.pretrain.knn import DEFAULT_K
from tvlars.pretrain.linear_eval import DEFAULT_EVAL_EPOCHS
from tvlars.pretrain.projector import DEFAULT_PROJECTOR, parse_projector
from tvlars.train.config import RunConfig


@dataclass
class PretrainConfig(RunConfig):
    """A :class:`RunConfig` for Barlow Twins pre-training and linear evaluation."""

    epochs: int = 30
    lmbda: float = 1e-5
    excluded_lr_scale: float = 0.024
    projector: str | None = None
    bt_lambda: float = DEFAULT_BT_LAMBDA
    pretrain_epochs: int | None = None
    eval_epochs: int = DEFAULT_EVAL_EPOCHS
    knn_every: int = 5
    knn_k: int = DEFAULT_K
    blur: bool = True

    def resolved(self) -> PretrainConfig:
        """A copy with every default filled in (see :meth:`RunConfig.resolved`) and the
        projector chosen for the model's input kind."""
        values = dataclasses.asdict(self)
        own = {f.name: values.pop(f.name) for f in _OWN_FIELDS}
        if own["pretrain_epochs"] is not None:
            values["epochs"] = own["pretrain_epochs"]
        base = RunConfig(**values).resolved()
        own["pretrain_epochs"] = base.epochs
        if own["projector"] is None:
            own["projector"] = DEFAULT_PROJECTOR[input_kind(base.model)]
        config = PretrainConfig(**dataclasses.asdict(base), **own)
        config.validate_pretraining()
        return config

    def validate_pretraining(self) -> None:
        parse_projector(self.projector)
        if self.bt_lambda < 0:
            raise ValueError(f"--bt-lambda must be >= 0, got {self.bt_lambda}")
        for name in ("eval_epochs", "knn_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.knn_every < 0:
            raise ValueError("--knn-every must be >= 0 (0: only after the last epoch)")


_OWN_FIELDS = tuple(
    f for f in dataclasses.fields(PretrainConfig) if f.name not in RunConfig.__dataclass_fields__
)
