"""Tiny ImageNet from tiny-imagenet-200/ or its zip, decoded once and cached."""

from __future__ import annotations

import pytest
import torch

from tvlars.data import DatasetNotFoundError, load_tiny_imagenet
from tvlars.data import tiny_imagenet as tiny
from tvlars.data.testing import TINY_WNIDS, jpeg_bytes, write_tiny_imagenet

# Solid JPEG colours come back within a few levels of what was encoded.
JPEG_TOLERANCE = 3


def close(pixel: torch.Tensor, expected) -> bool:
    return bool((pixel.int() - torch.tensor(expected)).abs().max() <= JPEG_TOLERANCE)


def test_folder_loads_train_and_val_as_uint8_64x64_rgb(tmp_path):
    write_tiny_imagenet(tmp_path, train_per_class=2, num_val=4)
    dataset = load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")
    assert dataset.train_x.shape == (6, 3, 64, 64) and dataset.train_x.dtype == torch.uint8
    assert dataset.test_x.shape == (4, 3, 64, 64)
    assert dataset.num_classes == 3 and dataset.class_names == TINY_WNIDS


def test_training_labels_follow_the_order_of_wnids_txt(tmp_path):
    write_tiny_imagenet(tmp_path, train_per_class=2)
    dataset = load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")
    assert dataset.train_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert close(dataset.train_x[3, :, 10, 10], (60, 10, 200))  # class 1, image 1


def test_validation_labels_come_from_val_annotations(tmp_path):
    write_tiny_imagenet(tmp_path, num_val=4)
    dataset = load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")
    assert dataset.test_y.tolist() == [0, 1, 2, 0]
    assert close(dataset.test_x[0, :, 5, 5], (255, 0, 0))
    assert close(dataset.test_x[2, :, 5, 5], (0, 0, 255))


def test_grayscale_jpegs_become_three_equal_channels(tmp_path):
    write_tiny_imagenet(tmp_path)  # the first training image is grayscale
    first = load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache").train_x[0]
    assert torch.equal(first[0], first[1]) and torch.equal(first[1], first[2])
    assert close(first[:, 0, 0], (128, 128, 128))


def test_zip_gives_the_same_tensors_as_the_folder(tmp_path):
    write_tiny_imagenet(tmp_path / "folder")
    archive = write_tiny_imagenet(tmp_path / "zip", as_zip=True)
    from_folder = load_tiny_imagenet(tmp_path / "folder", cache_dir=tmp_path / "c1")
    from_zip = load_tiny_imagenet(archive, cache_dir=tmp_path / "c2")
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(from_folder, name), getattr(from_zip, name))


def test_folder_holding_the_zip_is_accepted(tmp_path):
    write_tiny_imagenet(tmp_path, as_zip=True)
    assert load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache").num_test == 4


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    write_tiny_imagenet(tmp_path)
    first = load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")

    def no_decoding(*args):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(tiny, "decode_image", no_decoding)
    second = load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")
    assert torch.equal(first.train_x, second.train_x) and first.mean == second.mean


def test_cache_is_one_npz_under_tinyimagenet_with_no_temporary_left(tmp_path):
    write_tiny_imagenet(tmp_path)
    load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")
    files = [p.name for p in (tmp_path / "cache" / "tinyimagenet").iterdir()]
    assert len(files) == 1 and files[0].startswith("tinyimagenet-") and files[0].endswith(".npz")


def test_a_changed_copy_is_decoded_again(tmp_path, monkeypatch):
    folder = write_tiny_imagenet(tmp_path)
    load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")
    extra = folder / "train" / TINY_WNIDS[1] / "images" / f"{TINY_WNIDS[1]}_9.JPEG"
    extra.write_bytes(jpeg_bytes((1, 2, 3)))
    assert load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache").num_train == 7


def test_wrong_folder_error_lists_expected_and_found(tmp_path):
    (tmp_path / "imagenet").mkdir()
    with pytest.raises(DatasetNotFoundError) as error:
        load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "tiny-imagenet-200.zip" in message and "val/val_annotations.txt" in message
    assert "imagenet/" in message


def test_folder_without_annotations_names_the_missing_file(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    (folder / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks val/val_annotations.txt"):
        load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")


def test_annotation_with_an_unknown_wnid_is_reported_with_its_line(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    annotations = folder / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match="line 5 names an unknown wnid"):
        load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")


def test_an_image_of_the_wrong_size_is_reported_by_name(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    wnid = TINY_WNIDS[2]
    (folder / "train" / wnid / "images" / f"{wnid}_0.JPEG").write_bytes(
        jpeg_bytes((0, 0, 0), size=32)
    )
    with pytest.raises(ValueError, match=f"{wnid}_0.JPEG is 32x32"):
        load_tiny_imagenet(tmp_path, cache_dir=tmp_path / "cache")
