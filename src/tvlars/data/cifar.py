"""CIFAR-10 and CIFAR-100 from the standard "python version" archives.

Accepted on disk (see :mod:`tvlars.data.locate` for where ``data_dir`` may point):

- CIFAR-10: ``cifar-10-python.tar.gz`` or ``cifar-10-batches-py/`` with ``data_batch_1`` ..
  ``data_batch_5``, ``test_batch`` and ``batches.meta``;
- CIFAR-100: ``cifar-100-python.tar.gz`` or ``cifar-100-python/`` with ``train``, ``test``
  and ``meta`` (the 100 fine labels are used).

Each file is a Python-2 pickle of a dict with bytes keys; ``b"data"`` is uint8 ``(N, 3072)``
holding the red, green and blue 32x32 planes of each image in that order, row-major, so a
reshape to ``(N, 3, 32, 32)`` gives channels-first RGB. The pickles are read with
:func:`tvlars.data.safe_pickle.load_restricted`: a tampered file cannot run code. Decoding
takes about a second, so CIFAR is not cached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from tvlars.data.archives import read_tar_members
from tvlars.data.dataset import Dataset, image_channel_stats, labels_tensor
from tvlars.data.locate import Source, find_source
from tvlars.data.safe_pickle import load_restricted

IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class CifarLayout:
    """The file names and pickle keys of one CIFAR variant."""

    name: str
    folder_name: str
    archive_name: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    label_names_key: bytes
    num_classes: int

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files, self.meta_file)


CIFAR10 = CifarLayout(
    name="cifar10",
    folder_name="cifar-10-batches-py",
    archive_name="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key=b"labels",
    label_names_key=b"label_names",
    num_classes=10,
)

CIFAR100 = CifarLayout(
    name="cifar100",
    folder_name="cifar-100-python",
    archive_name="cifar-100-python.tar.gz",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key=b"fine_labels",
    label_names_key=b"fine_label_names",
    num_classes=100,
)


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-10: 50000 training and 10000 test images, uint8 ``(N, 3, 32, 32)``."""
    return load_cifar(CIFAR10, data_dir)


def load_cifar100(data_dir: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-100 (fine labels): 50000 training and 10000 test images."""
    return load_cifar(CIFAR100, data_dir)


def load_cifar(layout: CifarLayout, data_dir: str | os.PathLike | None) -> Dataset:
    """Read the CIFAR variant described by ``layout`` from ``data_dir``."""
    source = find_source(
        layout.name, data_dir, layout.folder_name, layout.archive_name, layout.files
    )
    raw = _read_files(layout, source)
    train_x, train_y = _decode_files(raw, layout.train_files, layout)
    test_x, test_y = _decode_files(raw, layout.test_files, layout)
    mean, std = image_channel_stats(train_x)
    return Dataset(
        name=layout.name,
        kind="image",
        train_x=torch.from_numpy(train_x),
        train_y=labels_tensor(train_y),
        test_x=torch.from_numpy(test_x),
        test_y=labels_tensor(test_y),
        num_classes=layout.num_classes,
        mean=mean,
        std=std,
        class_names=_class_names(raw[layout.meta_file], layout),
    )


def _read_files(layout: CifarLayout, source: Source) -> dict[str, bytes]:
    if source.kind == "folder":
        return {name: (source.path / name).read_bytes() for name in layout.files}
    members = {f"{layout.folder_name}/{name}": name for name in layout.files}
    contents = read_tar_members(source.path, members)
    missing = [member for member in members if member not in contents]
    if missing:
        raise ValueError(
            f"{source.path}: not the {layout.name} archive: it lacks {', '.join(missing)}. "
            f"Expected the official {layout.archive_name}."
        )
    return {members[member]: data for member, data in contents.items()}


def _decode_batch(raw: bytes, file_name: str, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    where = f"{layout.name} {file_name}"
    batch = load_restricted(raw, source=where)
    if not isinstance(batch, dict) or b"data" not in batch or layout.label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(
            f"{where}: expected a dict with keys b'data' and {layout.label_key!r}, got {keys}"
        )
    data, labels = batch[b"data"], np.asarray(batch[layout.label_key])
    pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"{where}: b'data' must be a uint8 (N, {pixels}) array")
    if data.shape[1] != pixels or labels.shape != (len(data),):
        raise ValueError(
            f"{where}: b'data' is {data.shape} with {labels.shape[0]} labels; expected "
            f"(N, {pixels}) and N labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise ValueError(f"{where}: labels outside [0, {layout.num_classes})")
    # Row layout is 1024 red, 1024 green, 1024 blue values: exactly (3, 32, 32) per row.
    return data.reshape(len(data), *IMAGE_SHAPE), labels.astype(np.int64)


def _decode_files(
    raw: dict[str, bytes], names: tuple[str, ...], layout: CifarLayout
) -> tuple[np.ndarray, np.ndarray]:
    """The batches ``names`` decoded and joined in order."""
    parts = [_decode_batch(raw[name], name, layout) for name in names]
    images = np.ascontiguousarray(np.concatenate([images for images, _ in parts]))
    return images, np.concatenate([labels for _, labels in parts])


def _class_names(raw: bytes, layout: CifarLayout) -> tuple[str, ...]:
    meta = load_restricted(raw, source=f"{layout.name} {layout.meta_file}")
    names = meta.get(layout.label_names_key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != layout.num_classes:
        raise ValueError(
            f"{layout.name} {layout.meta_file}: expected {layout.num_classes} names under "
            f"{layout.label_names_key!r}"
        )
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
