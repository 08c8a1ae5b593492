"""Download weights files once into a cache, resumably and atomically, optionally verified by sha256.

A URL's file lives at ``<cache>/weights/<first 16 hex digits of sha256(url)>/<file name>``: two
URLs ending in the same name do not collide, and the file keeps its suffix (the weights readers go
by it). The data arrives in ``<file>.part``, which a dropped connection or a later call continues
with an HTTP ``Range`` request; the final name appears only by renaming the complete, verified
``.part``. ``<file>.lock`` keeps two processes (e.g. data-parallel ranks) from writing one ``.part``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import sys
from pathlib import Path
from typing import IO, Iterator
from urllib.parse import unquote, urlparse

from semsegpaddle.core.common.errors import SemsegError

#: seconds to wait for the connection and for each read
DEFAULT_TIMEOUT = 30.0
#: connections one call makes at most when the server drops them part-way (the first + resumes)
_ATTEMPTS = 3
_CHUNK = 1 << 16
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class _Dropped(Exception):
    """The connection ended before the whole body arrived (the ``.part`` keeps what did)."""


class _Unreachable(Exception):
    """No HTTP answer at all: no network, refused connection, unknown host, connect timeout."""


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$SEMSEG_CACHE``, else ``~/.cache/semsegpaddle``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("SEMSEG_CACHE"):
        return Path(os.environ["SEMSEG_CACHE"]).expanduser()
    return Path.home() / ".cache" / "semsegpaddle"


def weights_cache_path(url: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where :func:`fetch_weights` keeps the file of ``url`` (whether or not it is there yet)."""
    _check_url(url)
    name = posixpath.basename(unquote(urlparse(url).path))
    if name in ("", ".", "..") or "\\" in name:
        raise SemsegError(f"cannot download {url}: the URL names no file (expected a path ending in a file name)")
    folder = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return cache_root(cache_dir) / "weights" / folder / name


def fetch_weights(url: str, *, sha256: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                  progress: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Download ``url`` once into the cache and return the cached file's path.

    A file already cached (matching ``sha256`` when given) is returned without network access.
    Otherwise the file is streamed into ``<file>.part`` (a progress bar on stderr when
    ``progress``), resumed with a ``Range`` request after a dropped connection (within this call
    or a later one), checked against ``sha256`` and renamed to its final name. ``timeout``
    bounds the connection and each read, in seconds. Failures raise a one-line
    :class:`SemsegError`; no incomplete or unverified file ever has the final name.
    """
    expected = _check_sha256(sha256)
    final = weights_cache_path(url, cache_dir=cache_dir)
    if _usable(final, expected):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(final.with_name(final.name + ".lock")):
        if _usable(final, expected):  # another process finished it meanwhile
            return final
        part = final.with_name(final.name + ".part")
        _download(url, part, final, progress, timeout)
        actual = _file_sha256(part)
        if expected is not None and actual != expected:
            part.unlink()
            raise SemsegError(f"{url}: sha256 mismatch: expected {expected}, got {actual} (the download was removed)")
        os.replace(part, final)
    return final


def _check_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme.lower() not in ("http", "https") or not parsed.netloc:
        raise SemsegError(f"cannot download {url}: only http:// and https:// URLs are fetched "
                          f"(for a local file, give its path instead)")


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise SemsegError(f"invalid sha256 {sha256!r}: expected 64 hexadecimal digits")
    return sha256.lower()


def _usable(path: Path, expected: str | None) -> bool:
    """True when ``path`` is there and matches ``expected``; a copy that does not is removed."""
    if not path.is_file():
        return False
    if expected is None or _file_sha256(path) == expected:
        return True
    path.unlink()
    return False


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (POSIX ``flock``; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _download(url: str, part: Path, final: Path, progress: bool, timeout: float) -> None:
    """Bring ``part`` to the complete body of ``url``, resuming from its size."""
    offline = f"put the file at {final} to use it offline"
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            _transfer(url, part, progress, timeout)
            return
        except _Dropped as dropped:
            if attempt == _ATTEMPTS:
                have = part.stat().st_size if part.exists() else 0
                raise SemsegError(f"cannot download {url}: the connection dropped after {have} bytes "
                                  f"({dropped}); run again to resume, or {offline}") from None
        except _Unreachable as unreachable:
            raise SemsegError(f"cannot download {url}: {unreachable}; {offline}") from None


def _transfer(url: str, part: Path, progress: bool, timeout: float) -> None:
    """One request: continue ``part`` after a 206 answer to our Range, restart it after a 200."""
    import http.client
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "semsegpaddle", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:  # our .part is not a prefix of this file: start over
            part.unlink()
            raise _Dropped("the partial download did not fit the file; starting over") from None
        raise SemsegError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise _Unreachable(_reason(error.reason)) from None
    except (OSError, http.client.HTTPException) as error:
        raise _Unreachable(_reason(error)) from None
    with response:
        if response.status == 206 and _range_start(response) != offset:
            part.unlink(missing_ok=True)
            raise _Dropped("the server answered another byte range; starting over")
        if response.status != 206:
            offset = 0  # a full answer (200): start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with open(part, "ab" if offset else "wb") as out, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=part.name[: -len(".part")], file=sys.stderr, disable=not progress) as bar:
            received = offset + _copy(response, out, bar.update)
    if total is not None and received < total:
        raise _Dropped(f"{received} of {total} bytes received")


def _copy(response: IO[bytes], out: IO[bytes], advance) -> int:
    """Copy the body to ``out``; a failing read is a dropped connection."""
    import http.client

    copied = 0
    while True:
        try:
            chunk = response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as error:
            raise _Dropped(_reason(error)) from None
        if not chunk:
            return copied
        out.write(chunk)
        copied += len(chunk)
        advance(len(chunk))


def _range_start(response) -> int | None:
    """The first byte position of a ``Content-Range: bytes N-M/T`` answer."""
    match = re.match(r"bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _reason(error: object) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, TimeoutError) or "timed out" in text:
        return "timed out"
    return " ".join(text.split())
