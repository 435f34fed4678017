"""Parameters sharded across processes as DTensors (FSDP2's ``fully_shard``, tensor
parallelism): layer-wise norms over the whole layer, one collective per bucket.

A trust ratio needs each layer's norm over the *whole* tensor, and each process holds
only its shard. A sum of squares is the sum of the shards' sums of squares, so::

    |w|^2 = sum over the processes p of |w_p|^2

where ``w_p`` is process p's local shard. The multi-tensor path therefore runs on the
local shards as it would on whole tensors, except for the norms: each process stacks
its local ``|w_p|^2`` and ``|u_p|^2`` (u: the layer's direction) for every adapted layer
of a bucket into one tensor, a single ``all_reduce(SUM)`` over the mesh dimensions the
layers are sharded along adds them up, and the square roots are every process's full
norms. Everything else in LARS, TVLARS and LAMB is elementwise and stays local. On CPU
the native kernels do the same in two calls around the all-reduce (their norm pass, then
their update pass with the ratios given: :meth:`ShardedLayers.whole_square_sums`).

Mesh dimensions along which a layer is *replicated* (HSDP's outer dimension, a
tensor-parallel layer that is not split) hold copies, not parts, and are not summed.
A ``Partial`` placement (values that still await a reduction) is refused: such a tensor
is not a parameter's value.

The single-tensor path needs none of this: it runs the reference arithmetic on the
DTensors themselves, and DTensor's own dispatch gathers each norm (one collective per
norm). ``torch.compile`` of the per-tensor update (``fused``) does not take DTensors.

Every process must step the same parameters in the same order (each bucket is one
collective), which FSDP2 guarantees: its gradients exist on every process or on none.
Telemetry adds no collective: the norms it records are the ones the step made whole.

Shards held off their mesh's device (FSDP2's CPU offload) have their sums reduced on the
mesh's device. The layouts of a group's parameters are checked in full when first seen
and reused while the group's parameters stay the same (checking them at every step cost
half a millisecond on ResNet-50's tensors).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from tvlars.optim._multi_tensor import layer_norms

#: ``norm_pairs(weights, directions, accumulate)`` -> ``(|w| per layer, |u| per layer)``,
#: each one tensor of ``len(weights)`` values in ``accumulate``.
NormPairs = Callable[[Sequence[Tensor], Sequence[Tensor], torch.dtype], tuple[Tensor, Tensor]]


# No functools caches below: dynamo warns about each cached function it traces (the step
# that runs this code is kept out of torch.compile today, but need not always be).
_DTENSOR: list[type | None] = []  # [DTensor or None] once looked up


def _dtensor_type() -> type | None:
    if not _DTENSOR:
        dtensor = None
        if dist.is_available():
            try:
                from torch.distributed.tensor import DTensor as dtensor  # public from torch 2.5
            except ImportError:
                pass
        _DTENSOR.append(dtensor)
    return _DTENSOR[0]


def is_dtensor(tensor: Tensor) -> bool:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor``."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(tensor, dtensor)


def local_norm_pairs(
    weights: Sequence[Tensor], directions: Sequence[Tensor], accumulate: torch.dtype
) -> tuple[Tensor, Tensor]:
    """The norm pairs of whole (unsharded) tensors: :func:`layer_norms` of each list."""
    return layer_norms(weights, accumulate), layer_norms(directions, accumulate)


def _reduction(tensor: Tensor) -> tuple:
    """How ``tensor``'s shards' sums are added up: ``(the mesh's device type, the process
    groups of the mesh dimensions it is sharded along)``; ``()`` for a plain tensor or one
    replicated everywhere (nothing to add)."""
    if not is_dtensor(tensor):
        return ()
    mesh, placements = tensor.device_mesh, tensor.placements
    groups = []
    for mesh_dim, placement in enumerate(placements):
        if placement.is_partial():
            raise ValueError(
                f"got a DTensor parameter with a Partial placement ({placements}): its "
                "local values are unreduced parts, not the parameter. Redistribute it to "
                "Shard or Replicate placements before the optimizer steps."
            )
        if placement.is_shard():
            groups.append(mesh.get_group(mesh_dim))
    return (mesh.device_type, tuple(groups)) if groups else ()


def _local(dtensor: Tensor) -> Tensor:
    """A DTensor's local shard, the tensor itself (a write to it is a write to the DTensor).

    ``to_local()`` runs an autograd function, 18 us per tensor here: 3 ms per step for
    ResNet-50's parameters alone, against 0.1 us for the attribute it returns."""
    local = getattr(dtensor, "_local_tensor", None)
    return dtensor.to_local() if local is None else local


def _require_aligned(param: Tensor, grad: Tensor) -> None:
    """The local shards of a weight and its gradient must hold the same elements."""
    param_is_dtensor, grad_is_dtensor = is_dtensor(param), is_dtensor(grad)
    if not param_is_dtensor and not grad_is_dtensor:
        return
    if (
        not (param_is_dtensor and grad_is_dtensor)
        or tuple(grad.placements) != tuple(param.placements)
        or (grad.device_mesh is not param.device_mesh and grad.device_mesh != param.device_mesh)
    ):
        describe = lambda t: (  # noqa: E731
            f"DTensor {tuple(t.placements)}" if is_dtensor(t) else "a plain tensor"
        )
        raise ValueError(
            f"a parameter is {describe(param)} but its gradient is {describe(grad)}: their "
            "local values would not be the same elements. Give the gradient the parameter's "
            "mesh and placements (grad.redistribute(param.device_mesh, param.placements))."
        )


class ShardedLayers:
    """The DTensors of one param group's step and their local shards.

    ``local(tensors)`` gives the local shard of each DTensor (a view: updating it updates
    the parameter) and leaves plain tensors as they are; ``norm_pairs(indices)`` gives the
    norm function for the layers at ``indices`` of the group.
    """

    def __init__(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        for param, grad in zip(params, grads):
            _require_aligned(param, grad)
        self._reductions = [_reduction(param) for param in params]
        self._param_ids = tuple(map(id, params))

    @classmethod
    def of(
        cls,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        previous: ShardedLayers | None = None,
    ) -> ShardedLayers | None:
        """The group's sharded layers, or ``None`` when no parameter is a DTensor.

        ``previous``, this group's value at the last step, is reused when the step has the
        same parameters and every gradient's local shard has its parameter's shape (the
        layouts were checked in full when it was made; checking them at every step cost
        3 us per layer, half a millisecond per step for ResNet-50's 161 tensors).
        """
        dtensor = _dtensor_type()
        # By the set of types, not isinstance per tensor (a slow check on tensors): this
        # runs at every step, 5 us instead of 26 us for ResNet-50's 161 parameters.
        if dtensor is None or not any(issubclass(kind, dtensor) for kind in set(map(type, params))):
            return None
        if previous is not None and previous._fits(params, grads):
            return previous
        return cls(params, grads)

    def _fits(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> bool:
        if tuple(map(id, params)) != self._param_ids:
            return False
        locals_of = self.local
        return all(
            param.shape == grad.shape
            for param, grad in zip(locals_of(params), locals_of(grads), strict=True)
        )

    @staticmethod
    def local(tensors: Sequence[Tensor | None]) -> list[Tensor | None]:
        return [_local(t) if t is not None and is_dtensor(t) else t for t in tensors]

    def reduction(self, index: int) -> tuple:
        """How the shards' sums of the group's layer ``index`` are added up: a key for
        :func:`summed_over` (``()``: a plain or everywhere-replicated tensor, nothing to add)."""
        return self._reductions[index]

    def _positions_by_reduction(self, indices: Sequence[int]) -> dict[tuple, list[int]]:
        """The positions in ``indices`` of the layers of each way of adding up shards, in
        order of first appearance (the same on every process)."""
        positions: dict[tuple, list[int]] = {}
        for position, index in enumerate(indices):
            positions.setdefault(self._reductions[index], []).append(position)
        return positions

    def norm_pairs(self, indices: Sequence[int]) -> NormPairs:
        """The full-layer norms of the layers at ``indices``, from their local shards:
        one ``all_reduce`` per distinct set of process groups among them (one in all for
        a model sharded one way, as FSDP2 shards it)."""
        columns_by_reduction = self._positions_by_reduction(indices)

        def full_norm_pairs(weights, directions, accumulate):
            pieces = []
            for reduction, columns in columns_by_reduction.items():
                # Sums of squares of the local shards: row 0 weights, row 1 directions.
                sums = torch.stack(
                    local_norm_pairs(
                        [weights[c] for c in columns], [directions[c] for c in columns], accumulate
                    )
                ).square_()
                if reduction:
                    sums = _sum_over(sums, *reduction)
                pieces.append((columns, sums.sqrt_()))
            if len(pieces) == 1:
                weight_norms, direction_norms = pieces[0][1].unbind(0)
                return weight_norms, direction_norms
            # Layers sharded in different ways: put the columns back in layer order.
            by_column = {}
            for columns, norms in pieces:
                by_column.update(zip(columns, norms.unbind(1)))
            ordered = torch.stack([by_column[c] for c in range(len(indices))], dim=1)
            weight_norms, direction_norms = ordered.unbind(0)
            return weight_norms, direction_norms

        return full_norm_pairs

    def whole_square_sums(self, sums: Tensor, indices: Sequence[int]) -> Tensor:
        """``sums`` (one row per layer at ``indices``, any number of columns: the local
        shards' sums of squares) added up over every process's shards, in place."""
        for reduction, rows in self._positions_by_reduction(indices).items():
            if not reduction:
                continue
            if len(rows) == len(indices):
                sums.copy_(_sum_over(sums, *reduction))
            else:
                sums[rows] = _sum_over(sums[rows], *reduction)
        return sums


def summed_over(sums: Tensor, reduction: tuple) -> Tensor:
    """``sums`` of local shards added up over the processes as ``reduction`` (a
    :meth:`ShardedLayers.reduction`) says; ``sums`` itself for ``()``."""
    return _sum_over(sums, *reduction) if reduction else sums


def _sum_over(sums: Tensor, device_type: str, groups: tuple) -> Tensor:
    """``sums`` added up over each process group in turn.

    Shards held off the mesh's device (FSDP2's CPU offload: CPU shards of a CUDA mesh,
    whose NCCL groups take CUDA tensors only) have their sums sent to the mesh's device
    for the collective and back: a copy of a few numbers per layer, and a wait, on a step
    that runs on the CPU anyway."""
    on_mesh = sums if sums.device.type == device_type else sums.to(device_type)
    for group in groups:
        dist.all_reduce(on_mesh, op=dist.ReduceOp.SUM, group=group)
    return on_mesh if on_mesh is sums else on_mesh.to(sums.device)


def whole_values(values: Sequence[Tensor]) -> list[Tensor]:
    """Plain tensors of the values the reference path computes from DTensors.

    The norm of a sharded DTensor is a DTensor whose local value is each process's part (a
    "partial" placement); ``full_tensor()`` adds them up, a collective that every process
    makes in the same order, as every process steps the same parameters.
    """
    return [value.full_tensor() if is_dtensor(value) else value for value in values]
