"""TVLARS: Time-Varying LARS (the paper's Eq. 8 and Algorithm 1).

TVLARS is LARS whose trust ratio is multiplied by a decaying sigmoid of the step::

    phi(t) = 1 / (alpha + exp(lambda * (t - delay_steps))) + min_scale          (Eq. 8)
    trust  = eta * phi(t) * |w| / |g + wd*w|                        (Algorithm 1, line 6)

so training starts at the full target LR (no warm-up) and decays towards ``min_scale``
(the paper's gamma_min) after ``delay_steps``. ``t`` counts applied steps from 0.
"""

from __future__ import annotations

from typing import Any

from tvlars.optim._base import LayerwiseOptimizer, require
from tvlars.optim.lars import LARS
from tvlars.schedules import tv_sigmoid


class TVLARS(LARS):
    r"""Time-Varying LARS (paper Eq. 8, Algorithm 1).

    .. math::
        \phi(t) = \frac{1}{\alpha + e^{\lambda (t - d_e)}} + \gamma_{\min},\qquad
        \gamma^k_t = \text{lr}\cdot\eta\,\phi(t)\,\frac{\|w^k_t\|}{\|\nabla L(w^k_t) + w_d w^k_t\|}

    Args:
        params: parameters or param groups.
        lr: target learning rate (the paper uses no LR scheduler with TVLARS; any
            ``torch.optim.lr_scheduler`` still may change it).
        momentum, weight_decay, eta, nesterov, exclude_1d, trust_clip, foreach, fused: as
            in :class:`~tvlars.optim.lars.LARS` (``trust_clip`` clips the ratio including
            eta * phi(t) and the norm clamp).
        lmbda: decay rate ``lambda`` of phi per step (paper: 1e-4 classification, 1e-5
            Barlow Twins).
        alpha: ``alpha > 0``; phi starts near ``1/(alpha + 1)`` at ``t = delay_steps``.
        delay_steps: ``d_e`` in steps (the paper delays 10 epochs).
        min_scale: ``gamma_min``, the floor phi decays to (paper: ``B/256 * 1e-3``).
        norm_clamp: clamp |w| and |g'| to at most this before the ratio (authors' code: 10).
        schedule_excluded: multiply excluded (1-D) updates by phi(t) too.

    ``t`` is saved in ``state_dict`` (each param group's ``step``): a resumed run continues
    phi(t) where it stopped. A step skipped by ``torch.amp.GradScaler`` does not advance t.
    """

    def __init__(
        self,
        params,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        eta: float = 1e-3,
        lmbda: float = 1e-4,
        alpha: float = 1.0,
        delay_steps: int = 0,
        min_scale: float = 0.0,
        norm_clamp: float | None = None,
        schedule_excluded: bool = True,
        nesterov: bool = False,
        exclude_1d: bool = True,
        *,
        trust_clip: bool = False,
        foreach: bool | None = None,
        fused: bool | str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=eta,
            nesterov=nesterov,
            exclude_1d=exclude_1d,
            lmbda=lmbda,
            alpha=alpha,
            delay_steps=delay_steps,
            min_scale=min_scale,
            norm_clamp=norm_clamp,
            schedule_excluded=schedule_excluded,
            trust_clip=trust_clip,
        )
        # LARS's constructor only assembles its defaults; TVLARS assembles a superset.
        LayerwiseOptimizer.__init__(self, params, defaults, foreach=foreach, fused=fused)

    @classmethod
    def official(
        cls, params, lr: float, lmbda: float = 1e-3, weight_decay: float = 5e-4, **kwargs
    ) -> TVLARS:
        """The arithmetic of the authors' published code.

        Their code computes ``1 / (0.1 + exp(lambda * (t + 1)))``, clamps both norms to at
        most 10 and leaves the excluded parameters unscaled: ``alpha=0.1,
        delay_steps=-1, min_scale=0, norm_clamp=10, schedule_excluded=False``. Other
        keywords (``trust_clip``, ``nesterov``, ``foreach``, ``fused``...) pass through.
        """
        return cls(
            params,
            lr=lr,
            momentum=0.9,
            weight_decay=weight_decay,
            eta=1e-3,
            lmbda=lmbda,
            alpha=0.1,
            delay_steps=-1,
            min_scale=0.0,
            norm_clamp=10.0,
            schedule_excluded=False,
            **kwargs,
        )

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        require(
            group["alpha"] > 0.0,
            "alpha",
            group["alpha"],
            "> 0, so that alpha + exp(...) stays positive",
        )
        require(group["lmbda"] >= 0.0, "lmbda", group["lmbda"], ">= 0")
        require(group["min_scale"] >= 0.0, "min_scale", group["min_scale"], ">= 0")
        require(
            group["norm_clamp"] is None or group["norm_clamp"] > 0.0,
            "norm_clamp",
            group["norm_clamp"],
            "None or > 0",
        )
        require(
            float(group["delay_steps"]).is_integer(),
            "delay_steps",
            group["delay_steps"],
            "a whole number of steps",
        )

    def phi(self, step: int | None = None, group: dict[str, Any] | None = None) -> float:
        """phi(t) of Eq. 8 for a param group (the first by default) at ``step`` (its
        current step count by default)."""
        group = self.param_groups[0] if group is None else group
        step = group["step"] if step is None else step
        return tv_sigmoid(
            step, group["lmbda"], group["alpha"], group["delay_steps"], group["min_scale"]
        )

    def _scales(self, group: dict[str, Any]) -> tuple[float, float, float | None]:
        phi = self.phi(group=group)
        return phi, (phi if group["schedule_excluded"] else 1.0), group["norm_clamp"]
