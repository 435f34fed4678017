"""Learning-rate schedules as pure functions of the optimizer step, kept apart from any optimizer.

A schedule maps a step ``t`` (a count of optimizer steps, starting at 0) to a multiplier of
the target learning rate, in the style of optax. Keeping schedules out of the optimizers lets
any of them drive any optimizer through :class:`ScheduleLR`: TVLARS's phi(t) can drive LAMB or
SGD ("TV-LAMB"), and warm-up + cosine can drive TVLARS.

Equation numbers refer to the TVLARS paper ("Revisiting LARS for Large Batch Training
Generalization of Neural Networks"): Eq. 4 is linear warm-up followed by cosine decay, Eq. 8
is the time-varying sigmoid phi(t).

The step functions take Python numbers and compute in float64 with the ``math`` module;
:func:`tv_sigmoid` in particular runs on every TVLARS step, so it stays free of torch and numpy.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "Schedule",
    "ScheduleLR",
    "constant",
    "epochs_to_steps",
    "nowa_schedule",
    "polynomial",
    "steps_per_epoch",
    "tv_schedule",
    "tv_sigmoid",
    "wa_schedule",
    "warmup_cosine",
]

Schedule = Callable[[int], float]
"""A learning-rate multiplier as a function of the optimizer step."""


def _is_int(value: object) -> bool:
    # bool is an Integral, but passing True as a step count is always a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_step(step: float) -> None:
    if not step >= 0:
        raise ValueError(f"step must be >= 0, got {step!r}")


def _check_warmup_cosine(total: float, warmup: float) -> None:
    if not warmup >= 0:
        raise ValueError(f"warmup must be >= 0, got {warmup!r}")
    if not total > warmup:
        raise ValueError(f"total must be > warmup, got total={total!r}, warmup={warmup!r}")


def _check_polynomial(total: float, power: float) -> None:
    if not total > 0:
        raise ValueError(f"total must be > 0, got {total!r}")
    # power = 0 would hold `peak` forever and never reach `final` at `total`.
    if not power > 0:
        raise ValueError(f"power must be > 0, got {power!r}")


def _check_tv_sigmoid(lmbda: float, alpha: float) -> None:
    # `not x > 0` rather than `x <= 0` so that NaN is rejected too.
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if not 0 <= lmbda < math.inf:
        raise ValueError(f"lmbda must be finite and >= 0, got {lmbda!r}")


def constant(step: int | float, value: float = 1.0) -> float:
    """Constant schedule: ``f(t) = value`` for every step ``t``."""
    return float(value)


def warmup_cosine(
    step: int | float,
    total: int | float,
    warmup: int | float,
    peak: float = 1.0,
    final: float = 0.0,
) -> float:
    """Linear warm-up followed by cosine decay (paper Eq. 4).

    With ``t = step``, ``T = total`` and ``W = warmup``::

        t <  W:       f(t) = peak * t / W
        W <= t < T:   q = (1 + cos(pi * (t - W) / (T - W))) / 2
                      f(t) = peak * q + final * (1 - q)
        t >= T:       f(t) = final

    So ``f(0) = 0``, ``f(W) = peak`` and ``f(T) = final``. ``warmup = 0`` means no warm-up
    (the decay starts at ``peak`` on step 0).

    Raises:
        ValueError: unless ``total > warmup >= 0`` and ``step >= 0``.
    """
    _check_warmup_cosine(total, warmup)
    _check_step(step)
    if step < warmup:
        return peak * step / warmup
    if step >= total:
        return float(final)
    q = (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2.0
    return peak * q + final * (1.0 - q)


def polynomial(
    step: int | float,
    total: int | float,
    peak: float = 1.0,
    final: float = 0.0,
    power: float = 2.0,
) -> float:
    """Polynomial decay from ``peak`` to ``final`` over ``total`` steps, then held at ``final``.

    The schedule of the paper's no-warm-up (NOWA) baselines::

        f(t) = (peak - final) * (1 - min(t, T) / T) ** power + final

    Raises:
        ValueError: unless ``total > 0``, ``power > 0`` and ``step >= 0``.
    """
    _check_polynomial(total, power)
    _check_step(step)
    return (peak - final) * (1.0 - min(step, total) / total) ** power + final


def tv_sigmoid(
    step: int | float,
    lmbda: float,
    alpha: float = 1.0,
    delay: int | float = 0,
    floor: float = 0.0,
) -> float:
    """TVLARS's time-varying multiplier phi(t) (paper Eq. 8).

    ::

        phi(t) = 1 / (alpha + exp(lmbda * (t - delay))) + floor

    phi falls from about ``1 / alpha + floor`` well before ``delay`` through
    ``phi(delay) = 1 / (alpha + 1) + floor`` to ``floor`` (the paper's gamma_min) well after
    it; ``lmbda`` (per step) sets how fast, the fall taking a few times ``1 / lmbda`` steps.

    Never overflows: where ``exp`` would exceed the float64 range (``lmbda * (t - delay)``
    above about 709.78), the first term is below 1e-308 and the result is exactly ``floor``.

    Raises:
        ValueError: unless ``alpha > 0`` and ``lmbda`` is finite and ``>= 0``.
    """
    # Checks inlined rather than shared with tv_schedule: this runs on every TVLARS step.
    # `not x > 0` rather than `x <= 0` so that NaN is rejected too.
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    # A chained comparison rather than math.isfinite: one check, and inf * 0 at t = delay
    # would make phi NaN.
    if not 0 <= lmbda < math.inf:
        raise ValueError(f"lmbda must be finite and >= 0, got {lmbda!r}")
    try:
        growth = math.exp(lmbda * (step - delay))
    except OverflowError:
        return float(floor)
    return 1.0 / (alpha + growth) + floor


def steps_per_epoch(num_samples: int, batch_size: int, drop_last: bool = True) -> int:
    """Optimizer steps in one pass over ``num_samples`` samples at ``batch_size``.

    ``floor(num_samples / batch_size)`` when ``drop_last`` (the last partial batch is skipped,
    as ``torch.utils.data.DataLoader(drop_last=True)`` does), else
    ``ceil(num_samples / batch_size)``.

    Raises:
        ValueError: unless both are positive integers, or when ``drop_last`` would leave an
            epoch with no step (``batch_size > num_samples``).
    """
    if not _is_int(num_samples) or num_samples <= 0:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if not _is_int(batch_size) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if drop_last:
        if batch_size > num_samples:
            raise ValueError(
                f"batch_size ({batch_size}) exceeds num_samples ({num_samples}): "
                "with drop_last=True an epoch would have no step"
            )
        return int(num_samples // batch_size)
    return int(-(-num_samples // batch_size))


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps in ``epochs`` epochs: ``round(epochs * steps_per_epoch)``.

    Fractional epochs are allowed; halves round up (``floor(x + 0.5)``) rather than to even,
    so that the result does not depend on the parity of the product.

    Raises:
        ValueError: unless ``epochs`` is a finite number >= 0 and ``steps_per_epoch`` a
            positive integer.
    """
    if (
        not isinstance(epochs, numbers.Real)
        or isinstance(epochs, bool)
        or not math.isfinite(epochs)
        or epochs < 0
    ):
        raise ValueError(f"epochs must be a finite number >= 0, got {epochs!r}")
    if not _is_int(steps_per_epoch) or steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
    return int(math.floor(epochs * steps_per_epoch + 0.5))


def wa_schedule(total_steps: int, warmup_steps: int, final_ratio: float = 1e-3) -> Schedule:
    """The paper's warm-up (WA) schedule: :func:`warmup_cosine` with ``peak = 1`` (Eq. 4).

    ``f(t) = warmup_cosine(t, total_steps, warmup_steps, peak=1, final=final_ratio)``: linear
    warm-up to the target learning rate, then cosine decay to ``final_ratio`` times it (1e-3
    in the paper's Section VI-A).

    Raises:
        ValueError: unless ``total_steps > warmup_steps >= 0`` and ``final_ratio >= 0``.
    """
    _check_warmup_cosine(total_steps, warmup_steps)
    if not final_ratio >= 0:
        raise ValueError(f"final_ratio must be >= 0, got {final_ratio!r}")
    return partial(warmup_cosine, total=total_steps, warmup=warmup_steps, final=final_ratio)


def nowa_schedule(total_steps: int, power: float = 2.0) -> Schedule:
    """The paper's no-warm-up (NOWA) schedule: :func:`polynomial` from 1 to 0.

    ``f(t) = (1 - min(t, T) / T) ** power`` with ``T = total_steps``: training starts at the
    target learning rate and decays polynomially to zero.

    Raises:
        ValueError: unless ``total_steps > 0`` and ``power > 0``.
    """
    _check_polynomial(total_steps, power)
    return partial(polynomial, total=total_steps, power=power)


def tv_schedule(
    lmbda: float, alpha: float = 1.0, delay: int | float = 0, floor: float = 0.0
) -> Schedule:
    """TVLARS's phi(t) as a schedule (paper Eq. 8).

    ``f(t) = 1 / (alpha + exp(lmbda * (t - delay))) + floor``; see :func:`tv_sigmoid`. Wrapped
    in :class:`ScheduleLR` it gives phi(t) to optimizers other than TVLARS (e.g. TV-LAMB).

    Raises:
        ValueError: unless ``alpha > 0`` and ``lmbda`` is finite and ``>= 0``.
    """
    _check_tv_sigmoid(lmbda, alpha)
    return partial(tv_sigmoid, lmbda=lmbda, alpha=alpha, delay=delay, floor=floor)


class ScheduleLR(LRScheduler):
    """Drives any torch optimizer's learning rates with a schedule of this module.

    Every param group's learning rate becomes ``lr_t = initial_lr * schedule(t)``, where
    ``initial_lr`` is the group's learning rate when the scheduler was created and ``t`` is
    :attr:`last_epoch`, which counts :meth:`step` calls. Call :meth:`step` once per
    *optimizer* step (after ``optimizer.step()``), not once per epoch: schedules are in
    steps. Creating the scheduler applies ``schedule(0)`` right away, so with a warm-up
    schedule the first optimizer step runs at learning rate 0.

    This is how the pieces combine: ``ScheduleLR(LAMB(...), tv_schedule(1e-3))`` is TV-LAMB,
    ``ScheduleLR(torch.optim.SGD(...), tv_schedule(...))`` gives SGD phi(t), and
    ``ScheduleLR(TVLARS(...), wa_schedule(T, W))`` adds warm-up to TVLARS on top of its own
    phi(t).

    A group whose ``lr`` is a tensor keeps that tensor, filled in place: compiled and
    capturable optimizers read the tensor they were given.

    :meth:`state_dict` leaves the schedule out: it may be a lambda, which does not pickle, and
    a schedule is a pure function of the step, so the step count is all there is to resume.
    Pass the same schedule when re-creating the scheduler before :meth:`load_state_dict`.

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        schedule: the multiplier as a function of the step, e.g. from :func:`wa_schedule`.
        last_epoch: the last step already taken; ``-1`` (default) starts a new run.
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule, last_epoch: int = -1) -> None:
        if not callable(schedule):
            raise TypeError(f"schedule must be callable, got {type(schedule).__name__}")
        self.schedule = schedule
        if last_epoch == -1 and isinstance(optimizer, Optimizer):
            # Some torch versions store the group's own lr tensor as initial_lr; filling the lr
            # in place would then rescale the base lr too and compound the schedule.
            for group in optimizer.param_groups:
                lr = group["lr"]
                group.setdefault("initial_lr", lr.clone() if isinstance(lr, torch.Tensor) else lr)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        """``initial_lr * schedule(last_epoch)`` for every param group."""
        factor = self.schedule(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state (step count, base and last learning rates), without the
        schedule and the optimizer."""
        return {
            key: value
            for key, value in self.__dict__.items()
            if key not in ("optimizer", "schedule")
        }
