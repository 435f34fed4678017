"""The basic residual block of ResNet-18/34 (He et al. 2016, "Deep Residual Learning for
Image Recognition", Fig. 2 and Table 1), for 1-D signals and 2-D images alike.

Two 3x3 (or 3) convolutions, each followed by batch norm, with a ReLU between them and after
the sum with the shortcut. The shortcut is the identity, or a 1x1 convolution with batch norm
(the paper's "option B") when the block changes the stride or the width, so that the two
branches have the same shape. Convolutions have no bias because batch norm's shift replaces it.

Submodule names follow torchvision's ``BasicBlock`` (``conv1``, ``bn1``, ``conv2``, ``bn2``,
``downsample``) so that parameter names, and hence per-layer telemetry and checkpoints, read
the same as in the authors' torchvision models.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from tvlars.models.signal_layers import SignalBatchNorm, SignalConv

__all__ = ["BasicBlock"]

# 1-D blocks read (N, C, L) or, faster on CPU, (N, C, 1, L) channels-last signals.
_CONV = {1: SignalConv, 2: nn.Conv2d}
_BATCH_NORM = {1: SignalBatchNorm, 2: nn.BatchNorm2d}


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (the block's width).
        stride: stride of the first convolution and of the projection shortcut.
        spatial_dims: 1 for signals (N, C, L) or (N, C, 1, L) (see
            :mod:`tvlars.models.signal_layers`), 2 for images (N, C, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, spatial_dims: int = 2):
        super().__init__()
        if spatial_dims not in _CONV:
            raise ValueError(f"spatial_dims must be 1 or 2, got {spatial_dims}")
        conv, batch_norm = _CONV[spatial_dims], _BATCH_NORM[spatial_dims]
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = batch_norm(out_channels)
        self.conv2 = conv(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = batch_norm(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                conv(in_channels, out_channels, 1, stride=stride, bias=False),
                batch_norm(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        # In place is safe: batch norm's backward reads its input, not its output, and ReLU's
        # reads its output; it saves an allocation and a pass per activation.
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return F.relu(out, inplace=True)
