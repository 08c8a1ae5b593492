"""Bearer-token check: the token from ``--token-file``, compared in constant time."""
from __future__ import annotations

import hmac

__all__ = ["bearer_matches", "OPEN_PATHS"]

#: paths answered without a token: liveness, and the static page (it holds no data; it asks for the
#: token and sends it with every request it makes)
OPEN_PATHS = ("/healthz", "/")


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when the ``Authorization`` header is ``Bearer <token>`` (scheme case-insensitive)."""
    if not authorization:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8", "replace"), token.encode("utf-8"))
