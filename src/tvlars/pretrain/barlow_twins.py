"""The Barlow Twins loss (Zbontar et al. 2021), exact over the batch of all processes.

For two views of the same ``N`` samples, embedded as ``z1, z2`` of shape ``(N, D)``:

1. Batch-normalize each embedding dimension over the batch (batch statistics, no affine,
   biased variance, as ``BatchNorm1d(affine=False)`` in training mode)::

       zhat[b, i] = (z[b, i] - mean_b z[:, i]) / sqrt(var_b z[:, i] + eps)

2. Cross-correlate the two views::

       C[i, j] = 1/N * sum_b zhat1[b, i] * zhat2[b, j]

3. Push ``C`` to the identity::

       L = sum_i (1 - C[i, i])^2 + lambda_BT * sum_{i != j} C[i, j]^2

With several processes, ``N`` is the batch of all processes together: the sums over ``b``
(of ``z``, of the squared deviations, and of ``zhat1 zhat2^T``) are added across processes
by an autograd-aware all-reduce (:func:`sum_across_processes`: its backward sums the
incoming gradients across processes too). Every process then holds the
same ``L``, the loss of the combined batch. Each process's backward gives ``W`` times the
part of ``dL/dtheta`` that flows through its own samples (``W`` processes each contribute
``dL/dC``); ``DistributedDataParallel`` averages over the ``W`` processes, so the sum of the
parts, ``dL/dtheta`` of the combined batch, is what every process steps with: exactly the
one-process gradient on the combined batch (tests/test_pretrain_barlow_twins.py).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

#: The paper's weight of the off-diagonal (redundancy reduction) term.
DEFAULT_BT_LAMBDA = 0.0051
#: Added to the variance before the square root, as ``BatchNorm1d`` does.
DEFAULT_EPS = 1e-5


class _SumAcrossProcesses(torch.autograd.Function):
    """``y = sum_r x_r`` on every process; backward: ``dx_k = sum_r dy_r``, the gradient
    of the sum of all processes' objectives (what ``torch.distributed.nn.functional.
    all_reduce`` does; that module is deprecated, and this is the whole of it)."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        summed = tensor.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        summed = grad.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed


def sum_across_processes(tensor: Tensor) -> Tensor:
    """``tensor`` summed over all processes, differentiably (identity with one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _SumAcrossProcesses.apply(tensor)
    return tensor


def batch_normalize(z: Tensor, eps: float = DEFAULT_EPS) -> tuple[Tensor, Tensor]:
    """``(zhat, N)``: ``z`` normalized per dimension with the statistics of the batch of all
    processes (mean, then biased variance about it), and that batch's size ``N``."""
    count = sum_across_processes(torch.tensor(float(z.shape[0]), device=z.device))
    mean = sum_across_processes(z.sum(dim=0)) / count
    centred = z - mean
    variance = sum_across_processes(centred.square().sum(dim=0)) / count
    return centred / torch.sqrt(variance + eps), count


def cross_correlation(z1: Tensor, z2: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """``C`` of shape ``(D, D)``: the cross-correlation of the batch-normalized views over
    the batch of all processes (see the module docstring)."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"two views of shape (N, D) expected, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    # float32 at least: autocast may hand us half-precision embeddings.
    dtype = torch.promote_types(z1.dtype, torch.float32)
    z1, z2 = z1.to(dtype), z2.to(dtype)
    zhat1, count = batch_normalize(z1, eps)
    zhat2, _ = batch_normalize(z2, eps)
    return sum_across_processes(zhat1.T @ zhat2) / count


def barlow_twins_loss_from_correlation(c: Tensor, bt_lambda: float = DEFAULT_BT_LAMBDA) -> Tensor:
    """``sum_i (1 - C_ii)^2 + bt_lambda * sum_{i != j} C_ij^2``."""
    on_diagonal = (1 - torch.diagonal(c)).square().sum()
    return on_diagonal + bt_lambda * off_diagonal_elements(c).square().sum()


def off_diagonal_elements(c: Tensor) -> Tensor:
    """The ``D * (D - 1)`` elements of a square ``(D, D)`` matrix off its diagonal (a view)."""
    size = c.shape[0]
    # Dropping the last element leaves rows of D + 1 that each start on the diagonal.
    return c.flatten()[:-1].view(size - 1, size + 1)[:, 1:].flatten()


def barlow_twins_loss(
    z1: Tensor, z2: Tensor, bt_lambda: float = DEFAULT_BT_LAMBDA, eps: float = DEFAULT_EPS
) -> Tensor:
    """The Barlow Twins loss of two views' embeddings ``(N, D)`` over the batch of all
    processes; the same scalar on every process."""
    return barlow_twins_loss_from_correlation(cross_correlation(z1, z2, eps), bt_lambda)
