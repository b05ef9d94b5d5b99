"""Writing a file so that a reader sees the old version or the new one, never half of either.

The bytes go to a temporary file in the same folder (a rename across filesystems is not
atomic), which is renamed over the final name with os.replace (atomic on POSIX) only once the
write has finished; any failure, Ctrl-C included, removes the temporary file and leaves what
was there before untouched.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_atomic(path, write: Callable[[str], None], durable: bool = False) -> Path:
    """`write(tmp)` fills a temporary file beside `path`, which then replaces `path`. With
    `durable`, the file and then its folder are fsynced, so the new version also survives a
    power cut (checkpoints). Returns `path` as a Path.

    The temporary file is created as open() creates files (mode 0666 less the umask), not with
    mkstemp's 0600, which would hide checkpoints and reports from the rest of a group on a
    shared cluster; O_EXCL and a random name keep two writers apart."""
    path = Path(path)
    created = make_folders(path.parent)
    tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        try:
            write(tmp)
            if durable:
                _fsync(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except BaseException:
        remove_empty_folders(created)
        raise
    if durable:
        try:  # the rename is durable only once the folder entry is on disk
            _fsync(path.parent)
        except OSError:  # some filesystems refuse fsync on folders; the file itself is safe
            pass
    return path


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folders(folder) -> list[Path]:
    """`mkdir -p folder`; returns the folders it created, outermost first, so that a write that
    fails can take them away again (`remove_empty_folders`) instead of leaving empty ones."""
    folder = Path(folder)
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    missing.reverse()
    for f in missing:
        f.mkdir(exist_ok=True)
    return missing


def remove_empty_folders(created: list[Path]) -> None:
    """Undo `make_folders`, innermost first, keeping any folder something else wrote into."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:  # not empty (another writer used it) or already gone
            return
