"""ResNet-18 and ResNet-34 for images (He et al. 2016, "Deep Residual Learning for Image
Recognition", Table 1), with the ImageNet stem or the CIFAR stem.

Both stack :class:`~tvlars.models.blocks.BasicBlock` in four stages of widths 64, 128, 256
and 512 ([2, 2, 2, 2] blocks for ResNet-18, [3, 4, 6, 3] for ResNet-34); stages 2-4 halve the
resolution in their first block. Global average pooling and a linear head follow.

Stems:
    ``"imagenet"``: 7x7 stride-2 convolution to 64 channels, batch norm, ReLU, 3x3 stride-2
        max-pool; the input reaches ``layer1`` at a quarter of its resolution. This is the
        torchvision model the TVLARS authors trained as-is on CIFAR-10 (32x32) and Tiny
        ImageNet (64x64), so it is what reproducing the paper needs. With 1000 classes its
        parameter counts equal torchvision's: 11,689,512 (ResNet-18), 21,797,672 (ResNet-34).
    ``"cifar"``: 3x3 stride-1 convolution to 64 channels, batch norm, ReLU, no max-pool, as in
        the CIFAR experiments of He et al. (Section 4.2) and most CIFAR codebases; 32x32
        inputs reach ``layer1`` at 32x32, which costs more compute and usually generalizes
        better on small images. It has 9,408 - 1,728 = 7,680 fewer parameters.

Module names follow torchvision (``conv1``, ``bn1``, ``maxpool``, ``layer1``..``layer4``,
``fc``), so parameter names match the authors' models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tvlars.models.blocks import BasicBlock
from tvlars.models.classifier import Classifier, make_head

__all__ = ["STEMS", "STAGE_WIDTHS", "ResNet", "Stem", "resnet18", "resnet34"]

Stem = Literal["imagenet", "cifar"]
STEMS: tuple[Stem, ...] = ("imagenet", "cifar")
STAGE_WIDTHS = (64, 128, 256, 512)


class ResNet(Classifier):
    """A ResNet of basic blocks on images (N, in_channels, H, W).

    Args:
        blocks_per_stage: number of basic blocks in each of the four stages.
        num_classes: logits of the linear head; 0 builds the backbone alone (no head).
        in_channels: channels of the input images.
        stem: ``"imagenet"`` or ``"cifar"`` (see the module docstring).
    """

    input_kind = "image"

    def __init__(
        self,
        blocks_per_stage: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        stem: Stem = "imagenet",
    ):
        super().__init__()
        if len(blocks_per_stage) != len(STAGE_WIDTHS):
            raise ValueError(f"need {len(STAGE_WIDTHS)} stages, got {list(blocks_per_stage)}")
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        elif stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"unknown stem {stem!r}; expected one of {list(STEMS)}")
        self.stem = stem
        self.bn1 = nn.BatchNorm2d(64)

        channels = 64
        for index, (width, blocks) in enumerate(zip(STAGE_WIDTHS, blocks_per_stage), start=1):
            stride = 1 if index == 1 else 2
            stage = []
            for block in range(blocks):
                stage.append(BasicBlock(channels, width, stride if block == 0 else 1))
                channels = width
            self.add_module(f"layer{index}", nn.Sequential(*stage))

        self.feature_dim = channels
        self.num_classes = num_classes
        self.fc = make_head(self.feature_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def resnet18(num_classes: int = 1000, in_channels: int = 3, stem: Stem = "imagenet") -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]."""
    return ResNet((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels, stem=stem)


def resnet34(num_classes: int = 1000, in_channels: int = 3, stem: Stem = "imagenet") -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]."""
    return ResNet((3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels, stem=stem)
