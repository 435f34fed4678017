"""Datasets as tensors, and device-resident batches of them.

- :func:`load_dataset` reads or generates a :class:`Dataset` by name: ``mnist1d``
  (generated locally, the default), ``cifar10``, ``cifar100``, ``tinyimagenet`` (from
  their standard archives or folders; never downloaded) and ``synthetic``.
- :class:`DeviceBatches` shuffles, shards, cuts and augments training micro-batches on the
  device; :class:`EvalBatches` walks the test set once across ranks.
- Archives are untrusted input: :mod:`tvlars.data.archives` refuses members that would
  leave their folder, :mod:`tvlars.data.safe_pickle` pickles that would run code.

This layer sits on ``torch`` and ``numpy`` only; it knows nothing of models or training.
"""

from tvlars.data.archives import safe_extract
from tvlars.data.batches import DeviceBatches, EvalBatches
from tvlars.data.cache import resolve_cache_dir
from tvlars.data.cifar import load_cifar10, load_cifar100
from tvlars.data.dataset import Dataset
from tvlars.data.errors import DatasetNotFoundError, UnsafeArchiveError, UnsafePickleError
from tvlars.data.mnist1d import load_mnist1d
from tvlars.data.registry import DATASET_NAMES, load_dataset
from tvlars.data.synthetic import make_synthetic
from tvlars.data.tiny_imagenet import load_tiny_imagenet

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "DatasetNotFoundError",
    "DeviceBatches",
    "EvalBatches",
    "UnsafeArchiveError",
    "UnsafePickleError",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_mnist1d",
    "load_tiny_imagenet",
    "make_synthetic",
    "resolve_cache_dir",
    "safe_extract",
]
