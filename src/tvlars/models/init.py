"""Weight initialization schemes: the four of the paper's ablation (Section VI-C3, Figure 8).

:func:`apply_init` re-initializes every convolution and linear layer of a model:

    ``xavier_uniform``   U(-b, b), b = sqrt(6 / (fan_in + fan_out))   Glorot & Bengio 2010
    ``xavier_normal``    N(0, s^2), s = sqrt(2 / (fan_in + fan_out))  Glorot & Bengio 2010
    ``kaiming_uniform``  U(-b, b), b = sqrt(6 / fan_in)               He et al. 2015
    ``kaiming_normal``   N(0, s^2), s = sqrt(2 / fan_in)              He et al. 2015

where a convolution's fans count its kernel taps (fan_in = in_channels * kernel size). The
Xavier schemes use gain 1 (``nn.init.xavier_uniform_(w)``, ``nn.init.xavier_normal_(w)``); the
Kaiming schemes use the ReLU gain sqrt(2) in fan-in mode
(``nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu")``, likewise ``_normal_``),
for every layer including the final classifier, which keeps the scheme one rule per model.

This is *not* PyTorch's default initialization, which is ``kaiming_uniform_`` with
``a=sqrt(5)``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), sqrt(6) times narrower than ours;
nor torchvision's ResNet initialization (``kaiming_normal_`` in fan-out mode). The TVLARS
authors' code declared an init option but never applied it, so their models ran with
PyTorch's defaults; ours are applied. Layer-wise adaptive optimizers scale each step by
|w| / |grad|, so the scale of the initial weights changes the initial trust ratios.

Biases of those layers become 0. Batch norm (and group/layer norm) weights become 1 and biases
0, and batch norm running statistics are reset, so the model starts as if freshly built.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_INIT", "INIT_SCHEMES", "apply_init", "check_init_scheme"]

_WeightInit = Callable[[Tensor, torch.Generator | None], object]

_SCHEMES: dict[str, _WeightInit] = {
    "xavier_uniform": lambda w, g: nn.init.xavier_uniform_(w, generator=g),
    "xavier_normal": lambda w, g: nn.init.xavier_normal_(w, generator=g),
    "kaiming_uniform": lambda w, g: nn.init.kaiming_uniform_(
        w, mode="fan_in", nonlinearity="relu", generator=g
    ),
    "kaiming_normal": lambda w, g: nn.init.kaiming_normal_(
        w, mode="fan_in", nonlinearity="relu", generator=g
    ),
}

#: Names of the weight initialization schemes.
INIT_SCHEMES: tuple[str, ...] = tuple(_SCHEMES)
#: The scheme of the paper's main experiments (Section VI-A: "Kaiming Uniform").
DEFAULT_INIT = "kaiming_uniform"

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_NORMS = (*_BATCH_NORMS, nn.GroupNorm, nn.LayerNorm)


def check_init_scheme(scheme: str) -> str:
    """Return ``scheme`` if it names a scheme; otherwise raise ValueError listing them."""
    if scheme not in _SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {list(INIT_SCHEMES)}")
    return scheme


def apply_init(
    model: nn.Module, scheme: str = DEFAULT_INIT, generator: torch.Generator | None = None
) -> nn.Module:
    """Re-initialize ``model`` in place with ``scheme`` (see the module docstring).

    Args:
        model: any module; its convolution, linear and normalization layers are reset.
        scheme: one of :data:`INIT_SCHEMES`.
        generator: random source for the weights; the global one when None.

    Returns:
        ``model``, for chaining.
    """
    init_weight = _SCHEMES[check_init_scheme(scheme)]
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            init_weight(module.weight, generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORMS):
            if isinstance(module, _BATCH_NORMS) and module.track_running_stats:
                module.reset_running_stats()
            if getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    return model
