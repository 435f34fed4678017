"""An experiment for GPUs, not a tvlars path: LARS with a whole group compiled as one graph.

tvlars' fused path on GPUs runs ``torch.compile`` of the per-tensor update once per
adapted layer, so a step pays one compiled call (guards, wrapper, kernel launches) per
layer; on a GPU, where the arithmetic of a ResNet step takes a fraction of a millisecond,
those calls may be most of the step. This optimizer compiles the loop over all adapted
layers as one graph (static shapes: compiled once per model) and updates the excluded
layers with tvlars' multi-tensor code, so ``step_time.py`` can put both designs side by
side on a GPU before the default is chosen. Its arithmetic is tvlars' LARS (heavy ball).
On CPU, ``python benchmarks/step_time.py --group-compile --skip-compile --models resnet18
--rounds 7`` measured 16.7 ms per step against 21.6 ms for the per-layer calls (a scratch
run timed the first steps: 18.8 s of compilation against 5.4 s).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer

from tvlars.optim.lars import lars_adapted_tensor, lars_excluded_foreach


def _adapted_layers_step(
    params: list[Tensor], grads: list[Tensor], buffers: list[Tensor], values: Tensor
) -> None:
    for param, grad, buffer in zip(params, grads, buffers, strict=True):
        lars_adapted_tensor(param, grad, buffer, values, norm_clamp=None, nesterov=False)


class GroupCompiledLARS(Optimizer):
    """LARS (heavy ball, 1-D tensors excluded) whose adapted layers are one compiled call."""

    def __init__(self, params, lr: float, momentum: float, weight_decay: float, eta: float):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        params = self.param_groups[0]["params"]
        self._adapted = [p for p in params if p.ndim > 1]
        self._excluded = [p for p in params if p.ndim <= 1]
        for param in params:
            self.state[param]["momentum_buffer"] = torch.zeros_like(param)
        device = params[0].device
        # lr, eta, momentum, weight decay in one device tensor: no value is baked in.
        self._values = torch.tensor(
            [lr, eta, momentum, weight_decay], dtype=torch.float64, device=device
        )
        self._compiled = torch.compile(_adapted_layers_step, dynamic=False, fullgraph=True)

    @torch.no_grad()
    def step(self, closure=None):
        group = self.param_groups[0]
        buffer = lambda p: self.state[p]["momentum_buffer"]  # noqa: E731
        self._compiled(
            self._adapted,
            [p.grad for p in self._adapted],
            [buffer(p) for p in self._adapted],
            self._values,
        )
        if self._excluded:
            lars_excluded_foreach(
                self._excluded,
                [p.grad for p in self._excluded],
                [buffer(p) for p in self._excluded],
                group["lr"],
                1.0,
                momentum=group["momentum"],
                nesterov=False,
            )
