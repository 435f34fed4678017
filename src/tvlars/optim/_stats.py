"""What an optimizer step hands to telemetry: the per-layer norms it already computed."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
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
    """

    params: list[Tensor]
    weight_norm: list[Tensor]
    grad_norm: list[Tensor]
    trust_ratio: list[Tensor]
    lr: list[float]
    #: The same three values as one (layers, 3) tensor, columns ``weight_norm``,
    #: ``grad_norm``, ``trust_ratio``, when the step had them stacked; telemetry then reads
    #: them with one kernel instead of stacking 3 x layers 0-d tensors.
    stacked: Tensor | None = None
