"""HMAC-SHA256 (RFC 2104) under one fixed key, with the padded-key states computed once.

The PAN of every request is hashed under the switch's PAN key to find its card. OpenSSL's
one-shot ``hmac.digest`` sets the key up again on every call (3.3 us); copying two prepared
SHA-256 states and finishing them is the same function in 1.4 us.
"""

from __future__ import annotations

import hashlib

_BLOCK = 64  # SHA-256 block size in bytes


class HmacSha256:
    """``HmacSha256(key).digest(msg) == hmac.digest(key, msg, "sha256")``."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, msg: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()
