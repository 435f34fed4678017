"""Tiny ImageNet (200 classes, 64x64) from ``tiny-imagenet-200/`` or its zip.

Layout read (the official one)::

    tiny-imagenet-200/wnids.txt                      one WordNet id per line; label = line
    tiny-imagenet-200/train/<wnid>/images/*.JPEG     500 training images per class
    tiny-imagenet-200/val/images/*.JPEG              10000 validation images
    tiny-imagenet-200/val/val_annotations.txt        file <TAB> wnid <TAB> box (4 numbers)

The validation set is the test set (the official ``test/`` images have no labels). Some
JPEGs are grayscale (and a few may be CMYK); all are converted to RGB. Decoding about 110k
JPEGs takes a while, so the result is cached once as uint8 arrays (see
:mod:`tvlars.data.cache`) under a fingerprint of the source: file names, file sizes, the
class list and the annotations, so that a different copy never reuses a stale cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tvlars.data.archives import open_zip
from tvlars.data.cache import load_arrays, resolve_cache_dir, save_arrays
from tvlars.data.dataset import Dataset, image_channel_stats
from tvlars.data.locate import Source, find_source

log = logging.getLogger(__name__)

NAME = "tinyimagenet"
FOLDER_NAME = "tiny-imagenet-200"
ARCHIVE_NAME = "tiny-imagenet-200.zip"
REQUIRED = ("wnids.txt", "train/", "val/images/", "val/val_annotations.txt")
IMAGE_SIZE = 64
IMAGE_SUFFIXES = (".jpeg", ".jpg")
CACHE_FORMAT = 1  # bump when the cached arrays change meaning


def load_tiny_imagenet(
    data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> Dataset:
    """Tiny ImageNet as uint8 ``(N, 3, 64, 64)`` images: 100000 train, 10000 test (val).

    The first call decodes every JPEG and caches the arrays; later calls read the cache.
    """
    source = find_source(NAME, data_dir, FOLDER_NAME, ARCHIVE_NAME, REQUIRED)
    with _open_files(source) as files:
        listing = _list_images(files)
        path = resolve_cache_dir(cache_dir) / NAME / f"{NAME}-{_fingerprint(files, listing)}.npz"
        arrays = load_arrays(path)
        if arrays is None:
            log.info("decoding %s from %s once; caching at %s", NAME, source.path, path)
            arrays = _decode(files, listing)
            save_arrays(path, arrays)
    return Dataset(
        name=NAME,
        kind="image",
        train_x=torch.from_numpy(arrays["train_x"]),
        train_y=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_x=torch.from_numpy(arrays["test_x"]),
        test_y=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        num_classes=len(arrays["class_names"]),
        mean=tuple(float(v) for v in arrays["mean"]),
        std=tuple(float(v) for v in arrays["std"]),
        class_names=tuple(str(name) for name in arrays["class_names"]),
    )


# ---------------------------------------------------------------- files of a source


class _FolderFiles:
    """Relative paths and contents of the extracted folder."""

    def __init__(self, root: Path):
        self.root = root

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def list_folder(self, folder: str) -> dict[str, int]:
        """``{relative path: size}`` of the files directly in ``folder`` (none if absent)."""
        try:
            entries = list(os.scandir(self.root / folder))
        except FileNotFoundError:
            return {}
        return {f"{folder}/{e.name}": e.stat().st_size for e in entries if e.is_file()}


class _ZipFiles:
    """The same view of the zip archive, whose members sit under ``tiny-imagenet-200/``."""

    def __init__(self, archive: Path, handle: zipfile.ZipFile):
        self.archive = archive
        self.handle = handle
        infos = [info for info in handle.infolist() if not info.is_dir()]
        prefix = f"{FOLDER_NAME}/"
        if not any(info.filename.startswith(prefix) for info in infos):
            prefix = ""  # a zip of the folder's contents rather than of the folder
        self.prefix = prefix
        self.sizes = {
            info.filename[len(prefix) :]: info.file_size
            for info in infos
            if info.filename.startswith(prefix)
        }
        lacking = [
            entry
            for entry in REQUIRED
            if not (
                any(name.startswith(entry) for name in self.sizes)
                if entry.endswith("/")
                else entry in self.sizes
            )
        ]
        if lacking:
            raise ValueError(
                f"{archive}: not the Tiny ImageNet archive: it lacks {', '.join(lacking)} "
                f"(under {FOLDER_NAME}/). Expected the official {ARCHIVE_NAME}."
            )

    def read(self, name: str) -> bytes:
        return self.handle.read(self.prefix + name)

    def list_folder(self, folder: str) -> dict[str, int]:
        start = f"{folder}/"
        return {
            name: size
            for name, size in self.sizes.items()
            if name.startswith(start) and "/" not in name[len(start) :]
        }


@contextmanager
def _open_files(source: Source) -> Iterator[_FolderFiles | _ZipFiles]:
    if source.kind == "folder":
        yield _FolderFiles(source.path)
        return
    with open_zip(source.path) as handle:
        yield _ZipFiles(source.path, handle)


# ---------------------------------------------------------------- listing and decoding


@dataclass(frozen=True)
class _Listing:
    wnids: tuple[str, ...]
    train: list[tuple[str, int]]  # (relative path, label)
    test: list[tuple[str, int]]
    sizes: dict[str, int]
    annotations: bytes


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _list_images(files: _FolderFiles | _ZipFiles) -> _Listing:
    wnids = tuple(line.strip() for line in files.read("wnids.txt").decode().splitlines())
    wnids = tuple(wnid for wnid in wnids if wnid)
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    sizes: dict[str, int] = {}
    train: list[tuple[str, int]] = []
    empty = []
    for wnid, label in label_of.items():
        found = {n: s for n, s in files.list_folder(f"train/{wnid}/images").items() if _is_image(n)}
        if not found:
            empty.append(wnid)
        sizes.update(found)
        train += [(name, label) for name in sorted(found)]
    if empty:
        shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise ValueError(
            f"{NAME}: no training images under train/<wnid>/images/ for {len(empty)} of the "
            f"{len(wnids)} classes in wnids.txt ({shown}); the copy is incomplete"
        )
    annotations = files.read("val/val_annotations.txt")
    val_sizes = files.list_folder("val/images")
    test: list[tuple[str, int]] = []
    for number, line in enumerate(annotations.decode().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        name = f"val/images/{fields[0].strip()}"
        wnid = fields[1].strip() if len(fields) > 1 else ""
        if wnid not in label_of or name not in val_sizes:
            problem = "an unknown wnid" if wnid not in label_of else "a missing image"
            raise ValueError(
                f"{NAME}: val/val_annotations.txt line {number} names {problem}: {line!r}"
            )
        sizes[name] = val_sizes[name]
        test.append((name, label_of[wnid]))
    return _Listing(wnids, train, test, sizes, annotations)


def _fingerprint(files: _FolderFiles | _ZipFiles, listing: _Listing) -> str:
    digest = hashlib.sha256(f"format {CACHE_FORMAT}\n".encode())
    digest.update("\n".join(listing.wnids).encode())
    digest.update(listing.annotations)
    for name, size in sorted(listing.sizes.items()):
        digest.update(f"\n{name} {size}".encode())
    return digest.hexdigest()[:16]


def decode_image(data: bytes, name: str) -> np.ndarray:
    """One JPEG as uint8 ``(3, 64, 64)`` RGB (grayscale and CMYK are converted)."""
    from PIL import Image  # pillow is needed only to decode Tiny ImageNet the first time

    with Image.open(io.BytesIO(data)) as image:
        if image.size != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"{NAME}: {name} is {image.size[0]}x{image.size[1]}, not "
                f"{IMAGE_SIZE}x{IMAGE_SIZE}; the copy is not Tiny ImageNet"
            )
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return pixels.transpose(2, 0, 1)


def _decode_split(files: _FolderFiles | _ZipFiles, items: list[tuple[str, int]]):
    images = np.empty((len(items), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for index, (name, _) in enumerate(items):
        images[index] = decode_image(files.read(name), name)
    return images, np.array([label for _, label in items], dtype=np.int64)


def _decode(files: _FolderFiles | _ZipFiles, listing: _Listing) -> dict[str, np.ndarray]:
    train_x, train_y = _decode_split(files, listing.train)
    test_x, test_y = _decode_split(files, listing.test)
    mean, std = image_channel_stats(train_x)
    return {
        "train_x": train_x,
        "train_y": train_y,
        "test_x": test_x,
        "test_y": test_y,
        "class_names": np.array(listing.wnids, dtype=np.str_),
        "mean": np.array(mean),
        "std": np.array(std),
    }
