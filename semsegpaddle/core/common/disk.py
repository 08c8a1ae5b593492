"""Disk faults told in one line: a full disk, a file-size limit, a folder that cannot be written.

A write that fails for want of space (``ENOSPC``, ``EDQUOT``) or past the process's file-size
limit (``EFBIG`` under ``ulimit -f``) becomes a :class:`DiskFullError` naming the file, the bytes
the write needed and the bytes free on that file system. Output folders are probed (a file
created and removed) before work starts, so a read-only or unwritable folder is refused before
anything is computed.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import shutil
import tempfile
from pathlib import Path

from semsegpaddle.core.common.errors import SemsegError

#: errno values of writes that failed for want of space or past the file-size limit
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: how native writers (safetensors' Rust code) spell the system error in their messages
_NATIVE_OS_ERROR = re.compile(r"os error (\d+)")


class DiskFullError(SemsegError, OSError):
    """A write that failed for want of space or past the file-size limit; the message says which
    file, how many bytes it needed and how many are free. Also an ``OSError`` (``errno`` set), so
    code that falls back on write errors keeps doing so."""

    def __init__(self, message: str, code: int, path: Path, needed: int | None) -> None:
        super().__init__(message)
        self.errno = code
        self.path = path
        self.needed = needed


def error_number(exc: BaseException) -> int | None:
    """The system error number of a failed write: ``errno`` of an OSError, or the one a native
    library's message names (``... (os error 28)``)."""
    if isinstance(exc, OSError):
        return exc.errno
    match = _NATIVE_OS_ERROR.search(str(exc))
    return int(match.group(1)) if match else None


def is_disk_full(exc: BaseException) -> bool:
    """True if ``exc`` is a write that failed for want of space or past the file-size limit."""
    return isinstance(exc, DiskFullError) or error_number(exc) in DISK_FULL_ERRNOS


def existing_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` if it exists, else its nearest existing ancestor."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes free (for this user) on the file system holding ``path`` or its nearest existing ancestor."""
    folder = existing_folder(path)
    with contextlib.suppress(OSError):
        return shutil.disk_usage(folder if folder.is_dir() else folder.parent).free
    return None


def file_size_limit() -> int | None:
    """The process's file-size limit in bytes (``ulimit -f``), None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def disk_full_error(path: str | os.PathLike[str], needed: int | None, exc: BaseException,
                    written: int = 0) -> DiskFullError:
    """The one-line error of a write of ``needed`` bytes to ``path`` that failed with ``exc``
    (``needed`` None: unknown, more than the ``written`` bytes that got to the file)."""
    path = Path(path)
    code = error_number(exc) or errno.ENOSPC
    wanted = f"{needed} bytes" if needed is not None else f"more than {written} bytes"
    free = free_bytes(path)
    free_text = f"{free} bytes free" if free is not None else "free space unknown"
    if code == errno.EFBIG:
        limit = file_size_limit()
        limit_text = f"{limit} bytes" if limit is not None else "a size limit"
        message = (f"file too large: cannot write {path}: it needs {wanted}, over the file size limit of "
                   f"{limit_text} (ulimit -f); {free_text} on its file system; raise the limit or write elsewhere")
    else:
        cause = "disk quota exceeded" if code == errno.EDQUOT else "no space left on device"
        message = (f"{cause}: cannot write {path}: it needs {wanted}, {free_text} on its file system; "
                   f"free some space or write elsewhere")
    return DiskFullError(message, code, path, needed)


def check_writable(folder: str | os.PathLike[str], what: str) -> None:
    """A one-line SemsegError unless a file can be created in ``folder`` (or, while it does not
    exist yet, in its nearest existing ancestor, where it would be created).

    Probes by creating and removing a temporary file: permission bits alone do not tell (a
    read-only mount, or root, who ignores them).
    """
    folder = Path(folder)
    target = existing_folder(folder)
    if not target.is_dir():
        raise SemsegError(f"{what} {folder} cannot be created: {target} is a file, not a folder; "
                          f"choose another folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".semseg-probe.", suffix=".tmp", dir=target)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        where = "" if target == folder.absolute() else f" (it would be created in {target})"
        raise SemsegError(f"{what} {folder} is not writable{where}: {exc.strerror or exc}; "
                          f"choose another folder or make it writable") from None
