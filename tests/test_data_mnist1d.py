"""MNIST-1D: generated locally (never downloaded), the published split by default, cached."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tvlars.data import load_mnist1d
from tvlars.data import mnist1d as mnist1d_module


@pytest.fixture(scope="session")
def mnist1d_cache(tmp_path_factory):
    """A cache folder holding the default set, generated once for the whole session."""
    cache = tmp_path_factory.mktemp("mnist1d-cache")
    load_mnist1d(cache_dir=cache)
    return cache


@pytest.fixture()
def no_generation(monkeypatch):
    def refuse(args):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(mnist1d_module, "_generate", refuse)


def test_default_is_the_published_4000_train_1000_test_split(mnist1d_cache):
    dataset = load_mnist1d(cache_dir=mnist1d_cache)
    assert dataset.num_train == 4000 and dataset.num_test == 1000


def test_samples_are_float32_signals_of_length_40(mnist1d_cache):
    dataset = load_mnist1d(cache_dir=mnist1d_cache)
    assert dataset.kind == "signal" and dataset.sample_shape == (40,)
    assert dataset.train_x.dtype == torch.float32 and dataset.test_x.dtype == torch.float32


def test_there_are_10_classes_each_with_500_samples(mnist1d_cache):
    dataset = load_mnist1d(cache_dir=mnist1d_cache)
    labels = torch.cat([dataset.train_y, dataset.test_y])
    assert dataset.num_classes == 10
    assert torch.bincount(labels, minlength=10).tolist() == [500] * 10


def test_default_generation_is_seed_42_and_reproducible(mnist1d_cache):
    # Pins the generator's output: the first labels of the seed-42 set.
    dataset = load_mnist1d(cache_dir=mnist1d_cache)
    assert dataset.train_y[:10].tolist() == [2, 6, 4, 5, 6, 6, 6, 0, 3, 1]
    assert dataset.test_y[:10].tolist() == [2, 6, 3, 9, 4, 3, 1, 9, 5, 2]
    assert np.allclose(dataset.train_x[0, :3], [-0.33200567, -0.47191037, -0.77869708])


def test_signals_come_standardized(mnist1d_cache):
    dataset = load_mnist1d(cache_dir=mnist1d_cache)
    assert abs(dataset.mean[0]) < 0.05 and abs(dataset.std[0] - 1) < 0.05


def test_second_load_reads_the_cache(mnist1d_cache, no_generation):
    assert load_mnist1d(cache_dir=mnist1d_cache).num_train == 4000


def test_cache_file_names_size_and_seed(mnist1d_cache):
    names = [path.name for path in (mnist1d_cache / "mnist1d").glob("*.npz")]
    assert any(name.startswith("mnist1d-n5000-seed42-") for name in names)


def test_another_size_is_generated_split_80_20_and_cached(tmp_path, monkeypatch):
    # Any size takes the same path as a larger one (the size only sets the loop count);
    # 300 keeps the test fast where 50000 would take half a minute.
    dataset = load_mnist1d(num_samples=300, cache_dir=tmp_path)
    assert (dataset.num_train, dataset.num_test) == (240, 60)
    assert torch.bincount(torch.cat([dataset.train_y, dataset.test_y])).tolist() == [30] * 10
    monkeypatch.setattr(mnist1d_module, "_generate", None)  # a second generation would fail
    assert torch.equal(load_mnist1d(num_samples=300, cache_dir=tmp_path).train_x, dataset.train_x)


def test_a_different_seed_gives_a_different_set(tmp_path):
    first = load_mnist1d(num_samples=100, seed=1, cache_dir=tmp_path)
    second = load_mnist1d(num_samples=100, seed=2, cache_dir=tmp_path)
    assert not torch.equal(first.train_x, second.train_x)


def test_generation_leaves_the_global_random_generators_alone(tmp_path):
    np.random.seed(7)
    random.seed(7)
    expected = (np.random.rand(), random.random())
    np.random.seed(7)
    random.seed(7)
    load_mnist1d(num_samples=100, cache_dir=tmp_path)
    assert (np.random.rand(), random.random()) == expected


def test_num_samples_must_be_a_multiple_of_10(tmp_path):
    with pytest.raises(ValueError, match="multiple of 10"):
        load_mnist1d(num_samples=105, cache_dir=tmp_path)


def test_cache_dir_defaults_to_the_tvlars_cache_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TVLARS_CACHE", str(tmp_path))
    load_mnist1d(num_samples=100)
    assert list((tmp_path / "mnist1d").glob("mnist1d-n100-seed42-*.npz"))
