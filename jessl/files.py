"""Writing a file so that a reader sees the old version or the new one, never half of either.

The bytes go to a temporary file in the same folder (a rename across filesystems is not
atomic), which is renamed over the final name with os.replace (atomic on POSIX) only once the
write has finished; any failure, Ctrl-C included, removes the temporary file and leaves what
was there before untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def file_mode() -> int:
    """The mode open() would give a new file under this process's umask (mkstemp gives 0600,
    which would hide checkpoints and reports from the rest of a group on a shared cluster)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path, write: Callable[[str], None], durable: bool = False) -> Path:
    """`write(tmp)` fills a temporary file beside `path`, which then replaces `path`. With
    `durable`, the file and then its folder are fsynced, so the new version also survives a
    power cut (checkpoints). Returns `path` as a Path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        try:  # the rename is durable only once the folder entry is on disk
            _fsync(path.parent, os.O_RDONLY)
        except OSError:  # some filesystems refuse fsync on folders; the file itself is safe
            pass
    return path


def _fsync(path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
