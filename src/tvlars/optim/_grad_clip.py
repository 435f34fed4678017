"""LAMB's global gradient clipping: one norm over all of a step's gradients.

With ``max_grad_norm = c``, before the moments of a step::

    G = sqrt( sum over every parameter of the optimizer (all groups) with a gradient of |g|^2 )
    g <- g / max(G / c, 1)

``G`` and the factor ``max(G / c, 1)`` stay device tensors: the host never waits for them.
Under DTensor parameters each layer's local shard adds its sum of squares, and the sums are
added across the mesh dimensions the layer is sharded along (not those it is replicated
along), so that each layer counts once: one ``all_reduce`` per distinct way of sharding
(one for a model that FSDP2 shards) for the whole step. That collective cannot share the
one the step makes for the layer norms: those norms are of the moments, which need the
clipped gradients first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from tvlars.optim._paths import group_by_device_and_dtype
from tvlars.optim._sharded import ShardedLayers, summed_over


def global_grad_norm(parts: Sequence[tuple[Sequence[Tensor], ShardedLayers | None]]) -> Tensor:
    """``G`` of the gradients of ``parts`` (each one param group's gradients and, when some
    are DTensors, their ``ShardedLayers``), a 0-d tensor on the first gradient's device, in
    float64 if some gradient is float64, else float32."""
    every = [grad for grads, _ in parts for grad in grads]
    wide = any(grad.dtype == torch.float64 for grad in every)
    accumulate = torch.float64 if wide else torch.float32
    device = every[0].device
    by_reduction: dict[tuple, list[Tensor]] = {}
    for grads, sharded in parts:
        local = list(grads) if sharded is None else sharded.local(grads)
        reductions: dict[tuple, list[int]] = {}
        for index in range(len(local)):
            key = () if sharded is None else sharded.reduction(index)
            reductions.setdefault(key, []).append(index)
        for key, indices in reductions.items():
            for bucket in group_by_device_and_dtype(indices, local).values():
                square_sum = _square_sum([local[i] for i in bucket], accumulate)
                by_reduction.setdefault(key, []).append(square_sum.to(device, accumulate))
    total = None
    for key, square_sums in by_reduction.items():
        # Each process's part of the sum, then (for sharded layers) every process's parts.
        part = summed_over(torch.stack(square_sums).sum().reshape(1), key)
        total = part if total is None else total + part
    return total.reshape(()).sqrt_()


def clip_factor(global_norm: Tensor, max_grad_norm: float) -> Tensor:
    """``max(G / c, 1)``: what every gradient is divided by (1 when ``G <= c``)."""
    return (global_norm / max_grad_norm).clamp_(min=1.0)


def _square_sum(tensors: Sequence[Tensor], accumulate: torch.dtype) -> Tensor:
    """``sum |x|^2`` over ``tensors`` (one device and dtype), a 1-element tensor: one
    ``torch._foreach_norm`` call. On CPU (ViT-S/16's gradients, one thread) it made the
    LAMB step with the global norm 1.18x the step without, where the native kernels' norm
    pass (double sums of two streams) made it 1.29x."""
    norms = torch._foreach_norm(tensors, 2, dtype=accumulate)
    return torch.stack(norms).square().sum().reshape(1)
