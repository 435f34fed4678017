"""Untrusted archives: members that would leave their folder are refused, nothing written."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from tvlars.data import UnsafeArchiveError, load_cifar10, load_tiny_imagenet, safe_extract
from tvlars.data.archives import check_member_name, open_zip, read_tar_members
from tvlars.data.testing import write_cifar, write_tar, write_tiny_imagenet


def tar_with(path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"hi"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if data else None)


def zip_with(path, name: str, data: bytes = b"x", mode: int | None = None) -> None:
    with zipfile.ZipFile(path, "w") as handle:
        handle.writestr("tiny-imagenet-200/wnids.txt", b"n0\n")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.create_system = 3  # Unix, so that the mode bits are read
            info.external_attr = mode << 16
        handle.writestr(info, data)


@pytest.mark.parametrize(
    "name", ["../evil", "cifar-10-batches-py/../../evil", "/tmp/evil", "C:/evil", "a\\..\\b"]
)
def test_member_names_that_leave_the_folder_are_refused(name):
    with pytest.raises(UnsafeArchiveError):
        check_member_name(name, "archive.tar.gz")


def test_clean_member_names_are_normalized():
    assert check_member_name("./a/./b/", "archive.tar.gz") == "a/b"


def test_tar_with_a_dotdot_member_is_refused_and_nothing_written(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    tar_with(archive, tarfile.TarInfo("../evil"), b"boom")
    target = tmp_path / "out" / "inner"
    with pytest.raises(UnsafeArchiveError, match=r"\.\./evil"):
        safe_extract(archive, target)
    assert not (tmp_path / "out" / "evil").exists() and not list(target.iterdir())
    with pytest.raises(UnsafeArchiveError):
        load_cifar10(archive)


def test_tar_with_an_absolute_member_is_refused(tmp_path):
    archive = tmp_path / "a.tar.gz"
    tar_with(archive, tarfile.TarInfo(str(tmp_path / "evil")), b"boom")
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        read_tar_members(archive, wanted=[])
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    "kind, name", [(tarfile.SYMTYPE, "symlink"), (tarfile.LNKTYPE, "hard link")]
)
def test_tar_with_a_link_member_is_refused(tmp_path, kind, name):
    archive = tmp_path / "cifar-10-python.tar.gz"
    link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    link.type, link.linkname = kind, "/etc/passwd"
    tar_with(archive, link)
    with pytest.raises(UnsafeArchiveError, match=name):
        load_cifar10(archive)
    with pytest.raises(UnsafeArchiveError, match=name):
        safe_extract(archive, tmp_path / "out")


def test_tar_with_a_device_member_is_refused(tmp_path):
    archive = tmp_path / "a.tar.gz"
    device = tarfile.TarInfo("cifar-10-batches-py/dev")
    device.type = tarfile.CHRTYPE
    tar_with(archive, device)
    with pytest.raises(UnsafeArchiveError, match="device"):
        read_tar_members(archive, wanted=[])


def test_zip_with_an_absolute_member_is_refused(tmp_path):
    archive = tmp_path / "tiny-imagenet-200.zip"
    zip_with(archive, "/tmp/evil")
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        open_zip(archive)
    with pytest.raises(UnsafeArchiveError):
        load_tiny_imagenet(archive, cache_dir=tmp_path / "cache")
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "tmp").exists()


def test_zip_with_a_dotdot_member_is_refused(tmp_path):
    archive = tmp_path / "a.zip"
    zip_with(archive, "tiny-imagenet-200/../../evil")
    with pytest.raises(UnsafeArchiveError, match=r"\.\."):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_zip_with_a_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "a.zip"
    zip_with(archive, "tiny-imagenet-200/link", b"/etc/passwd", mode=stat.S_IFLNK | 0o777)
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        open_zip(archive)


def test_safe_extract_extracts_a_clean_tar(tmp_path):
    archive = write_tar(tmp_path / "a.tar.gz", {"top/x.txt": b"x", "top/sub/y.txt": b"y"})
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out/top/sub/y.txt").read_bytes() == b"y"


def test_safe_extract_extracts_a_clean_zip_that_then_loads(tmp_path):
    archive = write_tiny_imagenet(tmp_path, as_zip=True)
    safe_extract(archive, tmp_path / "out")
    dataset = load_tiny_imagenet(tmp_path / "out", cache_dir=tmp_path / "cache")
    assert dataset.num_train == 6


def test_extracted_cifar_archive_loads_like_the_archive(tmp_path):
    archive = write_cifar(tmp_path, as_archive=True)
    safe_extract(archive, tmp_path / "out")
    assert load_cifar10(tmp_path / "out").num_train == load_cifar10(archive).num_train


def test_a_corrupt_archive_is_a_value_error_naming_the_file(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"not a tar at all" * 10)
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz"):
        load_cifar10(archive)
