"""Small datasets written in the exact standard on-disk layouts, for tests and examples.

The files follow the official distributions byte for byte in structure (names, folders,
pickle keys and dtypes, text formats), only with a handful of samples, so that the
loaders can be exercised without the real downloads.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tvlars.data.cifar import CIFAR10, CIFAR100, CifarLayout

TINY_WNIDS = ("n01443537", "n01629819", "n01641577")


def cifar_pickle(layout: CifarLayout, images: np.ndarray, labels: Sequence[int]) -> bytes:
    """One CIFAR batch file: a protocol-2 pickle of a dict with bytes keys whose
    ``b"data"`` is uint8 ``(N, 3072)`` (red, green, blue planes of each image)."""
    batch = {
        b"batch_label": b"testing batch",
        layout.label_key: [int(label) for label in labels],
        b"data": np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1),
        b"filenames": [f"image_{i}.png".encode() for i in range(len(images))],
    }
    if layout is CIFAR100:
        batch[b"coarse_labels"] = [int(label) // 5 for label in labels]
    return pickle.dumps(batch, protocol=2)


def cifar_meta_pickle(layout: CifarLayout) -> bytes:
    """The meta file: class names under ``label_names`` (CIFAR-10) or
    ``fine_label_names`` (CIFAR-100)."""
    names = [f"class_{label}".encode() for label in range(layout.num_classes)]
    meta = {layout.label_names_key: names}
    if layout is CIFAR10:
        meta.update({b"num_cases_per_batch": 10000, b"num_vis": 3072})
    else:
        meta[b"coarse_label_names"] = [f"super_{i}".encode() for i in range(20)]
    return pickle.dumps(meta, protocol=2)


def write_cifar(
    root: str | Path,
    variant: str = "cifar10",
    *,
    num_train: int = 10,
    num_test: int = 4,
    train_images: np.ndarray | None = None,
    seed: int = 0,
    as_archive: bool = False,
) -> Path:
    """Write a small CIFAR-10/100 under ``root``: the extracted folder
    (``cifar-10-batches-py/`` or ``cifar-100-python/``), or with ``as_archive`` the
    ``.tar.gz`` only. ``train_images`` (uint8 ``(N, 3, 32, 32)``) replaces random ones.
    Returns the folder or archive path. CIFAR-10's training images are spread over its
    five batch files in order."""
    layout = {"cifar10": CIFAR10, "cifar100": CIFAR100}[variant]
    rng = np.random.default_rng(seed)
    if train_images is None:
        train_images = rng.integers(0, 256, (num_train, 3, 32, 32), dtype=np.uint8)
    train_labels = rng.integers(0, layout.num_classes, len(train_images))
    test_images = rng.integers(0, 256, (num_test, 3, 32, 32), dtype=np.uint8)
    test_labels = rng.integers(0, layout.num_classes, num_test)
    files = {layout.meta_file: cifar_meta_pickle(layout)}
    chunks = np.array_split(np.arange(len(train_images)), len(layout.train_files))
    for name, chunk in zip(layout.train_files, chunks):
        files[name] = cifar_pickle(layout, train_images[chunk], train_labels[chunk])
    files[layout.test_files[0]] = cifar_pickle(layout, test_images, test_labels)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if as_archive:
        archive = root / layout.archive_name
        write_tar(archive, {f"{layout.folder_name}/{name}": data for name, data in files.items()})
        return archive
    folder = root / layout.folder_name
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_tar(archive: Path, files: dict[str, bytes]) -> Path:
    """A ``.tar.gz`` of regular files with the given member names and contents."""
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def jpeg_bytes(color: Sequence[int] | int, mode: str = "RGB", size: int = 64) -> bytes:
    """A solid ``size`` x ``size`` JPEG of ``color`` (an int for mode ``"L"``)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (size, size), color if mode == "L" else tuple(color)).save(
        buffer, format="JPEG", quality=95
    )
    return buffer.getvalue()


def tiny_imagenet_files(
    wnids: Sequence[str] = TINY_WNIDS, train_per_class: int = 2, num_val: int = 4
) -> dict[str, bytes]:
    """The files of a small Tiny ImageNet, by path relative to ``tiny-imagenet-200/``.

    Training image ``i`` of class ``c`` is solid ``(40 * c + 20, 10 * i, 200)``, except
    the first image of the first class, a grayscale JPEG of value 128. Validation image
    ``j`` is solid pure red, green or blue (by ``j % 3``) and labelled ``wnids[j % len]``.
    """
    files = {"wnids.txt": "".join(f"{wnid}\n" for wnid in wnids).encode()}
    files["words.txt"] = "".join(f"{wnid}\tthing {wnid}\n" for wnid in wnids).encode()
    for label, wnid in enumerate(wnids):
        boxes = []
        for index in range(train_per_class):
            name = f"{wnid}_{index}.JPEG"
            if label == 0 and index == 0:
                data = jpeg_bytes(128, mode="L")
            else:
                data = jpeg_bytes((40 * label + 20, 10 * index, 200))
            files[f"train/{wnid}/images/{name}"] = data
            boxes.append(f"{name}\t0\t0\t63\t63\n")
        files[f"train/{wnid}/{wnid}_boxes.txt"] = "".join(boxes).encode()
    primaries = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    annotations = []
    for index in range(num_val):
        name = f"val_{index}.JPEG"
        files[f"val/images/{name}"] = jpeg_bytes(primaries[index % 3])
        annotations.append(f"{name}\t{wnids[index % len(wnids)]}\t0\t0\t63\t63\n")
    files["val/val_annotations.txt"] = "".join(annotations).encode()
    files["test/images/test_0.JPEG"] = jpeg_bytes((1, 2, 3))
    return files


def write_tiny_imagenet(root: str | Path, *, as_zip: bool = False, **options) -> Path:
    """Write :func:`tiny_imagenet_files` under ``root`` as ``tiny-imagenet-200/``, or
    with ``as_zip`` as ``tiny-imagenet-200.zip``; return that path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = tiny_imagenet_files(**options)
    if as_zip:
        archive = root / "tiny-imagenet-200.zip"
        with zipfile.ZipFile(archive, "w") as handle:
            for name, data in files.items():
                handle.writestr(f"tiny-imagenet-200/{name}", data)
        return archive
    folder = root / "tiny-imagenet-200"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder
