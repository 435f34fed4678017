"""Linear evaluation and k-NN accuracy: frozen backbones, probes that fit, votes that count."""

from __future__ import annotations

import torch
from torch import nn

from tvlars.data.synthetic import make_synthetic
from tvlars.models import build_model
from tvlars.pretrain.knn import knn_accuracy
from tvlars.pretrain.linear_eval import (
    dataset_features,
    extract_features,
    fit_linear_probe,
    linear_evaluation,
    top_k_accuracy,
)


def clusters(per_class: int = 40, classes: int = 4, dim: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centres = 5 * torch.randn(classes, dim, generator=generator)
    labels = torch.arange(classes).repeat_interleave(per_class)
    features = centres[labels] + torch.randn(len(labels), dim, generator=generator)
    return features, labels


def test_linear_evaluation_leaves_the_frozen_backbone_bit_identical():
    dataset = make_synthetic(64, 32, sample_shape=(3, 8, 8), num_classes=4, seed=0)
    backbone = build_model("resnet18-cifar", 0, generator=torch.Generator().manual_seed(0))
    backbone.train()  # as pre-training leaves it
    before = {name: value.clone() for name, value in backbone.state_dict().items()}
    train, test = dataset_features(backbone, dataset, torch.device("cpu"), batch_size=16)
    linear_evaluation(train, test, dataset.num_classes, epochs=3)
    after = backbone.state_dict()
    assert before.keys() == after.keys()
    for name in before:  # weights and batch-norm statistics, including num_batches_tracked
        assert torch.equal(before[name], after[name]), name
    assert all(p.grad is None for p in backbone.parameters())
    assert backbone.training  # its mode is given back


def test_features_are_computed_in_eval_mode_without_augmentation():
    backbone = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    inputs = torch.randn(10, 4)
    batches = [(inputs[:6], torch.zeros(6)), (inputs[6:], torch.zeros(4))]
    features, labels = extract_features(backbone, batches)
    backbone.eval()
    torch.testing.assert_close(features, backbone(inputs).detach())
    assert labels.shape == (10,)


def test_a_probe_separates_separable_classes():
    train, test = clusters(seed=0), clusters(seed=0)
    result = linear_evaluation(train, test, num_classes=4, epochs=20)
    assert result.top1 == 100.0 and result.top5 == 100.0 and result.train_top1 == 100.0


def test_a_probe_is_deterministic_given_its_seed():
    features, labels = clusters()
    first = fit_linear_probe(features, labels, 4, epochs=3, seed=1)
    again = fit_linear_probe(features, labels, 4, epochs=3, seed=1)
    torch.testing.assert_close(first.linear.weight, again.linear.weight, rtol=0, atol=0)


def test_top_k_counts_a_label_among_the_k_largest_logits():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    labels = torch.tensor([1, 2])
    assert top_k_accuracy(logits, labels, 1) == 50.0
    assert top_k_accuracy(logits, labels, 2) == 100.0


def test_knn_finds_the_class_of_well_separated_clusters():
    train_x, train_y = clusters(seed=0)
    test_x, test_y = clusters(per_class=10, seed=0)
    assert knn_accuracy(train_x, train_y, test_x, test_y, num_classes=4, k=20) == 100.0


def test_knn_votes_are_weighted_by_similarity():
    # One very close neighbour of class 0 outvotes two distant ones of class 1.
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.2, 1.0]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[1.0, 0.05]])
    assert knn_accuracy(train, labels, test, torch.tensor([0]), num_classes=2, k=3) == 100.0
