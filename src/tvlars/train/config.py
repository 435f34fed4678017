"""The configuration of one training run: every knob, its default, and what follows from it.

A :class:`RunConfig` comes from command-line flags or a TOML file with the same keys; its
hash names the run (:meth:`RunConfig.run_id`), so a sweep can tell finished cells apart.
:class:`Plan` holds what the data and the config together imply: steps, the target LR,
TVLARS's lambda and delay in steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from tvlars.errors import UserError
from tvlars.schedules import epochs_to_steps

OPTIMIZERS = ("tvlars", "lars", "lamb", "sgd", "adamw")
SCHEDULES = ("none", "warmup-cosine", "poly", "tv")
PRESETS = ("paper", "official")
PRECISIONS = ("fp32", "bf16", "fp16")
LR_SCALINGS = ("none", "linear256")

#: The model each dataset trains by default (the paper's choice where it made one).
DEFAULT_MODEL = {
    "mnist1d": "mnist1d-resnet",
    "synthetic": "resnet18-cifar",
    "cifar10": "resnet18",
    "cifar100": "resnet18",
    "tinyimagenet": "resnet34",
}
#: The schedule each optimizer runs by default: TVLARS carries phi(t) itself (no
#: scheduler, as in the paper); the baselines warm up (WA).
DEFAULT_SCHEDULE = {
    "tvlars": "none",
    "lars": "warmup-cosine",
    "lamb": "warmup-cosine",
    "sgd": "warmup-cosine",
    "adamw": "warmup-cosine",
}
DEFAULT_LR = {"tvlars": 2.0, "lars": 2.0, "lamb": 1e-2, "sgd": 0.1, "adamw": 1e-3}


@dataclass
class RunConfig:
    """Every setting of a training run. ``None`` means "the default for this dataset or
    optimizer", resolved by :meth:`resolved`."""

    dataset: str = "mnist1d"
    data_dir: str | None = None
    num_samples: int | None = None
    model: str | None = None
    init: str = "kaiming_uniform"
    optimizer: str = "tvlars"
    preset: str = "paper"
    schedule: str | None = None
    lr: float | None = None
    lr_scaling: str = "none"
    batch_size: int = 512
    micro_batch: int | None = None
    epochs: int = 30
    warmup_epochs: float | None = None
    lmbda: float = 1e-4
    tv_decay: float | None = None
    delay_epochs: float | None = None
    min_scale: float | None = None
    excluded_lr_scale: float = 1.0
    weight_decay: float = 5e-4
    momentum: float = 0.9
    trust_clip: bool = False
    max_grad_norm: float | None = None
    seed: int = 0
    threads: int | None = None
    precision: str = "fp32"
    device: str = "auto"
    compile: bool = False
    telemetry_every: int = 1
    tensorboard: bool = False
    out: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # Keys that change where or how fast a run goes, not what it computes: left out of
    # the run id so that the same experiment resumes from any folder with any threads.
    _NOT_HASHED = ("out", "threads", "data_dir", "device", "extra", "tensorboard")
    # Keys added after runs had ids: hashed only when set, so that those ids stay the same.
    _HASHED_UNLESS_DEFAULT = (("trust_clip", False), ("max_grad_norm", None))

    def resolved(self) -> RunConfig:
        """A copy with every ``None`` default filled in and every value validated."""
        values = dataclasses.asdict(self)
        values["dataset"] = values["dataset"].lower().replace("_", "").replace("-", "")
        if values["model"] is None:
            values["model"] = DEFAULT_MODEL.get(values["dataset"], "resnet18")
        if values["schedule"] is None:
            values["schedule"] = DEFAULT_SCHEDULE.get(values["optimizer"], "none")
        # The paper warms up for 20 of 100 epochs and delays phi(t) by 10: the same shares.
        if values["warmup_epochs"] is None:
            values["warmup_epochs"] = 0.2 * values["epochs"]
        if values["delay_epochs"] is None:
            values["delay_epochs"] = 0.1 * values["epochs"]
        if values["lr"] is None:
            values["lr"] = DEFAULT_LR.get(values["optimizer"], 1.0)
        config = RunConfig(**values)
        config.validate()
        return config

    def validate(self) -> None:
        def choose(name: str, value: str, options: tuple[str, ...]) -> None:
            if value not in options:
                raise ValueError(f"--{name.replace('_', '-')} {value!r}: choose one of {options}")

        choose("optimizer", self.optimizer, OPTIMIZERS)
        choose("schedule", self.schedule, SCHEDULES)
        choose("preset", self.preset, PRESETS)
        choose("precision", self.precision, PRECISIONS)
        choose("lr_scaling", self.lr_scaling, LR_SCALINGS)
        positive = {
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "telemetry_every": self.telemetry_every,
        }
        for name in ("micro_batch", "threads"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        for name in (
            "lr",
            "warmup_epochs",
            "delay_epochs",
            "excluded_lr_scale",
            "weight_decay",
            "lmbda",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
        if self.warmup_epochs >= self.epochs and self.schedule == "warmup-cosine":
            raise ValueError(
                f"--warmup-epochs {self.warmup_epochs} must be below --epochs {self.epochs}"
            )
        if self.tv_decay is not None and self.tv_decay <= 0:
            raise ValueError("--tv-decay must be > 0")
        if self.tensorboard:
            from tvlars.telemetry.tensorboard import require_tensorboard

            try:
                require_tensorboard()
            except ImportError as error:
                raise ValueError(f"--tensorboard: {error}") from None
        if self.trust_clip and self.optimizer not in ("lars", "tvlars"):
            raise ValueError(
                f"--trust-clip applies to --optimizer lars or tvlars, not {self.optimizer!r}"
            )
        if self.max_grad_norm is not None:
            if self.optimizer != "lamb":
                raise ValueError(
                    f"--max-grad-norm applies to --optimizer lamb, not {self.optimizer!r}"
                )
            if not 0 < self.max_grad_norm < math.inf:
                raise ValueError(f"--max-grad-norm must be > 0, got {self.max_grad_norm}")

    def hashed_items(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        unset = {k: v for k, v in self._HASHED_UNLESS_DEFAULT if values.get(k, v) == v}
        return {
            k: v for k, v in sorted(values.items()) if k not in self._NOT_HASHED and k not in unset
        }

    def run_id(self) -> str:
        """A stable name of what this run computes: the same settings give the same id."""
        text = json.dumps(self.resolved().hashed_items(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "configuration") -> RunConfig:
        """The config with these keys, each checked against its field's type; ``source``
        (a file name, ``--set``) starts any error message."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(
                f"{source}: unknown configuration keys {unknown}; known keys: {sorted(known)}"
            )
        check_types(cls, values, source)
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        """Read the same keys as the command-line flags (``batch_size`` or ``batch-size``)."""
        values = read_toml(
            path, f"--config {path}", "give the path of a TOML file with the keys of the flags"
        )
        return cls.from_dict({k.replace("-", "_"): v for k, v in values.items()}, str(path))


def read_toml(path: str | Path, name: str, hint: str) -> dict[str, Any]:
    """The TOML file at ``path``; :class:`UserError` starting with ``name`` if it cannot be
    read (ending with ``hint``, the way out) or is not valid TOML."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise UserError(f"{name}: cannot read it ({error.strerror or error}); {hint}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(
            f"{name} is not valid TOML ({error}); fix the file (see https://toml.io: strings "
            "in quotes, true/false in lower case)"
        ) from None


def check_types(config_class: type, values: dict[str, Any], source: str) -> None:
    """Raise :class:`UserError` for any value that is not of its field's annotated type.

    The types come from the dataclass's annotations, so every field is checked, including
    those added later. A bool must be a bool (TOML ``true``/``false``: a string such as
    ``"false"`` is refused, not read as true); an int field takes only integers (``1.5``
    is refused); a float field takes integers too; ``X | None`` also takes ``None``.
    """
    hints = typing.get_type_hints(config_class)
    for key, value in values.items():
        expected = hints.get(key)
        if expected is None or _has_type(value, expected):
            continue
        raise UserError(
            f"{source}: {key} = {value!r} is {_kind(value)}, expected {_type_name(expected)}"
        )


def _options(expected) -> tuple:
    if isinstance(expected, types.UnionType) or typing.get_origin(expected) is typing.Union:
        return typing.get_args(expected)
    return (expected,)


#: The annotations :func:`check_types` knows; a value for any other (a Literal, a class
#: of its own) is left to the config's own validation rather than refused here.
_CHECKED = (bool, int, float, str, dict, list, tuple, type(None))


def _has_type(value: Any, expected) -> bool:
    for option in _options(expected):
        origin = typing.get_origin(option) or option
        if option is Any or origin not in _CHECKED:
            return True
        if origin in (list, tuple) and isinstance(value, list | tuple):
            return True  # TOML has arrays only
        if option is type(None) and value is None:
            return True
        if origin is bool and isinstance(value, bool):
            return True
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if origin in (str, dict, list, tuple) and isinstance(value, origin):
            return True
    return False


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a decimal number", str: "a string"}
    return names.get(type(value), f"a {type(value).__name__}")


def _type_name(expected) -> str:
    names = {
        bool: "a boolean (true or false, without quotes)",
        int: "an integer",
        float: "a number",
        str: "a string (in quotes)",
        dict: "a table",
    }
    # None is the "leave it to the default" value: no file or flag gives it.
    options = [o for o in _options(expected) if o is not type(None)]
    return " or ".join(
        names.get(typing.get_origin(o) or o, getattr(o, "__name__", str(o))) for o in options
    )


@dataclass(frozen=True)
class Plan:
    """What the resolved config and the data imply, all in optimizer steps."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    delay_steps: int
    lmbda: float
    min_scale: float
    target_lr: float
    micro_batch: int
    accumulation_steps: int

    @classmethod
    def make(cls, config: RunConfig, num_train: int, world_size: int) -> Plan:
        steps_per_epoch = num_train // config.batch_size
        if steps_per_epoch == 0:
            raise ValueError(
                f"--batch-size {config.batch_size} exceeds the {num_train} training samples"
            )
        per_rank, remainder = divmod(config.batch_size, world_size)
        if remainder:
            raise ValueError(
                f"--batch-size {config.batch_size} must be divisible by the {world_size} processes"
            )
        micro_batch = min(config.micro_batch or per_rank, per_rank)
        if per_rank % micro_batch:
            raise ValueError(
                f"--micro-batch {micro_batch} must divide the per-process batch {per_rank}"
            )
        total = steps_per_epoch * config.epochs
        delay = epochs_to_steps(config.delay_epochs, steps_per_epoch)
        if config.tv_decay is not None:
            # Same K, same shape of phi at every batch size: phi falls over the steps left.
            lmbda = config.tv_decay / max(total - delay, 1)
        else:
            lmbda = config.lmbda
        min_scale = config.min_scale
        if min_scale is None:
            min_scale = config.batch_size / 256 * 1e-3  # the paper's gamma_min
        scale = config.batch_size / 256 if config.lr_scaling == "linear256" else 1.0
        return cls(
            steps_per_epoch=steps_per_epoch,
            total_steps=total,
            warmup_steps=epochs_to_steps(config.warmup_epochs, steps_per_epoch),
            delay_steps=delay,
            lmbda=lmbda,
            min_scale=min_scale,
            target_lr=config.lr * scale,
            micro_batch=micro_batch,
            accumulation_steps=per_rank // micro_batch,
        )
