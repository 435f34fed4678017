"""The Barlow Twins projector and the network it makes with a backbone.

The projector maps backbone features to the embeddings the loss compares: Linear,
BatchNorm and ReLU blocks, then a final Linear, as in the paper (Zbontar et al. 2021,
Section 2; biases off because each Linear feeds a batch norm, or the loss's own batch
normalization). Sizes are written ``"2048-2048-4096"``: the widths of the Linear
layers' outputs, the last one being the embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

#: The paper's projector for images (Section VI-A) and a small one for MNIST-1D.
DEFAULT_PROJECTOR = {"image": "2048-2048-4096", "signal": "128-128-128"}


def parse_projector(sizes: str | Sequence[int]) -> tuple[int, ...]:
    """``"2048-2048-4096"`` (or a sequence of ints) as a tuple of positive widths."""
    if isinstance(sizes, str):
        try:
            widths = tuple(int(part) for part in sizes.split("-"))
        except ValueError:
            raise ValueError(
                f"--projector {sizes!r}: widths joined by '-', e.g. 2048-2048-4096"
            ) from None
    else:
        widths = tuple(int(width) for width in sizes)
    if not widths or min(widths) < 1:
        raise ValueError(f"--projector {sizes!r}: at least one positive width")
    return widths


def build_projector(in_features: int, sizes: str | Sequence[int]) -> nn.Sequential:
    """``Linear-BN-ReLU`` for every width but the last, then ``Linear`` to the last."""
    widths = parse_projector(sizes)
    layers: list[nn.Module] = []
    previous = in_features
    for width in widths[:-1]:
        layers += [nn.Linear(previous, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
        previous = width
    layers.append(nn.Linear(previous, widths[-1], bias=False))
    return nn.Sequential(*layers)


class BarlowTwinsNetwork(nn.Module):
    """``projector(backbone(x))`` for each of two views: what pre-training trains.

    ``backbone`` is a model built with ``num_classes=0`` (its forward returns
    ``feature_dim`` features). The views go through separately, as in the paper's code, so
    that batch norm normalizes each view over its own batch; both passes are one
    ``forward``, which is what ``DistributedDataParallel`` expects per backward.
    """

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector

    def embed(self, x: Tensor) -> Tensor:
        return self.projector(self.backbone(x))

    def forward(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        return self.embed(view1), self.embed(view2)
