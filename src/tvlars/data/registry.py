"""One entry point for every dataset: ``load_dataset(name, ...)``."""

from __future__ import annotations

import os
from collections.abc import Callable

from tvlars.data.cifar import load_cifar10, load_cifar100
from tvlars.data.dataset import Dataset
from tvlars.data.mnist1d import load_mnist1d
from tvlars.data.synthetic import make_synthetic
from tvlars.data.tiny_imagenet import load_tiny_imagenet

SYNTHETIC_NUM_SAMPLES = 1000
SYNTHETIC_TEST_FRACTION = 0.2  # the same 80/20 split as MNIST-1D


def _mnist1d(data_dir, num_samples, cache_dir, seed, **options) -> Dataset:
    _reject(options, "mnist1d")
    return load_mnist1d(num_samples=num_samples, seed=seed, cache_dir=cache_dir)


def _fixed_size(loader: Callable[..., Dataset], name: str, cached: bool):
    def load(data_dir, num_samples, cache_dir, seed, **options) -> Dataset:
        _reject(options, name)
        if num_samples is not None:
            raise ValueError(
                f"{name} has a fixed size: num_samples applies to the generated datasets "
                "(mnist1d, synthetic) only"
            )
        return loader(data_dir, cache_dir=cache_dir) if cached else loader(data_dir)

    return load


def _synthetic(
    data_dir, num_samples, cache_dir, seed, *, sample_shape=(3, 32, 32), num_classes=10
) -> Dataset:
    total = SYNTHETIC_NUM_SAMPLES if num_samples is None else int(num_samples)
    num_test = max(1, round(total * SYNTHETIC_TEST_FRACTION))
    return make_synthetic(
        total - num_test,
        num_test,
        sample_shape=sample_shape,
        num_classes=num_classes,
        seed=0 if seed is None else seed,
    )


def _reject(options: dict, name: str) -> None:
    if options:
        raise TypeError(f"{name} takes no options {sorted(options)}")


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "mnist1d": _mnist1d,
    "cifar10": _fixed_size(load_cifar10, "cifar10", cached=False),
    "cifar100": _fixed_size(load_cifar100, "cifar100", cached=False),
    "tinyimagenet": _fixed_size(load_tiny_imagenet, "tinyimagenet", cached=True),
    "synthetic": _synthetic,
}

DATASET_NAMES: tuple[str, ...] = tuple(_LOADERS)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    num_samples: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int | None = None,
    **options,
) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) as a :class:`Dataset`.

    - ``mnist1d``: generated locally; ``num_samples`` (default 5000: 4000 train / 1000
      test) and ``seed`` (default 42, the published set); cached under ``cache_dir``.
    - ``cifar10``, ``cifar100``: read from ``data_dir`` (archive or extracted folder).
    - ``tinyimagenet``: read from ``data_dir`` (zip or folder), decoded once, cached.
    - ``synthetic``: random tensors; ``num_samples`` in all (default 1000, 80/20 split),
      ``seed`` (default 0), options ``sample_shape=(3, 32, 32)``, ``num_classes=10``.

    ``data_dir`` defaults to ``$TVLARS_DATA``, ``cache_dir`` to ``$TVLARS_CACHE`` or
    ``~/.cache/tvlars``. Nothing is ever downloaded.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    return _LOADERS[key](data_dir, num_samples, cache_dir, seed, **options)
