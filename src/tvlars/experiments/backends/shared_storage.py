"""Whether a sweep's folder can be on storage that a cluster's nodes share, judged from this
machine's mount table (Linux's ``/proc/self/mounts``).

A SLURM array's tasks run on other nodes and must all read and write ``--out``. Nothing on
the login node can prove that they see it (only a job on each node could), but the
filesystem ``--out`` is on tells the usual mistakes apart: a memory filesystem (``tmpfs``,
``/dev/shm``, often ``/tmp``) is this machine's alone, so the sweep is refused; a local
disk filesystem (``ext4``, ``xfs``, ...) is usually one machine's, so the sweep warns;
network and cluster filesystems (NFS, Lustre, GPFS, BeeGFS, ...) pass.
"""

from __future__ import annotations

import os
from pathlib import Path

from tvlars.experiments.backends import BackendError

MOUNTS = Path("/proc/self/mounts")
#: Filesystems held in one machine's memory.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
#: Filesystems that several machines mount (FUSE ones, ``fuse.*``, count too: sshfs,
#: s3fs, gcsfuse and the like are mounts of something remote).
SHARED_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "ceph", "glusterfs",
        "panfs", "wekafs", "cvmfs", "afs", "9p", "virtiofs", "orangefs", "pvfs2",
    }
)  # fmt: skip


def filesystem_type(path: str | os.PathLike[str], mounts: Path | None = None) -> str | None:
    """The type of the filesystem ``path`` lies on: that of the mount point that is its
    longest prefix in ``mounts`` (default :data:`MOUNTS`). ``None`` where the mount table
    cannot be read (not Linux)."""
    try:
        lines = (mounts or MOUNTS).read_text().splitlines()
    except OSError:
        return None
    path = Path(path).resolve()
    longest, kind = -1, None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # The table writes a space in a mount point as \040 (and a tab as \011).
        point = Path(fields[1].replace("\\040", " ").replace("\\011", "\t"))
        if (point == path or point in path.parents) and len(str(point)) > longest:
            longest, kind = len(str(point)), fields[2]
    return kind


def check_shared(out: str | os.PathLike[str], mounts: Path | None = None) -> str | None:
    """Refuse (:class:`BackendError`) an ``out`` on a memory filesystem; return a warning
    for one on a filesystem usually local to one machine; ``None`` where it is on a
    network or cluster filesystem, or where this cannot be told."""
    kind = filesystem_type(out, mounts)
    if kind is None or kind in SHARED_FILESYSTEMS or kind.startswith("fuse."):
        return None
    if kind in MEMORY_FILESYSTEMS:
        raise BackendError(
            f"--out {out} is on {kind}, held in this machine's memory: the array's tasks "
            "on other nodes cannot see it. Give --out a folder on storage every node "
            "mounts (your home or project folder on NFS, Lustre, GPFS, ...)"
        )
    return (
        f"[sweep] warning: --out {out} is on a filesystem of type {kind}, usually local to one "
        "machine; every node that runs a cell must see it (NFS, Lustre, GPFS, ...). If "
        "the cells fail or never report, give --out a folder on shared storage"
    )
