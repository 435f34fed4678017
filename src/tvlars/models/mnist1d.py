"""Models for MNIST-1D (Greydanus 2020, "Scaling down deep learning", arXiv:2011.14439):
the paper's small CNN, and a small 1-D ResNet with batch norm.

Both read signals of shape (N, L) or (N, C, L); a 2-D batch is one channel. MNIST-1D signals
have length 40 and 10 classes.

:class:`MNIST1DCNN` is the reference CNN of the MNIST-1D repository (``ConvBase``): three
convolutions of 25 channels with stride 2 and padding 1, kernels 5, 3 and 3, each followed by
a ReLU, then the flattened maps go to a linear layer. A length-40 signal shrinks to
19 -> 10 -> 5 samples, so the head reads 25 * 5 = 125 features, and the model has
150 + 1,900 + 1,900 + 1,260 = 5,210 parameters for 10 classes (the paper's "about 5K").
(Kernel 5 in all three layers would give 19 -> 9 -> 4 and 7,460 parameters; that is not the
reference model.) The flatten size is computed from ``length``, not hard-coded.

:class:`MNIST1DResNet` is ours: a 3-tap convolution stem with batch norm and ReLU, three
stages of 1-D :class:`~tvlars.models.blocks.BasicBlock` (stride 2 in stages 2 and 3), global
average pooling and a linear head. Its layers compute on (N, C, 1, L) channels-last tensors
(:mod:`tvlars.models.signal_layers`), which halves a training step's time on CPU. With the
default widths 8/16/32, one block per stage and 10 classes it has 7,474 parameters (the sweep
calibration's "about 7.5K"). Unlike the CNN it has batch norm, so it exercises LARS-family
optimizers' handling of norm layers, and its pooling makes it independent of the signal
length.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from tvlars.models.blocks import BasicBlock
from tvlars.models.classifier import Classifier, make_head
from tvlars.models.signal_layers import SignalBatchNorm, SignalConv, to_signal_layout

__all__ = ["MNIST1D_LENGTH", "MNIST1DCNN", "MNIST1DResNet", "as_signal_batch", "conv_output_length"]

#: Length of an MNIST-1D signal.
MNIST1D_LENGTH = 40


def conv_output_length(length: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a 1-D convolution (dilation 1), as in :class:`torch.nn.Conv1d`."""
    return (length + 2 * padding - kernel_size) // stride + 1


def as_signal_batch(x: Tensor) -> Tensor:
    """View a batch (N, L) as (N, 1, L); pass (N, C, L) through; reject other ranks."""
    if x.dim() == 2:
        return x.unsqueeze(1)
    if x.dim() == 3:
        return x
    raise ValueError(f"expected signals of shape (N, L) or (N, C, L), got {tuple(x.shape)}")


class MNIST1DCNN(Classifier):
    """The MNIST-1D reference CNN (see the module docstring).

    Args:
        num_classes: logits of the linear head; 0 builds the backbone alone (no head).
        in_channels: channels of the input signal.
        length: length of the input signal; it fixes the width of the flattened features.
        channels: channels of each convolution.
        kernel_sizes: kernel of each convolution, first to last.
    """

    input_kind = "signal"

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        length: int = MNIST1D_LENGTH,
        channels: int = 25,
        kernel_sizes: Sequence[int] = (5, 3, 3),
    ):
        super().__init__()
        self.length = length
        # Named conv1, relu1, ... so parameter names (and per-layer telemetry) read as layers.
        self.convs = nn.Sequential()
        out_length, previous = length, in_channels
        for index, kernel_size in enumerate(kernel_sizes, start=1):
            conv = nn.Conv1d(previous, channels, kernel_size, stride=2, padding=1)
            self.convs.add_module(f"conv{index}", conv)
            self.convs.add_module(f"relu{index}", nn.ReLU())
            out_length = conv_output_length(out_length, kernel_size, stride=2, padding=1)
            previous = channels
        if out_length < 1:
            raise ValueError(
                f"signals of length {length} are too short for {len(kernel_sizes)} "
                "stride-2 convolutions"
            )
        self.feature_dim = channels * out_length
        self.num_classes = num_classes
        self.fc = make_head(self.feature_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = as_signal_batch(x)
        # The flattened width depends on the length, so a wrong length would otherwise surface
        # as an opaque matrix-shape error in the head.
        if x.shape[-1] != self.length:
            raise ValueError(f"expected signals of length {self.length}, got {x.shape[-1]}")
        return self.convs(x).flatten(1)


class MNIST1DResNet(Classifier):
    """A small 1-D ResNet with batch norm (see the module docstring).

    Args:
        num_classes: logits of the linear head; 0 builds the backbone alone (no head).
        in_channels: channels of the input signal.
        widths: channels of the stem and first stage, then of each later stage.
        blocks_per_stage: basic blocks in each stage.
    """

    input_kind = "signal"

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        widths: Sequence[int] = (8, 16, 32),
        blocks_per_stage: int = 1,
    ):
        super().__init__()
        if not widths or blocks_per_stage < 1:
            raise ValueError("need at least one stage and one block per stage")
        self.conv1 = SignalConv(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = SignalBatchNorm(widths[0])
        blocks: list[nn.Module] = []
        channels = widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride, spatial_dims=1))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = channels
        self.num_classes = num_classes
        self.fc = make_head(self.feature_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        # Every layer computes on (N, C, 1, L) channels-last: about twice as fast on CPU.
        x = F.relu(self.bn1(self.conv1(to_signal_layout(as_signal_batch(x)))))
        return self.blocks(x).mean(dim=(-2, -1))
