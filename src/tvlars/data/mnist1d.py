"""MNIST-1D (Greydanus & Steinbach), generated locally by the ``mnist1d`` package.

The published benchmark is 5000 signals of length 40 in 10 classes, split 4000 train /
1000 test, made with seed 42. ``mnist1d.data.make_dataset(get_dataset_args())`` builds it
from the package's default arguments (its README: "build the default dataset locally");
the procedure (templates, transforms, RNG calls, the final shuffle, the global
standardization and the 80/20 split) is the same as in the 2020 code that wrote the frozen
``mnist1d_data.pkl``, so the same seed gives the same samples, up to floating-point
rounding in scipy's filters. (The frozen pickle itself cannot be compared offline;
``tests/test_data_mnist1d.py`` pins sizes, classes and the first labels of our generation.)

Other sizes (``num_samples``, a multiple of 10, split 80/20 the same way) are generated on
demand with the same procedure and cached (see :mod:`tvlars.data.cache`). Nothing is
downloaded: ``mnist1d.data.get_dataset`` (which downloads) is never called.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import random
from typing import Any

import numpy as np
import torch

from tvlars.data.cache import load_arrays, resolve_cache_dir, save_arrays
from tvlars.data.dataset import Dataset, signal_stats

log = logging.getLogger(__name__)

NAME = "mnist1d"
NUM_CLASSES = 10
DEFAULT_NUM_SAMPLES = 5000  # the published benchmark: 4000 train / 1000 test
DEFAULT_SEED = 42
CACHE_FORMAT = 1  # bump when the cached arrays change meaning


def load_mnist1d(
    num_samples: int | None = None,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """MNIST-1D as float32 ``(N, 40)`` signals and int64 labels.

    ``num_samples`` (default 5000) counts train and test together; ``seed`` defaults to 42,
    the published one. The first call for a given size and seed generates the set (a few
    seconds per 5000 samples) and caches it; later calls read the cache.
    """
    num_samples = DEFAULT_NUM_SAMPLES if num_samples is None else int(num_samples)
    seed = DEFAULT_SEED if seed is None else int(seed)
    if num_samples < NUM_CLASSES or num_samples % NUM_CLASSES:
        raise ValueError(
            f"mnist1d: num_samples={num_samples} must be a positive multiple of "
            f"{NUM_CLASSES} (the generator makes num_samples // 10 signals per class)"
        )
    # The package's version stands for its default arguments and procedure, so a cache hit
    # needs no import of mnist1d (which pulls in matplotlib and scipy: seconds).
    key = f"{num_samples} {seed} {_package_version()} {CACHE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = resolve_cache_dir(cache_dir) / NAME / f"{NAME}-n{num_samples}-seed{seed}-{digest}.npz"
    arrays = load_arrays(path)
    if arrays is None:
        log.info("generating %s (n=%d, seed %d); caching at %s", NAME, num_samples, seed, path)
        arrays = _generate(generation_args(num_samples, seed))
        save_arrays(path, arrays)
    mean, std = signal_stats(arrays["train_x"])
    return Dataset(
        name=NAME,
        kind="signal",
        train_x=torch.from_numpy(arrays["train_x"]),
        train_y=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_x=torch.from_numpy(arrays["test_x"]),
        test_y=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        num_classes=NUM_CLASSES,
        mean=mean,
        std=std,
        class_names=tuple(str(digit) for digit in range(NUM_CLASSES)),
    )


def generation_args(num_samples: int, seed: int) -> dict[str, Any]:
    """The ``mnist1d`` package's default arguments with ``num_samples`` and ``seed`` set.

    The download URL is dropped: generation never uses it.
    """
    from mnist1d.data import get_dataset_args

    args = dict(get_dataset_args(as_dict=True))
    args.pop("url", None)
    args.update(num_samples=num_samples, seed=seed)
    return args


def _package_version() -> str:
    try:
        return importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            "mnist1d: the 'mnist1d' package generates this dataset; install it with "
            "`pip install mnist1d`"
        ) from None


def _generate(args: dict[str, Any]) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # make_dataset seeds numpy's and Python's global generators; put them back afterwards
    # so that loading data does not change the caller's random streams.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        generated = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {
        "train_x": np.ascontiguousarray(generated["x"], dtype=np.float32),
        "train_y": np.asarray(generated["y"], dtype=np.int64),
        "test_x": np.ascontiguousarray(generated["x_test"], dtype=np.float32),
        "test_y": np.asarray(generated["y_test"], dtype=np.int64),
    }
