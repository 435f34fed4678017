"""What an optimizer step hands to telemetry: the per-layer norms it already computed."""

from __future__ import annotations

import torch
from torch import Tensor


class LayerStats:
    """Per-layer quantities of one optimizer step, kept as device tensors (no transfer).

    An optimizer of this package whose ``record_layer_stats`` attribute is ``True`` sets
    ``optimizer.layer_stats`` to one of these after every step. Only adapted parameters
    (those that receive the trust ratio) appear, in param-group order.

    - ``weight_norm``: |w| before the update (the paper's LWN).
    - ``grad_norm``: the norm the trust ratio divides by: |g + wd*w| for LARS and TVLARS
      (the denominator of Eq. 2, the paper's LGN), |u| (the Adam direction plus weight
      decay) for LAMB.
    - ``trust_ratio``: the ratio applied to the update direction (for TVLARS it includes
      phi(t) and eta).
    - ``lr``: the param group's learning rate at that step; the layer's effective step
      size is ``lr * trust_ratio``.
    - ``stacked``: the same three values as one (layers, 3) tensor, columns
      ``weight_norm``, ``grad_norm``, ``trust_ratio``, when the step had them so (the
      native kernels do, in float64 as they summed them); telemetry then reads them with
      one kernel.
    - ``dtype``: the dtype of the lists' values when they are made from ``stacked``
      (float32 for float32 and bfloat16 parameters, as the other paths report them).

    - ``global_grad_norm``, ``clip_factor``: with LAMB's ``max_grad_norm`` set, the norm
      ``G`` of all of the step's gradients together and the factor ``max(G / c, 1)`` that
      every gradient was divided by (0-d tensors); ``None`` otherwise.

    The three lists are lists of 0-d tensors. A step that provides only ``stacked`` leaves
    them to be made from it on first access, since converting and splitting a tensor into
    0-d views costs more than the recorder's whole row.
    """

    def __init__(
        self,
        params: list[Tensor],
        weight_norm: list[Tensor] | None = None,
        grad_norm: list[Tensor] | None = None,
        trust_ratio: list[Tensor] | None = None,
        lr: list[float] | None = None,
        stacked: Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        lists = (weight_norm, grad_norm, trust_ratio)
        if stacked is None and any(values is None for values in lists):
            raise ValueError("LayerStats needs weight_norm, grad_norm and trust_ratio, or stacked")
        self.params = params
        self.lr = [] if lr is None else lr
        self.stacked = stacked
        self.dtype = stacked.dtype if dtype is None and stacked is not None else dtype
        self._lists = None if any(values is None for values in lists) else lists
        self.global_grad_norm: Tensor | None = None
        self.clip_factor: Tensor | None = None

    def _columns(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        if self._lists is None:
            weight_norms, grad_norms, trust_ratios = self.stacked.to(self.dtype).t().unbind(0)
            self._lists = (
                list(weight_norms.unbind()),
                list(grad_norms.unbind()),
                list(trust_ratios.unbind()),
            )
        return self._lists

    @property
    def weight_norm(self) -> list[Tensor]:
        return self._columns()[0]

    @property
    def grad_norm(self) -> list[Tensor]:
        return self._columns()[1]

    @property
    def trust_ratio(self) -> list[Tensor]:
        return self._columns()[2]

    def __repr__(self) -> str:
        return f"LayerStats({len(self.params)} layers, stacked={self.stacked is not None})"
