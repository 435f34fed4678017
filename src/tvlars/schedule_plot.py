"""Drawing the learning-rate schedules the paper compares (its Figures 1 and 5).

Panel 1 sets the warm-up schedule (WA: linear warm-up + cosine, Eq. 4) against the
no-warm-up one (NOWA: polynomial decay) and TVLARS's phi(t) (Eq. 8); panel 2 draws phi(t)
for several lambdas. The schedules are the pure functions of :mod:`tvlars.schedules`; this
module only evaluates and draws them. ``tvlars schedule --plot`` and the sweep report's
figure both call :func:`plot_schedules`.

Importing this module is cheap (torch and matplotlib load inside the function), so the
command line can take its defaults from here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# The paper's CIFAR setting: 100 epochs of steps_per_epoch(50_000, 512) = 97 steps.
DEFAULT_EPOCHS = 100.0
DEFAULT_STEPS_PER_EPOCH = 97
# The paper warms up for 20 and delays phi by 10 of its 100 epochs; kept as fractions so
# that any length gets the same shape.
DEFAULT_WARMUP_FRACTION = 0.2
DEFAULT_DELAY_FRACTION = 0.1
DEFAULT_LAMBDAS = (1e-4, 1e-5, 1e-3, 1e-2)


def plot_schedules(
    path: str | os.PathLike[str],
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_steps: int | None = None,
    delay_steps: int | None = None,
    lmbdas: Sequence[float] = DEFAULT_LAMBDAS,
    alpha: float = 1.0,
    floor: float = 0.0,
    power: float = 2.0,
    final_ratio: float = 1e-3,
) -> Path:
    """Write the two-panel schedules figure to ``path`` (PNG) and return the path.

    ``warmup_steps`` and ``delay_steps`` default to the paper's fractions of
    ``total_steps`` (20% and 10%). The first of ``lmbdas`` is the TVLARS curve of panel 1.
    Raises ``ValueError`` for lengths or parameters a schedule refuses.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tvlars.schedules import nowa_schedule, tv_schedule, wa_schedule

    total = total_steps
    spe = steps_per_epoch
    warmup = round(DEFAULT_WARMUP_FRACTION * total) if warmup_steps is None else warmup_steps
    delay = round(DEFAULT_DELAY_FRACTION * total) if delay_steps is None else delay_steps
    if not lmbdas:
        raise ValueError("plot_schedules needs at least one lambda")
    wa = wa_schedule(total, warmup, final_ratio=final_ratio)
    nowa = nowa_schedule(total, power=power)
    phis = {lmbda: tv_schedule(lmbda, alpha=alpha, delay=delay, floor=floor) for lmbda in lmbdas}

    # Enough points for smooth curves without evaluating every step of a long run; the
    # warm-up end and the delay are added so that the corners are drawn where they are.
    linear_steps = np.union1d(
        np.linspace(0, total, min(total + 1, 2001)).round().astype(int),
        [s for s in (warmup, delay) if s <= total],
    )

    fig, (ax_compare, ax_lambdas) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")

    first_lmbda, first_phi = next(iter(phis.items()))
    ax_compare.plot(
        linear_steps, [wa(s) for s in linear_steps], label="WA: warm-up + cosine (Eq. 4)"
    )
    ax_compare.plot(
        linear_steps,
        [nowa(s) for s in linear_steps],
        label=f"NOWA: polynomial, power {power:g}",
    )
    ax_compare.plot(
        linear_steps,
        [first_phi(s) for s in linear_steps],
        label=f"TVLARS φ(t), λ={first_lmbda:g} (Eq. 8)",
    )
    if warmup > 0:
        ax_compare.axvline(warmup, color="0.5", linestyle=":", label=f"warm-up end ({warmup})")
    ax_compare.axvline(delay, color="0.5", linestyle="--", label=f"φ delay d ({delay})")
    ax_compare.set(
        title="LR schedules: WA vs NOWA vs TVLARS",
        xlabel="step",
        ylabel="LR multiplier",
        xlim=(0, total),
        ylim=(0, None),
    )
    ax_compare.secondary_xaxis("top", functions=(lambda s: s / spe, lambda e: e * spe)).set_xlabel(
        f"epoch ({spe} steps each)"
    )
    ax_compare.grid(alpha=0.3)
    ax_compare.legend(fontsize="small")

    positive = [lmbda for lmbda in phis if lmbda > 0]
    # phi decays over about 1/lambda steps, so with lambdas a decade or more apart the fast
    # decays would be squeezed against the left edge of a linear step axis.
    log_steps = len(positive) >= 2 and max(positive) / min(positive) >= 10 and total >= 10
    if log_steps:
        steps = np.unique(np.geomspace(1, total, 800).round().astype(int))
    else:
        steps = linear_steps
    for lmbda, phi in sorted(phis.items(), reverse=True):
        ax_lambdas.plot(steps, [phi(s) for s in steps], label=f"λ={lmbda:g}")
    if 0 < delay <= total or (delay == 0 and not log_steps):
        ax_lambdas.axvline(delay, color="0.5", linestyle="--", label=f"delay d ({delay})")
    if log_steps:
        ax_lambdas.set_xscale("log")
    ax_lambdas.set(
        title=f"TVLARS φ(t) for several λ (α={alpha:g}, floor {floor:g})",
        xlabel="step (log scale)" if log_steps else "step",
        ylabel="LR multiplier φ(t)",
        xlim=(steps[0], total),
        ylim=(0, None),
    )
    ax_lambdas.grid(alpha=0.3, which="both" if log_steps else "major")
    ax_lambdas.legend(fontsize="small")

    fig.suptitle(
        f"{total} steps ({total / spe:.4g} epochs), warm-up {warmup} steps, φ delay {delay} steps"
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return target
