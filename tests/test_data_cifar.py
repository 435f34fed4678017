"""CIFAR-10/100 from the standard python-version archive or its extracted folder."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from tvlars.data import DatasetNotFoundError, UnsafePickleError, load_cifar10, load_cifar100
from tvlars.data.testing import write_cifar


def test_cifar10_folder_loads_as_uint8_images_with_labels(tmp_path):
    write_cifar(tmp_path, num_train=10, num_test=4)
    dataset = load_cifar10(tmp_path)
    assert dataset.train_x.shape == (10, 3, 32, 32) and dataset.train_x.dtype == torch.uint8
    assert dataset.test_x.shape == (4, 3, 32, 32)
    assert dataset.train_y.dtype == torch.int64 and len(dataset.train_y) == 10
    assert dataset.num_classes == 10 and dataset.kind == "image"
    assert dataset.class_names == tuple(f"class_{i}" for i in range(10))


def test_cifar10_archive_gives_the_same_tensors_as_the_folder(tmp_path):
    write_cifar(tmp_path / "folder", seed=3)
    write_cifar(tmp_path / "archive", seed=3, as_archive=True)
    from_folder = load_cifar10(tmp_path / "folder")
    from_archive = load_cifar10(tmp_path / "archive")
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(from_folder, name), getattr(from_archive, name))


def test_data_dir_may_be_the_extracted_folder_itself(tmp_path):
    folder = write_cifar(tmp_path)
    assert load_cifar10(folder).num_train == 10


def test_data_dir_may_be_the_archive_file(tmp_path):
    archive = write_cifar(tmp_path, as_archive=True)
    assert load_cifar10(archive).num_train == 10


def test_training_batches_are_joined_in_file_order(tmp_path):
    images = np.zeros((10, 3, 32, 32), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(10)  # spread over data_batch_1..5, two per file
    write_cifar(tmp_path, train_images=images)
    assert load_cifar10(tmp_path).train_x[:, 0, 0, 0].tolist() == list(range(10))


def test_rows_are_red_then_green_then_blue_planes(tmp_path):
    red = np.zeros((10, 3, 32, 32), dtype=np.uint8)
    red[0, 0] = 255
    write_cifar(tmp_path, train_images=red)
    first = load_cifar10(tmp_path).train_x[0]
    assert (first.permute(1, 2, 0) == torch.tensor([255, 0, 0], dtype=torch.uint8)).all()


def test_pixel_c_y_x_is_row_value_c_times_1024_plus_y_times_32_plus_x(tmp_path):
    row = (np.arange(3072) % 251).astype(np.uint8)
    write_cifar(tmp_path, train_images=np.tile(row, (10, 1)).reshape(10, 3, 32, 32))
    image = load_cifar10(tmp_path).train_x[0]
    for c, y, x in [(0, 0, 1), (1, 5, 7), (2, 31, 31)]:
        assert image[c, y, x] == row[c * 1024 + y * 32 + x]


def test_cifar100_uses_the_fine_labels_from_folder_and_archive(tmp_path):
    write_cifar(tmp_path / "folder", "cifar100", seed=1)
    write_cifar(tmp_path / "archive", "cifar100", seed=1, as_archive=True)
    for where in ("folder", "archive"):
        dataset = load_cifar100(tmp_path / where)
        assert dataset.num_classes == 100 and dataset.train_x.shape == (10, 3, 32, 32)
        assert len(dataset.class_names) == 100
    expected = np.random.default_rng(1)
    expected.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
    assert dataset.train_y.tolist() == expected.integers(0, 100, 10).tolist()


def test_wrong_folder_error_lists_expected_and_found_files(tmp_path):
    (tmp_path / "holiday-photos").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetNotFoundError) as error:
        load_cifar10(tmp_path)
    message = str(error.value)
    assert "cifar-10-python.tar.gz" in message and "data_batch_1" in message
    assert "holiday-photos/" in message and "notes.txt" in message


def test_incomplete_folder_error_names_the_missing_file(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks data_batch_3"):
        load_cifar10(tmp_path)


def test_incomplete_folder_falls_back_to_the_archive_beside_it(tmp_path):
    (write_cifar(tmp_path) / "test_batch").unlink()
    write_cifar(tmp_path, as_archive=True)
    assert load_cifar10(tmp_path).num_test == 4


def test_missing_data_dir_asks_for_one_and_says_nothing_is_downloaded(monkeypatch):
    monkeypatch.delenv("TVLARS_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match="never downloads"):
        load_cifar10()


def test_data_dir_defaults_to_the_tvlars_data_variable(tmp_path, monkeypatch):
    write_cifar(tmp_path)
    monkeypatch.setenv("TVLARS_DATA", str(tmp_path))
    assert load_cifar10().num_train == 10


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    folder = write_cifar(tmp_path)
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_a_batch_with_the_wrong_shape_is_reported(tmp_path):
    folder = write_cifar(tmp_path)
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match="test_batch"):
        load_cifar10(tmp_path)


def test_channel_statistics_are_in_units_of_pixel_over_255(tmp_path):
    write_cifar(tmp_path, num_train=50)
    dataset = load_cifar10(tmp_path)
    pixels = dataset.train_x.double() / 255
    expected_mean = pixels.mean(dim=(0, 2, 3))
    expected_std = pixels.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False)
    assert np.allclose(dataset.mean, expected_mean.numpy(), atol=1e-12)
    assert np.allclose(dataset.std, expected_std.numpy(), atol=1e-12)
