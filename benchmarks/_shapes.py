"""Parameter shapes of ImageNet models, without the libraries that define them.

ResNet-18 and ResNet-50 follow ``torchvision.models.resnet18()/resnet50().named_parameters()``:
names, order and shapes (convolutions have no bias; every BatchNorm has a weight and a bias;
the classifier ``fc`` has both). ViT-S/16 follows timm's ``vit_small_patch16_224`` (DeiT-S):
a transformer's many small tensors (LayerNorm scales and shifts, biases) beside a few large
matrices, which is where a per-tensor cost shows. The MNIST-1D ResNet is this project's own
model, read from tvlars. The lists let the step-time benchmarks build parameter lists of the
real sizes without a model, an input or a backward pass.
"""

from __future__ import annotations

from math import prod

Shape = tuple[int, ...]
NamedShapes = list[tuple[str, Shape]]

NUM_CLASSES = 1000
STAGE_WIDTHS = (64, 128, 256, 512)

#: Expected totals (torchvision's documented parameter counts; timm's 22.05M for ViT-S/16),
#: checked by the tests.
EXPECTED = {
    "resnet18": {"parameters": 11_689_512, "tensors": 62},
    "resnet50": {"parameters": 25_557_032, "tensors": 161},
    "vit_s16": {"parameters": 22_050_664, "tensors": 152},
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


def vit_s16_shapes(
    width: int = 384, depth: int = 12, patch: int = 16, image: int = 224, mlp_ratio: int = 4
) -> NamedShapes:
    """``(name, shape)`` of every parameter of timm's ``vit_small_patch16_224``: a class
    token, learned position embeddings for the class token and the 14 x 14 patches, a
    16 x 16 patch convolution, 12 pre-norm blocks (LayerNorm, fused qkv attention, MLP with
    ratio 4) and a final LayerNorm and classifier."""
    tokens = (image // patch) ** 2 + 1
    hidden = width * mlp_ratio
    shapes: NamedShapes = [
        ("cls_token", (1, 1, width)),
        ("pos_embed", (1, tokens, width)),
        ("patch_embed.proj.weight", (width, 3, patch, patch)),
        ("patch_embed.proj.bias", (width,)),
    ]
    for index in range(depth):
        block = f"blocks.{index}"
        shapes += [
            (f"{block}.norm1.weight", (width,)),
            (f"{block}.norm1.bias", (width,)),
            (f"{block}.attn.qkv.weight", (3 * width, width)),
            (f"{block}.attn.qkv.bias", (3 * width,)),
            (f"{block}.attn.proj.weight", (width, width)),
            (f"{block}.attn.proj.bias", (width,)),
            (f"{block}.norm2.weight", (width,)),
            (f"{block}.norm2.bias", (width,)),
            (f"{block}.mlp.fc1.weight", (hidden, width)),
            (f"{block}.mlp.fc1.bias", (hidden,)),
            (f"{block}.mlp.fc2.weight", (width, hidden)),
            (f"{block}.mlp.fc2.bias", (width,)),
        ]
    shapes += [
        ("norm.weight", (width,)),
        ("norm.bias", (width,)),
        ("head.weight", (NUM_CLASSES, width)),
        ("head.bias", (NUM_CLASSES,)),
    ]
    return shapes


def mnist1d_resnet_shapes() -> NamedShapes:
    """``(name, shape)`` of every parameter of this project's own MNIST-1D 1-D ResNet (10
    classes), the model of the README's main job: 29 small tensors, where a step's cost is
    per-tensor work rather than memory traffic. Read from the model itself."""
    from tvlars.models import build_model

    model = build_model("mnist1d-resnet", num_classes=10, init=None)
    return [(name, tuple(param.shape)) for name, param in model.named_parameters()]


MODELS = {
    "resnet18": resnet18_shapes,
    "resnet50": resnet50_shapes,
    "vit_s16": vit_s16_shapes,
    "mnist1d_resnet": mnist1d_resnet_shapes,
}


def parameter_count(shapes: NamedShapes) -> int:
    return sum(prod(shape) for _, shape in shapes)
