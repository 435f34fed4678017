"""load_dataset by name, synthetic data, the Dataset record and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tvlars.data import DATASET_NAMES, Dataset, load_dataset, make_synthetic, resolve_cache_dir
from tvlars.data import cache as cache_module
from tvlars.data.cache import load_arrays, save_arrays
from tvlars.data.testing import write_cifar, write_tiny_imagenet
from tvlars.errors import UserError


def test_the_registry_knows_the_five_datasets():
    assert set(DATASET_NAMES) == {"mnist1d", "cifar10", "cifar100", "tinyimagenet", "synthetic"}


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: mnist1d, cifar10"):
        load_dataset("imagenet")


def test_names_are_read_without_case_dashes_or_underscores(tmp_path):
    write_cifar(tmp_path)
    assert load_dataset("CIFAR-10", tmp_path).name == "cifar10"
    write_tiny_imagenet(tmp_path)
    assert load_dataset("tiny_imagenet", tmp_path, cache_dir=tmp_path / "c").num_classes == 3


def test_mnist1d_by_name_passes_size_seed_and_cache(tmp_path):
    dataset = load_dataset("mnist1d", num_samples=100, seed=3, cache_dir=tmp_path)
    assert (dataset.num_train, dataset.num_test) == (80, 20)
    assert list((tmp_path / "mnist1d").glob("mnist1d-n100-seed3-*.npz"))


def test_fixed_size_datasets_refuse_num_samples(tmp_path):
    write_cifar(tmp_path)
    with pytest.raises(ValueError, match="fixed size"):
        load_dataset("cifar10", tmp_path, num_samples=10)


def test_synthetic_by_name_splits_num_samples_80_20():
    dataset = load_dataset("synthetic", num_samples=500, sample_shape=(3, 8, 8), num_classes=4)
    assert (dataset.num_train, dataset.num_test) == (400, 100)
    assert dataset.sample_shape == (3, 8, 8) and dataset.num_classes == 4


def test_synthetic_images_are_uint8_and_signals_float32():
    assert make_synthetic(sample_shape=(3, 4, 4)).train_x.dtype == torch.uint8
    signals = make_synthetic(sample_shape=(40,))
    assert signals.kind == "signal" and signals.train_x.dtype == torch.float32


def test_synthetic_data_depends_only_on_the_seed():
    assert torch.equal(make_synthetic(seed=4).train_x, make_synthetic(seed=4).train_x)
    assert not torch.equal(make_synthetic(seed=4).train_x, make_synthetic(seed=5).train_x)


def test_synthetic_labels_lie_in_range():
    dataset = make_synthetic(1000, 10, num_classes=7)
    assert dataset.train_y.min() >= 0 and dataset.train_y.max() == 6


def test_dataset_refuses_float_images():
    with pytest.raises(ValueError, match="uint8"):
        Dataset(
            name="bad",
            kind="image",
            train_x=torch.zeros(2, 3, 4, 4),
            train_y=torch.zeros(2, dtype=torch.int64),
            test_x=torch.zeros(1, 3, 4, 4),
            test_y=torch.zeros(1, dtype=torch.int64),
            num_classes=2,
            mean=(0.5,) * 3,
            std=(0.5,) * 3,
        )


def test_cache_dir_is_the_argument_then_the_variable_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("TVLARS_CACHE")
    assert resolve_cache_dir() == Path.home() / ".cache" / "tvlars"


def test_saved_arrays_load_back(tmp_path):
    arrays = {"x": np.arange(6, dtype=np.uint8).reshape(2, 3), "names": np.array(["a", "b"])}
    save_arrays(tmp_path / "sub" / "a.npz", arrays)
    loaded = load_arrays(tmp_path / "sub" / "a.npz")
    assert np.array_equal(loaded["x"], arrays["x"]) and loaded["names"].tolist() == ["a", "b"]


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(cache_module.np, "savez", disk_full)
    # Refused as bad input (the cache folder cannot hold the file), naming the file.
    with pytest.raises(UserError, match="a.npz"):
        save_arrays(tmp_path / "a.npz", {"x": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_cache_file_counts_as_missing(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"truncated")
    assert load_arrays(tmp_path / "a.npz") is None
