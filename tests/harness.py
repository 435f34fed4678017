"""Drive an optimizer and the float64 reference through the same steps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from reference import clip_by_global_norm

from tvlars.optim import _native

# A conv kernel, a linear weight, a bias and a one-element scale: adapted and excluded
# layers of every size class the optimizers treat differently.
SHAPES: list[tuple[int, ...]] = [(3, 2, 3, 3), (5, 4), (4,), (1,)]

PATHS: dict[str, dict] = {
    "single": {"foreach": False},
    "foreach": {"foreach": True},
    # The multi-tensor path with every tensor a chunk of its own (tests/conftest.py sets
    # the chunk size for it): the CPU branch that large layers take (scratch memory,
    # dot-product norms), which the small test tensors would otherwise never reach.
    "foreach-chunked": {"foreach": True},
    "native": {"fused": "native"},  # the C++ kernels (what fused=True takes on CPU)
    "compiled": {"fused": "compile"},  # torch.compile (what fused=True takes on GPUs)
}
if _native.kernels() is None:  # no C++ compiler here: test_optim_native.py says so (skips)
    del PATHS["native"]


def initial_weights(shapes: Sequence[tuple[int, ...]] = SHAPES, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for shape in shapes]


def gradients(
    step: int, shapes: Sequence[tuple[int, ...]] = SHAPES, seed: int = 1
) -> list[np.ndarray]:
    rng = np.random.default_rng(seed * 1000 + step)
    return [rng.normal(scale=0.1, size=shape) for shape in shapes]


def run_optimizer(
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    steps: int,
    dtype: torch.dtype = torch.float64,
    lrs: Sequence[float] | None = None,
    shapes: Sequence[tuple[int, ...]] = SHAPES,
) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    """Parameters after ``steps`` steps with the gradients of :func:`gradients`."""
    params = [torch.tensor(w, dtype=dtype, requires_grad=True) for w in initial_weights(shapes)]
    optimizer = make_optimizer(params)
    for step in range(steps):
        if lrs is not None:
            for group in optimizer.param_groups:
                group["lr"] = lrs[step]
        for param, grad in zip(params, gradients(step, shapes)):
            param.grad = torch.tensor(grad, dtype=dtype)
        optimizer.step()
    return [p.detach() for p in params], optimizer


def run_reference(
    make_reference: Callable[[tuple[int, ...]], object],
    steps: int,
    lrs: Sequence[float] | None = None,
    shapes: Sequence[tuple[int, ...]] = SHAPES,
    max_grad_norm: float | None = None,
) -> list[np.ndarray]:
    """The reference's parameters after the same steps; one reference object per tensor.
    With ``max_grad_norm`` each step's gradients are first clipped by their global norm."""
    weights = initial_weights(shapes)
    references = [make_reference(shape) for shape in shapes]
    for step in range(steps):
        step_grads = gradients(step, shapes)
        if max_grad_norm is not None:
            step_grads = clip_by_global_norm(step_grads, max_grad_norm)
        for index, grad in enumerate(step_grads):
            if lrs is not None:
                references[index].lr = lrs[step]
            weights[index] = references[index].step(weights[index], grad)
    return weights


def assert_matches(
    ours: Sequence[torch.Tensor], reference: Sequence[np.ndarray], rtol: float
) -> None:
    for index, (actual, expected) in enumerate(zip(ours, reference)):
        np.testing.assert_allclose(
            actual.double().numpy(),
            expected,
            rtol=rtol,
            atol=rtol * 1e-2,
            err_msg=f"parameter {index} (shape {tuple(expected.shape)})",
        )
