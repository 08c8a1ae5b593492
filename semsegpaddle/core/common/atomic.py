"""Write files atomically: into a temporary file beside the target, then rename over it.

Temporary files and folders from :mod:`tempfile` are private (0600 / 0700); what we publish gets
the mode a plain ``open()`` / ``mkdir()`` would give under the process umask (0644 / 0755 under
umask 022), or keeps the mode of the file or folder it replaces, as ``open(path, "w")`` does.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from semsegpaddle.core.common.disk import DiskFullError, disk_full_error, is_disk_full

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _umask_lock:  # elsewhere the only way to read it is to set it and put it back
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def published_mode(destination: str | os.PathLike[str], directory: bool = False) -> int:
    """The permission bits ``destination`` should get: its current ones if it exists, else the
    ones ``open()`` (0666) or ``mkdir()`` (0777) would give under the umask."""
    with contextlib.suppress(FileNotFoundError):
        return stat.S_IMODE(os.stat(destination).st_mode)
    return (0o777 if directory else 0o666) & ~current_umask()


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike[str], size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``destination`` in one rename.

    The file published has the mode of :func:`published_mode`. On any error the temporary file is
    removed and ``destination`` is left as it was. A write that fails for want of space or past
    the file-size limit raises :class:`~semsegpaddle.core.common.disk.DiskFullError`, naming
    ``destination`` and the ``size`` (bytes, when the caller knows it) it needed.
    """
    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(destination, size, exc) from exc
        raise
    os.close(fd)
    try:
        yield Path(tmp)
        # after writing: a writer may have replaced the temporary file with one of its own
        os.chmod(tmp, published_mode(destination))
        _fsync(tmp)  # the data reaches the disk before the name points at it (power loss)
        os.replace(tmp, destination)
        _fsync(destination.parent, directory=True)
    except BaseException as exc:
        written = _size_of(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise disk_full_error(destination, size, exc, written) from exc
        raise


def _size_of(path: str | os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _fsync(path: str | os.PathLike[str], directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        # some file systems refuse fsync on folders; but data that never reached the disk must not be published
        if not directory and (exc.errno == errno.EIO or is_disk_full(exc)):
            raise


def staging_dir(destination: str | os.PathLike[str]) -> Path:
    """A new empty folder beside ``destination`` to fill and later rename onto it, with the mode
    of :func:`published_mode` (``tempfile.mkdtemp`` alone would make it 0700)."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    os.chmod(staging, published_mode(destination, directory=True))
    return staging


def write_text_atomic(destination: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``destination`` atomically."""
    data = text.encode("utf-8")
    with atomic_path(destination, size=len(data)) as tmp:
        tmp.write_bytes(data)
