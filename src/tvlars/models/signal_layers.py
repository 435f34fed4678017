"""1-D convolution and batch norm that compute on signals laid out as (N, C, 1, L) in
channels-last memory, for speed on CPU.

PyTorch's CPU kernels for (N, C, L) tensors with few channels are slow: batch norm walks each
channel's short rows of L values, and oneDNN's convolution reorders to and from its blocked
layout. Viewed as images of height 1 and stored channels-last, the same tensors are one
(N * L, C) matrix whose rows hold all channels of one position, the layout oneDNN and the
channels-last batch-norm kernel are fastest on. For the MNIST-1D ResNet at batch 4096 on one
thread a training step (forward and backward) takes about half the time it takes in (N, C, L)
(``benchmarks/signal_layout.py``).

The modules subclass :class:`torch.nn.Conv1d` and :class:`torch.nn.BatchNorm1d`: their
parameters, buffers, state_dict keys and shapes are those of the 1-D layers, weight
initialization and :func:`torch.nn.SyncBatchNorm.convert_sync_batchnorm` treat them as such,
and a 3-D (N, C, L) input still gets the plain 1-D computation. Only a 4-D (N, C, 1, L) input
takes the 2-D route; the numbers are the same up to floating-point summation order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["SignalBatchNorm", "SignalConv", "to_signal_layout"]


def to_signal_layout(x: Tensor) -> Tensor:
    """(N, C, L) -> (N, C, 1, L) in channels-last memory (rows of C values per position)."""
    if x.dim() != 3:
        raise ValueError(f"expected signals of shape (N, C, L), got {tuple(x.shape)}")
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


class SignalConv(nn.Conv1d):
    """:class:`torch.nn.Conv1d` that also reads (N, C, 1, L) channels-last input and keeps
    that layout in its output."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            return super().forward(x)
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError("SignalConv on (N, C, 1, L) input supports numeric zero padding only")
        if self.in_channels == 1 and self.dilation[0] == 1:
            return self._single_channel_forward(x)
        out = F.conv2d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            stride=(1, self.stride[0]),
            padding=(0, self.padding[0]),
            dilation=(1, self.dilation[0]),
            groups=self.groups,
        )
        # With one input channel the layout is ambiguous and the convolution answers in
        # (N, C, H, W) order; later layers need channels-last to take the fast kernels.
        return out.contiguous(memory_format=torch.channels_last)

    def _single_channel_forward(self, x: Tensor) -> Tensor:
        """``out[n, l, :] = W @ x[n, l*stride : l*stride + k]`` as one matrix product over
        the signal's sliding windows: oneDNN's convolution has no fast kernel for a single
        input channel (its weight gradient took 3x as long as this whole forward and
        backward), and the product lands in channels-last order by itself."""
        signal = x.reshape(x.shape[0], x.shape[-1])
        padding = self.padding[0]
        windows = F.pad(signal, (padding, padding)).unfold(1, self.kernel_size[0], self.stride[0])
        out = windows @ self.weight.view(self.out_channels, -1).t()  # (N, L_out, C_out)
        if self.bias is not None:
            out = out + self.bias
        return out.unsqueeze(1).permute(0, 3, 1, 2)


class SignalBatchNorm(nn.BatchNorm1d):
    """:class:`torch.nn.BatchNorm1d` that also accepts (N, C, 1, L) input; the statistics are
    over N and L either way, as for a 1-D signal."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() == 4 and input.shape[2] != 1:
            raise ValueError(f"expected (N, C, 1, L) input, got {tuple(input.shape)}")
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2-D, 3-D or (N, C, 1, L) input, got {input.dim()}-D")
