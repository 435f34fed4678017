"""The interface every model in :mod:`tvlars.models` shares: a backbone and a linear head.

A model is ``fc(forward_features(x))``: :meth:`Classifier.forward_features` maps an input
batch to pooled penultimate features of width :attr:`Classifier.feature_dim`, and ``fc`` is a
linear classifier on top. Keeping the two apart lets Barlow Twins (Zbontar et al. 2021) train
the backbone with a projector of its own and then fit a linear classifier on frozen features.
With ``num_classes=0`` the head is :class:`torch.nn.Identity`, and the model *is* the backbone.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn

__all__ = ["Classifier", "InputKind", "make_head"]

#: What a model reads: ``"image"`` is (N, C, H, W); ``"signal"`` is (N, L) or (N, C, L).
InputKind = Literal["image", "signal"]


def make_head(feature_dim: int, num_classes: int) -> nn.Module:
    """A linear classifier from ``feature_dim`` features, or no head when ``num_classes == 0``."""
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0 means no head), got {num_classes}")
    return nn.Linear(feature_dim, num_classes) if num_classes > 0 else nn.Identity()


class Classifier(nn.Module):
    """Base class: subclasses build ``self.fc`` with :func:`make_head` and define features.

    Attributes:
        input_kind: the kind of input the model reads (class attribute).
        feature_dim: width of the features :meth:`forward_features` returns.
        num_classes: number of logits :meth:`forward` returns; 0 when there is no head, in
            which case :meth:`forward` returns the features.
    """

    input_kind: ClassVar[InputKind]
    feature_dim: int
    num_classes: int
    fc: nn.Module

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled penultimate features, shape (N, feature_dim)."""
        raise NotImplementedError

    def features(self, x: Tensor) -> Tensor:
        """Alias of :meth:`forward_features`."""
        return self.forward_features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))
