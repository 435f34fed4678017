"""Per-layer norms for an optimizer that computes none (torch's SGD, AdamW, ...).

:class:`~tvlars.telemetry.LayerRecorder` reads every recorded weight and gradient once
more before such a step, with the arithmetic the optimizers' own paths use: the native
kernels' norm pass on CPU, the multi-tensor path's chunks elsewhere, and the sharded
path's one all-reduce for DTensor parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tvlars.optim import _native
from tvlars.optim._multi_tensor import (
    Scratch,
    chunks,
    decayed_gradients,
    layer_norms,
    on_cpu,
    scratch_for,
)
from tvlars.optim._sharded import ShardedLayers


def layer_norms_before_step(
    params: list[Tensor], grads: list[Tensor], dtype: torch.dtype, decay: float, scratch: Scratch
) -> tuple[list[Tensor], list[Tensor]]:
    """``|w|`` and ``|g + wd*w|`` of each parameter (one device and dtype), 0-d tensors.

    On CPU the native kernels' norm pass does it in one read of w and g (a plain SGD
    step on ResNet-18 shapes took 2.3x as long with the recorder attached when it
    made g + wd*w in fresh memory and took two norms of it). Elsewhere as the
    multi-tensor optimizer path does (tvlars.optim._multi_tensor), and for DTensor
    parameters (FSDP2) as it does too: local shards, one all-reduce for the norms
    (tvlars.optim._sharded), which every process must then make: attach a recorder
    on each (those whose file is not wanted may write to os.devnull).
    """
    # Half-precision sums of squares overflow (float16 tops out at 65504).
    accumulate = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    sharded = ShardedLayers.of(params, grads)
    if sharded is not None:
        local_params, local_grads = sharded.local(params), sharded.local(grads)
        layers = range(len(params))
        if on_cpu(params[0]) and _native.available(local_params, local_grads):
            local_norms = _native.layer_norms(local_params, local_grads, decay)
            norms = sharded.whole_square_sums(local_norms.square_(), layers).sqrt_()
            norms = norms.to(torch.float32)
            return list(norms[:, 0].unbind()), list(norms[:, 1].unbind())
        directions = local_grads
        if decay != 0:
            directions = decayed_gradients(directions, local_params, decay, None)
        norm_pairs = sharded.norm_pairs(layers)
        whole_weight_norms, whole_grad_norms = norm_pairs(local_params, directions, accumulate)
        return list(whole_weight_norms.unbind()), list(whole_grad_norms.unbind())
    if on_cpu(params[0]) and _native.available(params, grads):
        norms = _native.layer_norms(params, grads, decay).to(torch.float32)
        return list(norms[:, 0].unbind()), list(norms[:, 1].unbind())
    weight_norms: list[Tensor] = []
    grad_norms: list[Tensor] = []
    for run in chunks(range(len(params)), params):
        chunk = [params[i] for i in run]
        directions = [grads[i] for i in run]
        if decay != 0:
            chunk_scratch = scratch_for(chunk, scratch)
            directions = decayed_gradients(directions, chunk, decay, chunk_scratch)
        weight_norms.extend(layer_norms(chunk, accumulate).unbind(0))
        grad_norms.extend(layer_norms(directions, accumulate).unbind(0))
    return weight_norms, grad_norms
