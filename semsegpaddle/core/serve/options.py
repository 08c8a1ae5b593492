"""The server's settings, checked once: every bad value is a one-line ValueError naming the option."""
from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["ServeOptions", "read_token"]


def _invalid(option: str, value: object, expected: str) -> ValueError:
    return ValueError(f"serve option --{option.replace('_', '-')}={value!r} is invalid: expected {expected}")


@dataclass(frozen=True)
class ServeOptions:
    """How ``semseg serve`` listens, batches and bounds requests (see docs/serving.md)."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64
    max_image_pixels: int = 25_000_000
    max_body_bytes: int = 32 * 2**20
    token_file: str | None = None
    #: seconds a client may take to send a request's headers, and its body
    read_timeout: float = 30.0
    #: seconds an idle keep-alive connection stays open
    keep_alive: int = 5
    #: seconds SIGTERM waits for in-flight requests before closing them
    shutdown_timeout: float = 30.0
    #: most views (scales × flips) one request may ask for
    max_views: int = 8

    def __post_init__(self) -> None:
        for name in ("port", "workers", "max_batch", "max_queue", "max_image_pixels", "max_body_bytes",
                     "keep_alive", "max_views"):
            value = getattr(self, name)
            low = 0 if name == "port" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low or (name == "port" and value > 65535):
                raise _invalid(name, value, "an integer from 0 to 65535" if name == "port" else "an integer >= 1")
        for name in ("max_wait_ms", "read_timeout", "shutdown_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or value != value:
                raise _invalid(name, value, "a number >= 0")
        if self.read_timeout <= 0:
            raise _invalid("read_timeout", self.read_timeout, "a number of seconds > 0")
        if not isinstance(self.host, str) or not self.host.strip():
            raise _invalid("host", self.host, "an address to bind, e.g. 127.0.0.1 (the default) or 0.0.0.0")

    @property
    def loopback(self) -> bool:
        """True when the server binds a loopback address only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def to_dict(self) -> dict[str, Any]:
        """The options as plain values (passed to worker processes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ServeOptions":
        """Options from :meth:`to_dict`'s output; unknown keys are a ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown serve options {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
        return cls(**data)


def read_token(token_file: str | Path | None) -> str | None:
    """The bearer token in ``token_file`` (first line, surrounding whitespace dropped); None without
    a file. A missing, unreadable, empty or non-ASCII file is a one-line ValueError."""
    if token_file is None:
        return None
    path = Path(token_file)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not ASCII text"
        raise ValueError(f"--token-file {path}: cannot read the token ({reason})") from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if len(token) < 16 or any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError(f"--token-file {path}: expected one line holding a token of at least 16 printable "
                         f"characters without spaces (e.g. from `python -c 'import secrets; print(secrets.token_urlsafe())'`)")
    return token
