"""k-nearest-neighbour accuracy of frozen features: a cheap gauge of a representation.

No training: every test sample takes the ``k`` training samples whose L2-normalized
features are most similar to its own (cosine similarity ``s``) and lets them vote with
weights ``exp(s / T)`` (Wu et al. 2018, "Unsupervised feature learning via
non-parametric instance discrimination"; the weighting most SSL codebases report, with
``k = 200`` and ``T = 0.1``). The predicted class is the one with the largest total
weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_K = 200
DEFAULT_TEMPERATURE = 0.1


@torch.no_grad()
def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    num_classes: int,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    chunk: int = 1024,
) -> Tensor:
    """Class scores ``(N_test, num_classes)`` by weighted votes of the ``k`` nearest
    training samples; test samples go ``chunk`` at a time to bound memory."""
    train = F.normalize(train_features.float(), dim=1)
    k = min(k, len(train))
    scores = []
    for first in range(0, len(test_features), chunk):
        test = F.normalize(test_features[first : first + chunk].float(), dim=1)
        similarity, neighbour = (test @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(test), num_classes, device=test.device)
        votes.scatter_add_(1, train_labels[neighbour], torch.exp(similarity / temperature))
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
) -> float:
    """Top-1 accuracy (%) of :func:`knn_predict` on the test samples."""
    scores = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    return (scores.argmax(dim=1) == test_labels).sum().item() * 100 / len(test_labels)
