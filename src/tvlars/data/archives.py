"""Reading and extracting tar and zip archives that may have been tampered with.

A dataset archive is untrusted input: a member named ``../../.bashrc`` or ``/etc/cron.d/x``,
a symlink that points out of the folder (followed by a member written "through" it), or a
device file would reach outside the folder it is extracted into. Every member is checked
before anything is read or written, and an archive holding any such member is refused as a
whole: the official archives hold only regular files and folders with relative names.

The loaders read members straight out of the archive (nothing is written next to it);
:func:`safe_extract` is there for anyone who wants the extracted folder on disk.
"""

from __future__ import annotations

import re
import stat
import tarfile
import zipfile
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from tvlars.data.errors import UnsafeArchiveError

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def check_member_name(name: str, archive: Path | str) -> str:
    """Return ``name`` as a clean relative POSIX path, or refuse it.

    Refused: empty names, absolute paths (``/x``, ``\\x``, ``C:x``), backslashes, NUL
    bytes and any ``..`` component. ``.`` components and a trailing ``/`` are dropped.
    """
    if not name or "\x00" in name or "\\" in name:
        raise UnsafeArchiveError(f"{archive}: refused member {name!r}: not a plain relative name")
    if name.startswith("/") or _WINDOWS_DRIVE.match(name):
        raise UnsafeArchiveError(f"{archive}: refused member {name!r}: absolute path")
    parts = [part for part in PurePosixPath(name).parts if part != "."]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: refused member {name!r}: '..' leaves the folder")
    if not parts:
        raise UnsafeArchiveError(f"{archive}: refused member {name!r}: empty path")
    return "/".join(parts)


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> str:
    name = check_member_name(member.name, archive)
    if not (member.isfile() or member.isdir()):
        kind = (
            "symlink"
            if member.issym()
            else "hard link"
            if member.islnk()
            else "device or fifo"
            if member.isdev()
            else "special file"
        )
        raise UnsafeArchiveError(
            f"{archive}: refused member {member.name!r}: a {kind}; dataset archives hold only "
            "regular files and folders"
        )
    return name


def _check_zip_member(info: zipfile.ZipInfo, archive: Path) -> str:
    name = check_member_name(info.filename, archive)
    # Zip stores a Unix mode in the high 16 bits of external_attr when made on Unix.
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        kind = "symlink" if file_type == stat.S_IFLNK else "special file"
        raise UnsafeArchiveError(
            f"{archive}: refused member {info.filename!r}: a {kind}; dataset archives hold "
            "only regular files and folders"
        )
    return name


def read_tar_members(archive: Path, wanted: Collection[str]) -> dict[str, bytes]:
    """The contents of the ``wanted`` members (clean relative names) of a tar archive.

    The archive is read in one streaming pass (``.tar.gz`` cannot seek cheaply); every
    member is checked on the way, and an unsafe one refuses the whole archive.
    """
    wanted = set(wanted)
    contents: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                name = _check_tar_member(member, archive)
                if name in wanted and member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None  # regular files always have contents
                    contents[name] = handle.read()
    except tarfile.TarError as error:
        raise ValueError(
            f"{archive}: not a readable tar archive ({error}); the download is incomplete "
            "or corrupt: replace it with the official archive"
        ) from error
    return contents


def open_zip(archive: Path) -> zipfile.ZipFile:
    """Open a zip archive after checking every member; use it as a context manager."""
    try:
        handle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as error:
        raise ValueError(
            f"{archive}: not a readable zip archive ({error}); the download is incomplete "
            "or corrupt: replace it with the official archive"
        ) from error
    try:
        for info in handle.infolist():
            _check_zip_member(info, archive)
    except UnsafeArchiveError:
        handle.close()
        raise
    return handle


def safe_extract(archive: Path | str, target: Path | str) -> Path:
    """Extract a ``.tar``/``.tar.gz``/``.zip`` archive into ``target``; return ``target``.

    Every member is checked first (see the module docstring), so a refused archive writes
    nothing. Tar extraction also uses Python's own ``filter="data"`` where it exists.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with open_zip(archive) as handle:
            for info in handle.infolist():
                name = _check_zip_member(info, archive)
                destination = target / name
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with handle.open(info) as source, open(destination, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        sink.write(chunk)
        return target
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_tar_member(member, archive)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(target, members=members, filter="data")
            else:  # pragma: no cover - Python without PEP 706; members were checked above
                tar.extractall(target, members=members)
    except tarfile.TarError as error:
        raise ValueError(f"{archive}: not a readable tar or zip archive ({error})") from error
    return target
