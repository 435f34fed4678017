"""Barlow Twins self-supervised pre-training and linear evaluation (``tvlars pretrain``).

- :mod:`~tvlars.pretrain.barlow_twins`: the loss, exact over the batch of all processes.
- :mod:`~tvlars.pretrain.views`: two augmented views per sample, batched on the device.
- :mod:`~tvlars.pretrain.projector`: the projector MLP and backbone + projector.
- :mod:`~tvlars.pretrain.knn`: k-nearest-neighbour accuracy of frozen features.
- :mod:`~tvlars.pretrain.linear_eval`: linear probes on frozen features.
- :mod:`~tvlars.pretrain.config`: :class:`PretrainConfig`, a :class:`~tvlars.train.RunConfig`
  with the settings of pre-training.
- :mod:`~tvlars.pretrain.loop`: :func:`pretrain`, one run folder holding both stages.
"""

from tvlars.pretrain.barlow_twins import barlow_twins_loss, cross_correlation
from tvlars.pretrain.config import PretrainConfig
from tvlars.pretrain.knn import knn_accuracy
from tvlars.pretrain.linear_eval import LinearEvalResult, linear_evaluation
from tvlars.pretrain.loop import pretrain
from tvlars.pretrain.projector import BarlowTwinsNetwork, build_projector
from tvlars.pretrain.views import TwoViews

__all__ = [
    "BarlowTwinsNetwork",
    "LinearEvalResult",
    "PretrainConfig",
    "TwoViews",
    "barlow_twins_loss",
    "build_projector",
    "cross_correlation",
    "knn_accuracy",
    "linear_evaluation",
    "pretrain",
]
