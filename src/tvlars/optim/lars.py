"""LARS (You et al. 2017; the paper's Eq. 2), and the update TVLARS shares with it.

For a parameter tensor ``w`` (one layer) with gradient ``g``::

    adapted:   g' = g + wd*w
               trust = eta * scale * |w| / |g'|     if |w| > 0 and |g'| > 0, else 1
               trust = min(trust / lr, 1)  (lr = 0: 1)    with trust_clip (LARC)
               d = trust * g'
    excluded:  d = excluded_scale * g

    heavy ball (default):   m = mu*m + d;   w = w - lr*m
    nesterov (Algorithm 1): y = w - lr*d;   w = y + mu*(y - y_prev);   y_prev = y

LARS has ``scale = excluded_scale = 1``; TVLARS (``tvlars.optim.tvlars``) sets both to
phi(t) and may clamp the two norms.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.graph import increment_version

from tvlars.optim import _native
from tvlars.optim._base import LayerStatsCollector, LayerwiseOptimizer, require
from tvlars.optim._multi_tensor import (
    Scratch,
    chunks,
    decayed_gradients,
    heavy_ball_step,
    scratch_for,
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
from tvlars.optim._sharded import NormPairs, ShardedLayers, local_norm_pairs, whole_values

# --------------------------------------------------------------------------- momentum


def _apply_momentum(
    param: Tensor, update: Tensor, buffer: Tensor | None, lr, momentum: float, nesterov: bool
) -> None:
    """``w <- w - lr*m`` after ``m <- mu*m + d`` (heavy ball), or the Nesterov form of
    Algorithm 1 (lines 7-8) where ``buffer`` holds ``y_prev``."""
    if buffer is None:
        param.sub_(lr * update)
    elif nesterov:
        lookahead = param - lr * update
        param.copy_(lookahead + momentum * (lookahead - buffer))
        buffer.copy_(lookahead)
    else:
        buffer.mul_(momentum).add_(update)
        param.sub_(lr * buffer)


def _apply_momentum_foreach(
    params: list[Tensor],
    updates: list[Tensor],
    buffers: list[Tensor | None],
    lr: float,
    momentum: float,
    nesterov: bool,
    overwrite_updates: bool,
) -> None:
    """Multi-tensor form of :func:`_apply_momentum` (same arithmetic, same order).

    ``overwrite_updates``: the updates are this step's own temporaries (not gradients), so
    the Nesterov form may build its lookahead in them instead of in fresh memory.
    """
    if buffers[0] is None:
        torch._foreach_add_(params, updates, alpha=-lr)
    elif nesterov:
        # y = w - lr*d;  w = y + mu*(y - y_prev);  y_prev = y. Sign flips are exact, so
        # w + (-lr*d) is w - lr*d and (y_prev - y)*(-mu) is mu*(y - y_prev), bit for bit.
        if overwrite_updates:
            lookaheads = updates
            torch._foreach_mul_(lookaheads, -lr)
        else:
            lookaheads = torch._foreach_mul(updates, -lr)
        torch._foreach_add_(lookaheads, params)
        torch._foreach_sub_(buffers, lookaheads)
        torch._foreach_mul_(buffers, -momentum)
        torch._foreach_copy_(params, lookaheads)
        torch._foreach_add_(params, buffers)
        torch._foreach_copy_(buffers, lookaheads)
    else:
        heavy_ball_step(params, updates, buffers, lr, momentum)


# ------------------------------------------------------------------ per-tensor updates


def _trust_ratio(
    weight_norm: Tensor, direction_norm: Tensor, coefficient, norm_clamp: float | None
) -> Tensor:
    """``coefficient * |w| / |g'|`` with both norms clamped to ``norm_clamp`` when set, and
    1 where either norm is zero (Eq. 2; Algorithm 1, line 6 with coefficient eta*phi(t))."""
    if norm_clamp is not None:
        weight_norm = weight_norm.clamp(max=norm_clamp)
        direction_norm = direction_norm.clamp(max=norm_clamp)
    ratio = coefficient * weight_norm / direction_norm
    return torch.where((weight_norm > 0) & (direction_norm > 0), ratio, torch.ones_like(ratio))


def clip_to_lr(trust: Tensor, lr) -> Tensor:
    """LARC's clip of a trust ratio at the LR: ``min(trust / lr, 1)``, and 1 where ``lr = 0``
    (apex's LARC ``clip=True``), so that a layer's rate ``lr * trust`` is at most ``lr``.

    ``lr`` is a float (eager paths: decided on the host) or a 0-d device tensor (the fused
    path, where it is one of the per-step values)."""
    if isinstance(lr, Tensor):
        clipped = (trust / lr).clamp(max=1.0)
        return torch.where(lr > 0, clipped, torch.ones_like(clipped))
    if lr > 0:
        return (trust / lr).clamp_(max=1.0)
    return torch.ones_like(trust)


def lars_adapted_tensor(
    param: Tensor,
    grad: Tensor,
    buffer: Tensor | None,
    values: Sequence[float] | Tensor,
    *,
    norm_clamp: float | None,
    nesterov: bool,
    trust_clip: bool = False,
):
    """One adapted layer: ``d = eta*scale*|w|/|g'| * g'`` with ``g' = g + wd*w`` (the ratio
    clipped to ``min(ratio/lr, 1)`` with ``trust_clip``), then momentum. ``values`` holds
    ``(lr, eta*scale, momentum, weight_decay)``. Returns ``(|w|, |g'|, trust)`` as 0-d
    tensors, for telemetry (trust as applied).

    This function is both the single-tensor reference path (called eagerly, ``values`` a
    tuple of floats) and, through ``torch.compile``, the fused path (``values`` one device
    tensor, so that no number is baked into the compiled code or guarded on).
    """
    lr, coefficient, momentum, weight_decay = values[0], values[1], values[2], values[3]
    direction = grad + weight_decay * param
    accumulate = norm_dtype(param.dtype)
    weight_norm = torch.linalg.vector_norm(param, dtype=accumulate)
    direction_norm = torch.linalg.vector_norm(direction, dtype=accumulate)
    trust = _trust_ratio(weight_norm, direction_norm, coefficient, norm_clamp)
    if trust_clip:
        trust = clip_to_lr(trust, lr)
    _apply_momentum(param, direction * trust, buffer, lr, momentum, nesterov)
    return weight_norm, direction_norm, trust


def lars_excluded_tensor(
    param: Tensor,
    grad: Tensor,
    buffer: Tensor | None,
    lr,
    scale,
    *,
    momentum: float,
    nesterov: bool,
) -> None:
    """One excluded layer (bias, normalization): ``d = scale * g``, no decay, no ratio."""
    _apply_momentum(param, grad * scale, buffer, lr, momentum, nesterov)


# ---------------------------------------------------------------- multi-tensor updates


def lars_adapted_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor | None],
    lr: float,
    scale: float,
    *,
    momentum: float,
    weight_decay: float,
    eta: float,
    norm_clamp: float | None,
    nesterov: bool,
    trust_clip: bool = False,
    scratch: Scratch | None = None,
    norm_pairs: NormPairs = local_norm_pairs,
):
    """Multi-tensor form of :func:`lars_adapted_tensor` for tensors of one device and dtype.

    With ``scratch``, the directions are made in its memory instead of fresh tensors;
    ``norm_pairs`` takes the layer norms (of local shards, it adds them up across processes).
    """
    if weight_decay != 0:
        directions = decayed_gradients(grads, params, weight_decay, scratch)
    else:
        directions = list(grads)  # read only below: p.grad is never modified
    accumulate = norm_dtype(params[0].dtype)
    weight_norms, direction_norms = norm_pairs(params, directions, accumulate)
    trusts = _trust_ratio(weight_norms, direction_norms, eta * scale, norm_clamp)
    if trust_clip:
        trusts = clip_to_lr(trusts, lr)
    trusts = trusts.unbind(0)
    if weight_decay != 0:
        torch._foreach_mul_(directions, trusts)
        updates = directions
    elif scratch is None:
        updates = torch._foreach_mul(directions, trusts)
    else:
        updates = scratch.like(params)
        for update, direction, trust in zip(updates, directions, trusts):
            torch.mul(direction, trust, out=update)
    _apply_momentum_foreach(params, updates, buffers, lr, momentum, nesterov, True)
    return weight_norms.unbind(0), direction_norms.unbind(0), trusts


def lars_excluded_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor | None],
    lr: float,
    scale: float,
    *,
    momentum: float,
    nesterov: bool,
) -> None:
    """Multi-tensor form of :func:`lars_excluded_tensor`."""
    # Unscaled gradients go as they are (read only); scaled ones are ours to overwrite.
    if scale == 1:
        _apply_momentum_foreach(params, list(grads), buffers, lr, momentum, nesterov, False)
    else:
        updates = torch._foreach_mul(grads, scale)
        _apply_momentum_foreach(params, updates, buffers, lr, momentum, nesterov, True)


# -------------------------------------------------------------------------- the group


def lars_update_group(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor | None],
    adapted: list[bool],
    *,
    path: str,
    strict: bool,
    lr: float,
    scale: float,
    excluded_scale: float,
    momentum: float,
    weight_decay: float,
    eta: float,
    norm_clamp: float | None,
    nesterov: bool,
    trust_clip: bool,
    collector: LayerStatsCollector | None,
    per_step_values: Callable[[torch.device, tuple[float, ...]], Tensor],
    scratch: Scratch | None = None,
    sharded: ShardedLayers | None = None,
) -> None:
    """Update one param group along ``path`` ("single", "foreach", "fused" or "native").

    ``per_step_values(device, values)`` gives the fused path its per-step values as a
    device tensor (see :class:`~tvlars.optim._paths.PerStepValues`); ``scratch`` holds the
    multi-tensor path's temporaries (see :mod:`tvlars.optim._multi_tensor`). With
    ``sharded`` (DTensor parameters, :mod:`tvlars.optim._sharded`) the multi-tensor path
    steps the local shards, each bucket whole, with norms summed across processes.
    """
    reported = params  # telemetry names the parameters, not their local shards
    if sharded is not None and path in (FOREACH, NATIVE):
        params, grads, buffers = sharded.local(params), sharded.local(grads), sharded.local(buffers)
    adapted_idx = [i for i, a in enumerate(adapted) if a]
    excluded_idx = [i for i, a in enumerate(adapted) if not a]
    options = dict(
        momentum=momentum,
        weight_decay=weight_decay,
        eta=eta,
        norm_clamp=norm_clamp,
        nesterov=nesterov,
        trust_clip=trust_clip,
    )
    norms: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    if path == NATIVE:
        # One kernel call per dtype updates adapted and excluded layers alike.
        clamp = math.nan if norm_clamp is None else norm_clamp
        values = (lr, eta * scale, momentum, weight_decay, excluded_scale, clamp, float(trust_clip))
        form = "none" if buffers[0] is None else "nesterov" if nesterov else "heavy_ball"
        if sharded is None:
            _native.lars_group(params, grads, buffers, adapted, values, form, collector, lr)
            return
        # Shards: the norm pass, the norms' sums added up over the processes, the ratios,
        # then the update pass.
        kernels = _native.kernels()
        adapted_params = [params[i] for i in adapted_idx]
        local_norms = kernels.norms(adapted_params, [grads[i] for i in adapted_idx], weight_decay)
        norms = sharded.whole_square_sums(local_norms.square_(), adapted_idx).sqrt_()
        compute = torch.float64 if params[0].dtype == torch.float64 else torch.float32
        weight_norms, direction_norms = norms.to(compute).unbind(1)  # as the kernels round
        trusts = _trust_ratio(weight_norms, direction_norms, eta * scale, norm_clamp)
        if trust_clip:
            trusts = clip_to_lr(trusts, lr)
        kernels.lars_apply(params, grads, buffers, adapted, values, trusts, form)
        _native.bump_versions(params)
        if collector is not None:
            stats = torch.stack((weight_norms, direction_norms, trusts), dim=1).double()
            _native.report_stats(collector, stats, reported, adapted, lr)
        return

    if path == FOREACH or path == FUSED:
        # Excluded layers are small (biases, norms): one foreach call beats per-tensor kernels.
        for indices in group_by_device_and_dtype(excluded_idx, params).values():
            lars_excluded_foreach(
                [params[i] for i in indices],
                [grads[i] for i in indices],
                [buffers[i] for i in indices],
                lr,
                excluded_scale,
                momentum=momentum,
                nesterov=nesterov,
            )
    else:
        for i in excluded_idx:
            lars_excluded_tensor(
                params[i],
                grads[i],
                buffers[i],
                lr,
                excluded_scale,
                momentum=momentum,
                nesterov=nesterov,
            )

    if path == FOREACH:
        for bucket in group_by_device_and_dtype(adapted_idx, params).values():
            # A sharded bucket goes whole: each part is one collective on every process.
            for indices in chunks(bucket, params) if sharded is None else [bucket]:
                chunk = [params[i] for i in indices]
                results = lars_adapted_foreach(
                    chunk,
                    [grads[i] for i in indices],
                    [buffers[i] for i in indices],
                    lr,
                    scale,
                    scratch=None if scratch is None else scratch_for(chunk, scratch),
                    norm_pairs=local_norm_pairs if sharded is None else sharded.norm_pairs(indices),
                    **options,
                )
                norms.update(zip(indices, zip(*results)))
    elif path == FUSED:
        values = (lr, eta * scale, momentum, weight_decay)
        on_device: dict[torch.device, Tensor] = {}
        for i in adapted_idx:
            device, buffer = params[i].device, buffers[i]
            if device not in on_device:
                on_device[device] = per_step_values(device, values)
            norms[i] = run_fused(
                lars_adapted_tensor,
                device,
                strict,
                alias_1d(params[i]),
                alias_1d(grads[i]),
                None if buffer is None else alias_1d(buffer),
                on_device[device],
                norm_clamp=norm_clamp,
                nesterov=nesterov,
                trust_clip=trust_clip,
            )
            increment_version(params[i])
    else:
        values = (lr, eta * scale, momentum, weight_decay)
        for i in adapted_idx:
            norms[i] = lars_adapted_tensor(
                params[i],
                grads[i],
                buffers[i],
                values,
                norm_clamp=norm_clamp,
                nesterov=nesterov,
                trust_clip=trust_clip,
            )
            if sharded is not None:
                # DTensors' norms are DTensors holding each process's part: made whole at
                # every step, recorded or not, so that telemetry on one process does not
                # add collectives the others do not make.
                norms[i] = tuple(whole_values(norms[i]))

    _report(collector, reported, adapted_idx, norms, lr)


def _report(collector, params, adapted_idx, norms, lr) -> None:
    """Hand the adapted layers' norms to telemetry, in group order."""
    if collector is not None and adapted_idx:
        weight_norms, grad_norms, trusts = zip(*(norms[i] for i in adapted_idx))
        collector.add([params[i] for i in adapted_idx], weight_norms, grad_norms, trusts, lr)


# ------------------------------------------------------------------------- optimizer


class LARS(LayerwiseOptimizer):
    r"""Layer-wise Adaptive Rate Scaling (You et al. 2017), as in the paper's Eq. 2.

    .. math::
        \gamma^k_t = \text{lr}\cdot\eta\,\frac{\|w^k_t\|}{\|\nabla L(w^k_t) + w_d w^k_t\|}

    Adapted parameters (by default every tensor with ``ndim > 1``; a param group may say
    ``adapt=True/False``) receive weight decay and the trust ratio; excluded ones (biases,
    normalization) take plain momentum SGD steps. With the defaults this is the arithmetic
    of the TVLARS authors' LARS.

    Args:
        params: parameters or param groups.
        lr: learning rate (any ``torch.optim.lr_scheduler`` may change it).
        momentum: heavy-ball momentum ``mu`` in [0, 1).
        weight_decay: L2 coefficient added to the gradient of adapted parameters.
        eta: LARS trust coefficient (> 0).
        nesterov: use Algorithm 1's Nesterov form instead of heavy ball.
        exclude_1d: exclude tensors with ``ndim <= 1`` from adaptation.
        trust_clip: clip each adapted layer's trust ratio to ``min(trust / lr, 1)`` (LARC:
            apex's ``clip=True``, timm's ``trust_clip``), so that no layer's rate exceeds
            the group's LR.
        foreach: ``True`` multi-tensor path, ``False`` single-tensor path.
        fused: ``True`` the fused path: on CPU the native C++ kernels (one call per param
            group, built on first use), elsewhere ``torch.compile``; ``"native"`` or
            ``"compile"`` name the implementation; errors if it cannot run. With both
            ``None`` the fastest available path is chosen, falling back quietly.
    """

    def __init__(
        self,
        params,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        eta: float = 1e-3,
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
            trust_clip=trust_clip,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("trust_clip", False)  # a state saved before the option existed

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        require(0.0 <= group["momentum"] < 1.0, "momentum", group["momentum"], "in [0, 1)")
        require(group["weight_decay"] >= 0.0, "weight_decay", group["weight_decay"], ">= 0")
        require(group["eta"] > 0.0, "eta", group["eta"], "> 0")
        require(isinstance(group["trust_clip"], bool), "trust_clip", group["trust_clip"], "a bool")

    def _init_state(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        if group["momentum"] == 0:
            return
        if group["nesterov"]:
            # Algorithm 1 starts from y_prev = w_0, so the first step has no momentum term.
            state["previous_lookahead"] = param.detach().clone(memory_format=torch.preserve_format)
        else:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def _scales(self, group: dict[str, Any]) -> tuple[float, float, float | None]:
        """(scale of the adapted trust ratio, scale of excluded updates, norm clamp)."""
        return 1.0, 1.0, None

    def _update_group(
        self, group, params, grads, states, adapted, path, collector, sharded
    ) -> None:
        key = "previous_lookahead" if group["nesterov"] else "momentum_buffer"
        if group["momentum"] == 0:
            buffers = [None] * len(states)
        else:
            buffers = [state.get(key) for state in states]
            if any(buffer is None for buffer in buffers):  # not `in`: that calls Tensor.__eq__
                # Momentum or the momentum form changed mid-run: start that buffer now.
                for param, state in zip(params, states):
                    if key not in state:
                        self._init_state(param, state, group)
                buffers = [state[key] for state in states]
        scale, excluded_scale, norm_clamp = self._scales(group)
        lars_update_group(
            params,
            grads,
            buffers,
            adapted,
            path=path,
            strict=bool(group["fused"]),
            lr=float(group["lr"]),
            scale=scale,
            excluded_scale=excluded_scale,
            momentum=group["momentum"],
            weight_decay=group["weight_decay"],
            eta=group["eta"],
            norm_clamp=norm_clamp,
            nesterov=group["nesterov"],
            trust_clip=group["trust_clip"],
            collector=collector,
            scratch=self._scratch,
            per_step_values=functools.partial(self._per_step_values, id(group)),
            sharded=sharded,
        )
