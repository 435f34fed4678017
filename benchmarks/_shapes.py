"""Parameter shapes of torchvision's ImageNet ResNet-18 and ResNet-50, without torchvision.

The lists follow ``torchvision.models.resnet18()/resnet50().named_parameters()``: names,
order and shapes (convolutions have no bias; every BatchNorm has a weight and a bias; the
classifier ``fc`` has both). They let the step-time benchmark build parameter lists of the
real sizes without a model, an input or a backward pass.
"""

from __future__ import annotations

from math import prod

Shape = tuple[int, ...]
NamedShapes = list[tuple[str, Shape]]

NUM_CLASSES = 1000
STAGE_WIDTHS = (64, 128, 256, 512)

#: Expected totals (torchvision's documented parameter counts), checked by the tests.
EXPECTED = {
    "resnet18": {"parameters": 11_689_512, "tensors": 62},
    "resnet50": {"parameters": 25_557_032, "tensors": 161},
}


def _conv(name: str, out_channels: int, in_channels: int, kernel: int) -> NamedShapes:
    return [(f"{name}.weight", (out_channels, in_channels, kernel, kernel))]


def _batch_norm(name: str, channels: int) -> NamedShapes:
    return [(f"{name}.weight", (channels,)), (f"{name}.bias", (channels,))]


def _basic_block(prefix: str, in_channels: int, width: int, downsample: bool) -> NamedShapes:
    """torchvision ``BasicBlock``: 3x3 conv, BN, 3x3 conv, BN (expansion 1)."""
    shapes = _conv(f"{prefix}.conv1", width, in_channels, 3) + _batch_norm(f"{prefix}.bn1", width)
    shapes += _conv(f"{prefix}.conv2", width, width, 3) + _batch_norm(f"{prefix}.bn2", width)
    if downsample:
        shapes += _conv(f"{prefix}.downsample.0", width, in_channels, 1)
        shapes += _batch_norm(f"{prefix}.downsample.1", width)
    return shapes


def _bottleneck(prefix: str, in_channels: int, width: int, downsample: bool) -> NamedShapes:
    """torchvision ``Bottleneck``: 1x1, 3x3, 1x1 convs with BN (expansion 4)."""
    out_channels = width * 4
    shapes = _conv(f"{prefix}.conv1", width, in_channels, 1) + _batch_norm(f"{prefix}.bn1", width)
    shapes += _conv(f"{prefix}.conv2", width, width, 3) + _batch_norm(f"{prefix}.bn2", width)
    shapes += _conv(f"{prefix}.conv3", out_channels, width, 1)
    shapes += _batch_norm(f"{prefix}.bn3", out_channels)
    if downsample:
        shapes += _conv(f"{prefix}.downsample.0", out_channels, in_channels, 1)
        shapes += _batch_norm(f"{prefix}.downsample.1", out_channels)
    return shapes


def _resnet(bottleneck: bool, blocks_per_stage: tuple[int, ...]) -> NamedShapes:
    block, expansion = (_bottleneck, 4) if bottleneck else (_basic_block, 1)
    shapes = _conv("conv1", 64, 3, 7) + _batch_norm("bn1", 64)
    in_channels = 64
    stages = zip(STAGE_WIDTHS, blocks_per_stage, strict=True)
    for stage, (width, blocks) in enumerate(stages, start=1):
        for index in range(blocks):
            # The first block of a stage changes the channel count (and, from stage 2 on,
            # the stride), so its shortcut needs a 1x1 projection.
            downsample = index == 0 and (stage > 1 or in_channels != width * expansion)
            shapes += block(f"layer{stage}.{index}", in_channels, width, downsample)
            in_channels = width * expansion
    shapes += [("fc.weight", (NUM_CLASSES, in_channels)), ("fc.bias", (NUM_CLASSES,))]
    return shapes


def resnet18_shapes() -> NamedShapes:
    """``(name, shape)`` of every parameter of torchvision's ``resnet18()``."""
    return _resnet(bottleneck=False, blocks_per_stage=(2, 2, 2, 2))


def resnet50_shapes() -> NamedShapes:
    """``(name, shape)`` of every parameter of torchvision's ``resnet50()``."""
    return _resnet(bottleneck=True, blocks_per_stage=(3, 4, 6, 3))


MODELS = {"resnet18": resnet18_shapes, "resnet50": resnet50_shapes}


def parameter_count(shapes: NamedShapes) -> int:
    return sum(prod(shape) for _, shape in shapes)
