"""The rules of ``tvlars diagnose``: what the per-layer norms of a run say, and what to change.

Each rule takes a :class:`~tvlars.telemetry.run_telemetry.RunTelemetry` and returns findings.
Notation per layer and recorded step ``t``: LWN ``w_t = ||w||``, LGN ``g_t = ||g + wd*w||``
(the norm the trust ratio divides by), LNR ``w_t / g_t``, the step size ``s_t = lr * trust``.
The update before momentum is ``s_t * g_t``; relative to the weights it is

    r_t = s_t * g_t / w_t            (LARS: lr * eta, TVLARS: lr * eta * phi(t), Eq. 2 and 8)

and heavy-ball momentum ``mu`` (LARS, TVLARS, SGD) can add up to ``1 / (1 - mu)`` of it
into one move, so the rules read ``R_t = r_t / (1 - mu)`` (``mu`` from config.json, 0
without it). Section IV of the paper: a layer whose update outgrows its weights diverges
(the upper threshold of observation 3); without warm-up LNR starts high and falls steeply
with the LWN (observation 4); LNR -> inf as LGN -> 0 marks a layer stuck at a sharp minimum.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from tvlars.schedules import tv_sigmoid
from tvlars.telemetry.run_telemetry import Finding, RunTelemetry

#: R_t from which a layer is being thrown around (warning) and moves by its own size (high).
STEP_WARNING, STEP_HIGH = 0.25, 1.0
#: Growth of a layer's weight norm over its first recorded value: warning, high.
GROWTH_WARNING, GROWTH_HIGH = 10.0, 100.0
#: LGN late in the run over its early level: below these the layer has stopped learning.
DEAD_WARNING, DEAD_HIGH = 1e-4, 1e-7
#: Early LNR over the layer's own later level (and its inverse): info, warning.
LNR_INFO, LNR_WARNING = 3.0, 10.0
#: The share of the run that counts as early (Section IV looks at the initial phase).
EARLY_SHARE = 0.1
#: phi(t) falling less than this share of its range over the run is "hardly moving".
PHI_FLAT = 0.1
#: phi(t) within this share of its range above the floor counts as at the floor; reached
#: before PHI_FLOOR_BY of the run, the rest of the run is plain LARS at min_scale x LR.
PHI_AT_FLOOR, PHI_FLOOR_BY = 0.01, 0.5
#: Layers a finding lists at most in its summary line (all are in ``layers``).
_SHOWN = 4

Rule = Callable[[RunTelemetry], list[Finding]]


def _momentum_gain(run: RunTelemetry) -> float:
    """``1 / (1 - mu)`` for heavy-ball optimizers (LARS, TVLARS, SGD), else 1."""
    optimizer = run.setting("optimizer")
    mu = float(run.setting("momentum", 0.0) or 0.0)
    if optimizer in ("lars", "tvlars", "sgd") and 0.0 <= mu < 1.0:
        return 1.0 / (1.0 - mu)
    return 1.0


def _lr_hint(run: RunTelemetry, factor: float | None = None) -> str:
    """The LR knob; with ``factor``, the LR that scales a finding's number back to its
    threshold (a ratio linear in the LR)."""
    lr = run.setting("lr")
    if lr is None:
        return "a lower LR (--lr)"
    if factor is None or not math.isfinite(factor) or factor <= 0:
        return f"a lower LR (--lr, now {lr:g})"
    return f"--lr {lr * factor:.3g} or lower (now {lr:g})"


def _warmup_hint(run: RunTelemetry) -> str:
    if run.setting("schedule") == "warmup-cosine":
        return f"a longer warm-up (--warmup-epochs, now {run.setting('warmup_epochs'):g})"
    if run.setting("optimizer") == "tvlars":
        return "a shorter --delay-epochs or larger lambda (--tv-decay), so phi(t) falls sooner"
    return "warm-up (--schedule warmup-cosine --warmup-epochs N)"


def relative_steps(run: RunTelemetry, layer: str) -> np.ndarray:
    """``R_t = s_t * g_t / w_t / (1 - mu)`` of one layer over its recorded steps."""
    s = run.layers[layer]
    with np.errstate(divide="ignore", invalid="ignore"):
        return s["step_size"] * s["grad_norm"] / s["weight_norm"] * _momentum_gain(run)


def divergence_step(run: RunTelemetry) -> tuple[int | None, list[str]]:
    """The first step from which some layer's LWN or LGN is non-finite for good, and the
    layers that turned then. A row of NaN followed by finite rows is a step the layer had
    no gradient, not a divergence, and is not counted."""
    turned: dict[str, int] = {}
    for name, s in run.layers.items():
        bad = ~(np.isfinite(s["weight_norm"]) & np.isfinite(s["grad_norm"]))
        if not bad[-1] or bad.all():
            continue
        good = np.flatnonzero(~bad)
        turned[name] = int(s["step"][good[-1] + 1])
    if not turned:
        return None, []
    first = min(turned.values())
    return first, [name for name, step in turned.items() if step == first]


def step_above_weight(run: RunTelemetry) -> list[Finding]:
    """A layer's update (with momentum's gain) comparable to its weight norm."""
    if run.setting("optimizer") == "adamw":
        return []  # Adam's step is not s_t * g_t: the ratio means nothing there
    crossed: dict[str, tuple[int, int, float, int]] = {}
    for name, s in run.layers.items():
        r = relative_steps(run, name)
        over = np.flatnonzero(np.isfinite(r) & (r >= STEP_WARNING))
        if over.size:
            peak = int(over[np.argmax(r[over])])
            crossed[name] = (int(s["step"][over[0]]), int(s["step"][over[-1]]), float(r[peak]),
                             int(s["step"][peak]))  # fmt: skip
    if not crossed:
        return []
    names = sorted(crossed, key=lambda n: crossed[n][0])
    peak = max(crossed[n][2] for n in names)
    first = min(crossed[n][0] for n in names)
    high_from = [
        int(run.layers[n]["step"][np.argmax(relative_steps(run, n) >= STEP_HIGH)])
        for n in names
        if crossed[n][2] >= STEP_HIGH
    ]
    values: dict[str, float | int | str] = {
        "peak_relative_step": peak,
        "momentum_gain": _momentum_gain(run),
        "first_step_over_warning": first,
    }
    if high_from:
        values["first_step_over_high"] = min(high_from)
    gain = " with momentum's gain" if _momentum_gain(run) > 1 else ""
    return [
        Finding(
            rule="step-above-weight",
            severity="high" if peak >= STEP_HIGH else "warning",
            layers=tuple(names),
            steps=(first, max(crossed[n][1] for n in names)),
            values=values,
            summary=(
                f"the update of {len(names)} layer(s){gain} reaches {peak:.3g} x the layer's "
                f"weight norm (trust ratio x LR x LGN / LWN; {STEP_WARNING:g} warns, "
                f"{STEP_HIGH:g} is the weights' own size): these layers are thrown around, "
                "the path to divergence (Section IV, observation 3)"
            ),
            suggestion=(
                f"the ratio scales with the LR: {_lr_hint(run, STEP_WARNING / peak)} keeps it "
                f"under {STEP_WARNING:g}; or {_warmup_hint(run)}"
            ),
        )
    ]


def weight_explosion(run: RunTelemetry) -> list[Finding]:
    """LWN growing far above its first recorded value."""
    grown: dict[str, tuple[int, float, int]] = {}
    for name, s in run.layers.items():
        w = s["weight_norm"]
        finite = np.flatnonzero(np.isfinite(w))
        if finite.size < 2 or not w[finite[0]] > 0:
            continue
        growth = w / w[finite[0]]
        over = np.flatnonzero(np.isfinite(growth) & (growth >= GROWTH_WARNING))
        if over.size:
            peak = over[np.argmax(growth[over])]
            high = over[growth[over] >= GROWTH_HIGH]
            grown[name] = (int(s["step"][over[0]]), float(growth[peak]), int(s["step"][peak]),
                           int(s["step"][high[0]]) if high.size else None)  # fmt: skip
    if not grown:
        return []
    names = sorted(grown, key=lambda n: grown[n][0])
    peak = max(grown[n][1] for n in names)
    values: dict[str, float | int | str] = {
        "peak_growth": peak,
        "first_step_over_warning": min(grown[n][0] for n in names),
    }
    high_from = [grown[n][3] for n in names if grown[n][3] is not None]
    if high_from:
        values["first_step_over_high"] = min(high_from)
    return [
        Finding(
            rule="weight-explosion",
            severity="high" if peak >= GROWTH_HIGH else "warning",
            layers=tuple(names),
            steps=(min(grown[n][0] for n in names), max(grown[n][2] for n in names)),
            values=values,
            summary=(
                f"the weight norm of {len(names)} layer(s) grows to {peak:.3g} x its first "
                "value; stable training shrinks LWN gradually (Section IV)"
            ),
            suggestion=(
                f"{_lr_hint(run)}, {_warmup_hint(run)}, or more weight decay (--weight-decay)"
            ),
        )
    ]


def non_finite(run: RunTelemetry) -> list[Finding]:
    """The run diverged: weights or gradients non-finite for good, or a NaN/inf loss."""
    step, turned = divergence_step(run)
    bad_epoch = None
    if run.metrics:
        for row in run.metrics:
            if not math.isfinite(row.get("train_loss", math.nan)):
                bad_epoch = row
                break
    if step is None and bad_epoch is None:
        return []
    values: dict[str, float | int | str] = {}
    if step is not None:
        values["first_non_finite_step"] = step
    if bad_epoch is not None:
        values["first_non_finite_epoch"] = int(bad_epoch["epoch"])
        values["loss"] = bad_epoch["train_loss"]
    if step is None:
        per_epoch = (run.plan or {}).get("steps_per_epoch") or 0
        step = max(int(bad_epoch["step"]) - int(per_epoch), 0)
    leaders = _leaders(run, step) or turned
    return [
        Finding(
            rule="non-finite",
            severity="high",
            layers=tuple(leaders),
            steps=(step, run.last_step),
            values=values,
            summary=(
                f"the run diverged: NaN/inf from step {step}; the first layers to go wrong "
                f"before it: {', '.join(leaders[:_SHOWN]) or 'none seen'}"
            ),
            suggestion=f"{_lr_hint(run)}, or {_warmup_hint(run)}",
        )
    ]


def _leaders(run: RunTelemetry, before: int) -> list[str]:
    """Layers in the order they first went abnormal (R_t >= STEP_WARNING or LWN grown
    GROWTH_WARNING-fold) before step ``before``; those tied for first."""
    first: dict[str, int] = {}
    for name, s in run.layers.items():
        w = s["weight_norm"]
        abnormal = relative_steps(run, name) >= STEP_WARNING
        if np.isfinite(w[0]) and w[0] > 0:
            abnormal |= w / w[0] >= GROWTH_WARNING
        abnormal &= s["step"] < before
        if abnormal.any():
            first[name] = int(s["step"][np.argmax(abnormal)])
    if not first:
        return []
    earliest = min(first.values())
    return [name for name, step in first.items() if step == earliest]


def dead_layer(run: RunTelemetry) -> list[Finding]:
    """LGN collapsing to (nearly) zero: a layer that stopped learning. Not read on a run
    that diverged, whose late rows say nothing of the layers' health."""
    if divergence_step(run)[0] is not None:
        return []
    early_end = _early_end(run)
    dead: dict[str, tuple[float, int]] = {}
    for name, s in run.layers.items():
        g, steps = s["grad_norm"], s["step"]
        finite = np.isfinite(g)
        early = g[finite & (steps < early_end)]
        late = np.flatnonzero(finite & (steps >= early_end))
        if early.size == 0 or late.size < 3:
            continue
        tail = late[-max(3, late.size // 5) :]  # the last fifth of the finite rows
        level = float(np.median(early))
        ratio = float(np.median(g[tail])) / level if level > 0 else math.inf
        if ratio <= DEAD_WARNING:
            dead[name] = (ratio, int(steps[tail[0]]))
    if not dead:
        return []
    names = sorted(dead, key=lambda n: dead[n][0])
    lowest = min(dead[n][0] for n in names)
    return [
        Finding(
            rule="dead-layer",
            severity="high" if lowest <= DEAD_HIGH else "warning",
            layers=tuple(names),
            steps=(min(dead[n][1] for n in names), run.last_step),
            values={"lgn_late_over_early": lowest},
            summary=(
                f"the gradient norm of {len(names)} layer(s) fell to {lowest:.2g} x its early "
                "level: they stopped learning, and LNR -> inf as LGN -> 0 (Section IV: "
                "a layer stuck at a sharp minimum)"
            ),
            suggestion=(
                "--excluded-lr-scale below 1 (batch-norm scales at the full LR can switch a "
                f"layer's output off), or {_lr_hint(run)}"
            ),
        )
    ]


def _early_end(run: RunTelemetry) -> int:
    """First step after the early phase: EARLY_SHARE of the planned (or recorded) run."""
    return max(int(math.ceil(EARLY_SHARE * run.total_steps)), 2)


def early_lnr(run: RunTelemetry) -> list[Finding]:
    """Early LNR far above (spike) or below (collapse) the layer's own later level. Not
    read on a run that diverged: it has no later level."""
    if divergence_step(run)[0] is not None:
        return []
    early_end = _early_end(run)
    later_from = max(early_end, run.last_step // 2)
    ratios: dict[str, tuple[float, float, float]] = {}
    for name, s in run.layers.items():
        lnr, steps = s["norm_ratio"], s["step"]
        usable = np.isfinite(lnr) & (lnr > 0)
        early = lnr[usable & (steps < early_end)]
        later = lnr[usable & (steps >= later_from)]
        if early.size < 2 or later.size < 3:
            continue
        level = float(np.median(later))
        ratios[name] = (float(early.max()) / level, float(early.min()) / level, level)
    findings = []
    spikes = {n: r[0] for n, r in ratios.items() if r[0] >= LNR_INFO}
    collapses = {n: 1.0 / r[1] for n, r in ratios.items() if 1.0 / r[1] >= LNR_INFO}
    for rule, found, word, suggestion in (
        (
            "early-lnr-spike",
            spikes,
            "above",
            f"the early per-layer rate LR x LNR is high: {_warmup_hint(run)} or "
            f"{_lr_hint(run)} bounds it (Section IV, observation 3)",
        ),
        (
            "early-lnr-collapse",
            collapses,
            "below",
            "early gradients are large against the weights, so the trust ratio holds the "
            "layer back early (the warm-up's 'redundant ratio scaling', Section IV-C); if "
            "accuracy lags, TVLARS's early phase (--optimizer tvlars, --delay-epochs) or a "
            "shorter warm-up (--warmup-epochs) moves these layers sooner",
        ),
    ):
        if not found:
            continue
        names = sorted(found, key=found.get, reverse=True)
        factor = found[names[0]]
        findings.append(
            Finding(
                rule=rule,
                severity="warning" if factor >= LNR_WARNING else "info",
                layers=tuple(names),
                steps=(0, early_end - 1),
                values={
                    "factor": factor,
                    "later_lnr": ratios[names[0]][2],
                    "later_from_step": later_from,
                },
                summary=(
                    f"in the first {early_end} steps the LNR of {len(names)} layer(s) goes "
                    f"{factor:.3g} x {word} its own level after step {later_from} "
                    f"({names[0]})"
                ),
                suggestion=suggestion,
            )
        )
    return findings


def phi_schedule(run: RunTelemetry) -> list[Finding]:
    """TVLARS's phi(t) (Eq. 8) over the planned run: hardly moving, or at its floor early."""
    if not (run.setting("optimizer") == "tvlars" or run.setting("schedule") == "tv"):
        return []
    plan = run.plan or {}
    if not {"lmbda", "delay_steps", "min_scale", "total_steps"} <= set(plan):
        return []
    total, lmbda = int(plan["total_steps"]), float(plan["lmbda"])
    if run.setting("preset") == "official" and run.setting("optimizer") == "tvlars":
        alpha, delay, floor = 0.1, -1, 0.0  # TVLARS.official's arithmetic
    else:
        alpha, delay, floor = 1.0, int(plan["delay_steps"]), float(plan["min_scale"])
    phi = np.array([tv_sigmoid(t, lmbda, alpha, delay, floor) for t in range(total)])
    span = phi[0] - floor
    if not span > 0:
        return []
    fall = (phi[0] - phi[-1]) / span
    values = {"lambda": lmbda, "phi_start": float(phi[0]), "phi_end": float(phi[-1]),
              "floor": floor, "total_steps": total}  # fmt: skip
    steps_left = max(total - max(delay, 0), 1)
    if fall < PHI_FLAT:
        wanted = 3.0 / steps_left  # exp(3) ~ 20: phi ends a twentieth of the way above the floor
        return [
            Finding(
                rule="phi-flat",
                severity="warning",
                layers=(),
                steps=(0, total - 1),
                values={**values, "fall": float(fall)},
                summary=(
                    f"phi(t) falls only {fall:.1%} of the way to its floor over the {total} "
                    f"steps: lambda {lmbda:g} is too small for this run's length, which so runs "
                    "as LARS at a constant LR"
                ),
                suggestion=(
                    f"lambda >= {wanted:.3g} (--lmbda), or --tv-decay 3, which sets lambda "
                    "= 3 / (steps after the delay) at any batch size or length"
                ),
            )
        ]
    at_floor = np.flatnonzero(phi - floor <= PHI_AT_FLOOR * span)
    if at_floor.size and at_floor[0] < PHI_FLOOR_BY * total:
        reached = int(at_floor[0])
        return [
            Finding(
                rule="phi-floor-early",
                severity="warning",
                layers=(),
                steps=(reached, total - 1),
                values={**values, "floor_from_step": reached},
                summary=(
                    f"phi(t) reaches its floor at step {reached} of {total} "
                    f"({reached / total:.0%} of the run): the rest runs at min_scale x LR"
                ),
                suggestion=(
                    "a smaller lambda (--lmbda, or --tv-decay K smaller), a longer "
                    "--delay-epochs, or a larger --min-scale for the late phase"
                ),
            )
        ]
    return []


#: Every rule, in the order their findings are listed among equals.
RULES: tuple[Rule, ...] = (
    non_finite,
    step_above_weight,
    weight_explosion,
    dead_layer,
    early_lnr,
    phi_schedule,
)
