"""LAMB (You et al. 2020): Adam's direction with a layer-wise trust ratio.

For a parameter tensor ``w`` with gradient ``g``, at step count ``s = t + 1``::

    g = g / max(G / c, 1)    with max_grad_norm = c: G is the norm of all gradients together
    m = b1*m + (1-b1)*g;   v = b2*v + (1-b2)*g*g
    mh, vh = m/(1-b1^s), v/(1-b2^s)       (without bias correction: m, v)
    u = mh / (sqrt(vh) + eps)
    adapted:   u = u + wd*w;   r = |w| (clamped into weight_norm_clamp when set)
               trust = r/|u|   if r > 0 and |u| > 0, else 1
    excluded:  trust = 1
    w = w - lr*trust*u
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.graph import increment_version

from tvlars.optim import _native
from tvlars.optim._base import Gathered, LayerStatsCollector, LayerwiseOptimizer, require
from tvlars.optim._grad_clip import clip_factor, global_grad_norm
from tvlars.optim._multi_tensor import (
    Scratch,
    chunks,
    negated_adam_directions,
    on_cpu,
)
from tvlars.optim._paths import (
    FOREACH,
    FUSED,
    NATIVE,
    alias_1d,
    group_by_device_and_dtype,
    norm_dtype,
    run_fused,
)
from tvlars.optim._sharded import NormPairs, local_norm_pairs, whole_values


def _lamb_trust_ratio(
    weight_norm: Tensor, direction_norm: Tensor, weight_norm_clamp: tuple[float, float] | None
) -> Tensor:
    """``r / |u|`` with ``r = |w|`` clamped into ``weight_norm_clamp``; 1 where r or |u| is 0."""
    if weight_norm_clamp is not None:
        weight_norm = weight_norm.clamp(min=weight_norm_clamp[0], max=weight_norm_clamp[1])
    ratio = weight_norm / direction_norm
    return torch.where((weight_norm > 0) & (direction_norm > 0), ratio, torch.ones_like(ratio))


def lamb_tensor(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    values: Sequence[float] | Tensor,
    *,
    weight_norm_clamp: tuple[float, float] | None,
    adapted: bool,
    grad_scale: Tensor | None = None,
):
    """One layer of LAMB. ``values`` holds ``(lr, 1 - beta1^s, 1 - beta2^s, beta1, beta2,
    eps, weight_decay)``; ``grad_scale`` (global gradient clipping) the 0-d tensor
    ``1 / max(G/c, 1)`` that ``g`` is multiplied by first. Returns ``(|w|, |u|, trust)`` for
    adapted layers, else ``None``.

    This function is both the single-tensor reference path (called eagerly, ``values`` a
    tuple of floats) and, through ``torch.compile``, the fused path (``values`` one device
    tensor, so that no number is baked into the compiled code or guarded on).
    """
    lr, bias_correction1, bias_correction2 = values[0], values[1], values[2]
    beta1, beta2, eps, weight_decay = values[3], values[4], values[5], values[6]
    if grad_scale is not None:
        grad = grad * grad_scale
    exp_avg.mul_(beta1).add_((1 - beta1) * grad)
    exp_avg_sq.mul_(beta2).add_((1 - beta2) * grad * grad)
    direction = (exp_avg / bias_correction1) / ((exp_avg_sq / bias_correction2).sqrt() + eps)
    if not adapted:
        param.sub_(lr * direction)
        return None
    direction = direction + weight_decay * param
    accumulate = norm_dtype(param.dtype)
    weight_norm = torch.linalg.vector_norm(param, dtype=accumulate)
    direction_norm = torch.linalg.vector_norm(direction, dtype=accumulate)
    trust = _lamb_trust_ratio(weight_norm, direction_norm, weight_norm_clamp)
    param.sub_(lr * trust * direction)
    return weight_norm, direction_norm, trust


def lamb_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    lr: float,
    bias_correction1: float,
    bias_correction2: float,
    *,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    weight_norm_clamp: tuple[float, float] | None,
    adapted: bool,
    scratch: Scratch | None = None,
    bias_step: float = math.inf,
    norm_pairs: NormPairs = local_norm_pairs,
    grad_scale: Tensor | None = None,
):
    """Multi-tensor form of :func:`lamb_tensor` for tensors of one device and dtype.

    With ``scratch`` (CPU), temporaries are made in its memory instead of fresh tensors,
    and where torch's fused Adam kernel can take the tensors it makes Adam's direction in
    one pass (``bias_step``: the step count s of the bias corrections, ``math.inf`` for
    none; it must match ``bias_correction1/2``). ``norm_pairs`` takes the layer norms
    (of local shards, it adds them up across processes). ``grad_scale``: as in
    :func:`lamb_tensor` (the gradients are scaled into new tensors, or ``scratch``).
    """
    if grad_scale is not None:
        grads = _scaled(grads, grad_scale, scratch)
    if scratch is not None:
        negated = negated_adam_directions(
            scratch, grads, exp_avgs, exp_avg_sqs, bias_step, beta1, beta2, eps
        )
        if negated is not None:
            return _lamb_update(
                params, negated, -1, lr, weight_decay, weight_norm_clamp, adapted, norm_pairs
            )
    torch._foreach_mul_(exp_avgs, beta1)
    torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    if scratch is None:
        denominators = torch._foreach_div(exp_avg_sqs, bias_correction2)
        directions = torch._foreach_div(exp_avgs, bias_correction1)
    else:
        denominators, directions = scratch.like(params, slot=1), scratch.like(params, slot=0)
        for denominator, exp_avg_sq in zip(denominators, exp_avg_sqs):
            torch.div(exp_avg_sq, bias_correction2, out=denominator)
        for direction, exp_avg in zip(directions, exp_avgs):
            torch.div(exp_avg, bias_correction1, out=direction)
    torch._foreach_sqrt_(denominators)
    torch._foreach_add_(denominators, eps)
    torch._foreach_div_(directions, denominators)
    return _lamb_update(
        params, directions, 1, lr, weight_decay, weight_norm_clamp, adapted, norm_pairs
    )


def _scaled(grads: list[Tensor], scale: Tensor, scratch: Scratch | None) -> list[Tensor]:
    """``g * scale`` of each gradient (never in place: ``p.grad`` is the caller's), a
    large layer's in ``scratch`` memory (slot 2: the Adam direction's temporaries take 0
    and 1), a chunk of small ones in fresh tensors by one foreach call."""
    if scratch is None or len(grads) > 1:
        return list(torch._foreach_mul(grads, scale))
    scaled = scratch.like(grads, slot=2)
    torch.mul(grads[0], scale, out=scaled[0])
    return scaled


def _lamb_update(
    params: list[Tensor],
    directions: list[Tensor],
    sign: int,
    lr: float,
    weight_decay: float,
    weight_norm_clamp: tuple[float, float] | None,
    adapted: bool,
    norm_pairs: NormPairs,
):
    """The rest of :func:`lamb_foreach`, from ``directions`` = ``sign`` times Adam's
    direction ``a`` (``sign`` 1 or -1; overwritten): ``u = a + wd*w`` for adapted layers,
    whose norm ``|sign*u|`` is ``|u|``, and ``w <- w - lr*trust*u``."""
    if not adapted:
        torch._foreach_add_(params, directions, alpha=-sign * lr)
        return None
    if weight_decay != 0:
        torch._foreach_add_(directions, params, alpha=sign * weight_decay)
    accumulate = norm_dtype(params[0].dtype)
    weight_norms, direction_norms = norm_pairs(params, directions, accumulate)
    trusts = _lamb_trust_ratio(weight_norms, direction_norms, weight_norm_clamp).unbind(0)
    torch._foreach_mul_(directions, trusts)
    torch._foreach_add_(params, directions, alpha=-sign * lr)
    return weight_norms.unbind(0), direction_norms.unbind(0), trusts


class LAMB(LayerwiseOptimizer):
    r"""Layer-wise Adaptive Moments for Batch training (You et al. 2020).

    .. math::
        w_{t+1} = w_t - \text{lr}\,\frac{\phi(\|w_t\|)}{\|u_t\|}\,u_t,\qquad
        u_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon} + w_d w_t

    Args:
        params: parameters or param groups.
        lr: learning rate.
        betas: coefficients of the first and second moment averages, each in [0, 1).
        eps: added to the denominator (> 0 keeps it away from zero).
        weight_decay: decoupled into the direction ``u`` of adapted parameters.
        bias_correction: divide the moments by ``1 - beta^s``.
        weight_norm_clamp: ``(lo, hi)`` clamp of ``|w|`` in the ratio (authors: (0, 10)).
        exclude_1d, foreach, fused: as in :class:`~tvlars.optim.lars.LARS`.
        max_grad_norm: global gradient clipping (as in the BERT recipes): before the
            moments, every gradient is divided by ``max(G / max_grad_norm, 1)``, ``G``
            the norm of all the step's gradients together (every group; over DTensor
            shards, the whole layers'). One value for the whole optimizer; ``None`` (the
            default) clips nothing. Under ``ZeroRedundancyOptimizer`` each process's LAMB
            holds only some parameters, so its ``G`` would be part of the norm: there clip
            with ``torch.nn.utils.clip_grad_norm_`` before the step instead.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        bias_correction: bool = True,
        weight_norm_clamp: tuple[float, float] | None = None,
        exclude_1d: bool = True,
        *,
        max_grad_norm: float | None = None,
        foreach: bool | None = None,
        fused: bool | str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            weight_norm_clamp=None if weight_norm_clamp is None else tuple(weight_norm_clamp),
            exclude_1d=exclude_1d,
            max_grad_norm=max_grad_norm,
        )
        self._grad_clip_scale: Tensor | None = None  # this step's, see _before_update
        super().__init__(params, defaults, foreach=foreach, fused=fused)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._grad_clip_scale = None
        for group in self.param_groups:
            group.setdefault("max_grad_norm", None)  # a state saved before the option existed

    @classmethod
    def official(cls, params, lr: float, weight_decay: float = 5e-4, **kwargs) -> LAMB:
        """The arithmetic of the TVLARS authors' published LAMB: no bias correction,
        ``|w|`` clamped into [0, 10], every parameter adapted, ``eps=1e-6``. Other keywords
        (``max_grad_norm``, ``betas``, ``foreach``, ``fused``...) pass through."""
        return cls(
            params,
            lr=lr,
            weight_decay=weight_decay,
            bias_correction=False,
            weight_norm_clamp=(0.0, 10.0),
            exclude_1d=False,
            eps=1e-6,
            **kwargs,
        )

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        beta1, beta2 = group["betas"]
        require(0.0 <= beta1 < 1.0, "betas[0]", beta1, "in [0, 1)")
        require(0.0 <= beta2 < 1.0, "betas[1]", beta2, "in [0, 1)")
        require(group["eps"] >= 0.0, "eps", group["eps"], ">= 0")
        require(group["weight_decay"] >= 0.0, "weight_decay", group["weight_decay"], ">= 0")
        clamp = group["weight_norm_clamp"]
        require(
            clamp is None or (len(clamp) == 2 and 0.0 <= clamp[0] <= clamp[1]),
            "weight_norm_clamp",
            clamp,
            "None or (lo, hi) with 0 <= lo <= hi",
        )
        max_norm = group["max_grad_norm"]
        is_number = isinstance(max_norm, (int, float)) and not isinstance(max_norm, bool)
        require(
            max_norm is None or (is_number and 0.0 < max_norm < math.inf),
            "max_grad_norm",
            max_norm,
            "None or a finite number > 0",
        )
        if self.param_groups and self.param_groups[0] is not group:
            first = self.param_groups[0]["max_grad_norm"]
            require(
                max_norm == first,
                "max_grad_norm",
                max_norm,
                f"the same in every param group ({first!r} in the first): the norm it "
                "clips is that of all groups' gradients together",
            )

    def _before_update(
        self, gathered: list[Gathered], collector: LayerStatsCollector | None
    ) -> None:
        """The global gradient clipping: ``G`` over every group's gradients and the factor
        ``max(G / c, 1)``, whose reciprocal the groups' updates scale their gradients by
        (one multiplication per element where a division would cost more: the same value
        within a rounding)."""
        self._grad_clip_scale = None
        max_norm = self.param_groups[0]["max_grad_norm"]
        if any(group["max_grad_norm"] != max_norm for group in self.param_groups[1:]):
            raise ValueError(
                "Invalid max_grad_norm: the param groups hold different values "
                f"({[group['max_grad_norm'] for group in self.param_groups]}); it must be "
                "the same in every group, as it clips the norm of all of them together"
            )
        parts = [(grads, sharded) for _, params, grads, _, sharded in gathered if params]
        if max_norm is None or not parts:
            return
        norm = global_grad_norm(parts)
        factor = clip_factor(norm, max_norm)
        self._grad_clip_scale = factor.reciprocal()
        if collector is not None:
            collector.add_grad_clip(norm, factor)

    def _grad_scale(self, device: torch.device) -> Tensor | None:
        """This step's ``1 / max(G/c, 1)`` on ``device``, or ``None`` without clipping."""
        scale = self._grad_clip_scale
        if scale is None or scale.device == device:
            return scale
        return scale.to(device)

    def _init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def _update_group(
        self, group, params, grads, states, adapted, path, collector, sharded
    ) -> None:
        beta1, beta2 = group["betas"]
        step_count = group["step"] + 1
        if group["bias_correction"]:
            bias_correction1, bias_correction2 = 1 - beta1**step_count, 1 - beta2**step_count
        else:
            bias_correction1 = bias_correction2 = 1.0
        lr = float(group["lr"])
        values = (
            lr,
            bias_correction1,
            bias_correction2,
            beta1,
            beta2,
            group["eps"],
            group["weight_decay"],
        )
        options = dict(
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            weight_norm_clamp=group["weight_norm_clamp"],
        )
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        grad_scale = self._grad_scale(params[0].device)
        norms: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        reported = params  # telemetry names the parameters, not their local shards
        if sharded is not None and path in (FOREACH, NATIVE):
            # Local shards, each bucket whole (one collective per bucket on every process).
            params, grads = sharded.local(params), sharded.local(grads)
            exp_avgs, exp_avg_sqs = sharded.local(exp_avgs), sharded.local(exp_avg_sqs)

        def foreach_over(indices_all: list[int], is_adapted: bool) -> None:
            for bucket in group_by_device_and_dtype(indices_all, params).values():
                cpu_bucket = on_cpu(params[bucket[0]])
                for indices in chunks(bucket, params) if sharded is None else [bucket]:
                    results = lamb_foreach(
                        [params[i] for i in indices],
                        [grads[i] for i in indices],
                        [exp_avgs[i] for i in indices],
                        [exp_avg_sqs[i] for i in indices],
                        lr,
                        bias_correction1,
                        bias_correction2,
                        adapted=is_adapted,
                        scratch=self._scratch if cpu_bucket else None,
                        bias_step=step_count if group["bias_correction"] else math.inf,
                        norm_pairs=(
                            local_norm_pairs if sharded is None else sharded.norm_pairs(indices)
                        ),
                        grad_scale=self._grad_scale(params[bucket[0]].device),
                        **options,
                    )
                    if results is not None:
                        norms.update(zip(indices, zip(*results)))

        adapted_idx = [i for i, a in enumerate(adapted) if a]
        excluded_idx = [i for i, a in enumerate(adapted) if not a]
        if path == NATIVE and sharded is not None:
            self._native_sharded(
                (params, grads, exp_avgs, exp_avg_sqs), adapted, values, group, sharded, collector,
                reported, grad_scale,
            )  # fmt: skip
            return
        if path == NATIVE:
            clamp = group["weight_norm_clamp"] or (math.nan, math.nan)
            _native.lamb_group(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                adapted,
                (*values, *clamp),
                collector,
                lr,
                grad_scale,
            )
        elif path == FOREACH:
            foreach_over(excluded_idx, False)
            foreach_over(adapted_idx, True)
        elif path == FUSED:
            # Excluded layers are small (biases, norms): one foreach call beats per-tensor kernels.
            foreach_over(excluded_idx, False)
            on_device: dict[torch.device, Tensor] = {}
            for i in adapted_idx:
                device = params[i].device
                if device not in on_device:
                    on_device[device] = self._per_step_values(id(group), device, values)
                norms[i] = run_fused(
                    lamb_tensor,
                    device,
                    bool(group["fused"]),
                    alias_1d(params[i]),
                    alias_1d(grads[i]),
                    alias_1d(exp_avgs[i]),
                    alias_1d(exp_avg_sqs[i]),
                    on_device[device],
                    weight_norm_clamp=group["weight_norm_clamp"],
                    adapted=True,
                    grad_scale=self._grad_scale(device),
                )
                increment_version(params[i])
        else:
            for i, is_adapted in enumerate(adapted):
                result = lamb_tensor(
                    params[i],
                    grads[i],
                    exp_avgs[i],
                    exp_avg_sqs[i],
                    values,
                    weight_norm_clamp=group["weight_norm_clamp"],
                    adapted=is_adapted,
                    grad_scale=self._grad_scale(params[i].device),
                )
                if result is not None:
                    # DTensors' norms are DTensors holding each process's part: made whole
                    # at every step, recorded or not, so that telemetry on one process does
                    # not add collectives the others do not make.
                    norms[i] = result if sharded is None else tuple(whole_values(result))

        if collector is not None and norms:
            order = sorted(norms)
            weight_norms, direction_norms, trusts = zip(*(norms[i] for i in order))
            collector.add([reported[i] for i in order], weight_norms, direction_norms, trusts, lr)

    @staticmethod
    def _native_sharded(
        tensors, adapted, values, group, sharded, collector, reported, grad_scale
    ) -> None:
        """The native step of local shards (``tensors``: params, grads and the two moments):
        the first pass (moments, excluded layers whole, sums of squares), the sums added up
        over the processes, the ratios, the second pass. Telemetry names ``reported``."""
        params, grads, exp_avgs, exp_avg_sqs = tensors
        kernels = _native.kernels()
        adapted_idx = [i for i, a in enumerate(adapted) if a]
        sums = kernels.lamb_moments(
            params, grads, exp_avgs, exp_avg_sqs, adapted, values, grad_scale
        )
        norms = sharded.whole_square_sums(sums, adapted_idx).sqrt_()
        compute = torch.float64 if params[0].dtype == torch.float64 else torch.float32
        weight_norms, direction_norms = norms.to(compute).unbind(1)  # as the kernels round
        trusts = _lamb_trust_ratio(weight_norms, direction_norms, group["weight_norm_clamp"])
        kernels.lamb_apply(params, exp_avgs, exp_avg_sqs, adapted, values, trusts)
        _native.bump_versions(params)
        if collector is not None:
            stats = torch.stack((weight_norms, direction_norms, trusts), dim=1).double()
            _native.report_stats(collector, stats, reported, adapted, float(group["lr"]))
