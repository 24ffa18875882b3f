"""How a notification is signed, and how a merchant checks it.

Headers of every POST (``docs``: README "Merchant notifications")::

    Content-Type: application/json
    X-Switch-Event-Id: evt_...            (the body's event_id: drop a repeat with it)
    X-Switch-Event-Type: payment.paid
    X-Switch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

The HMAC key is the merchant's notification secret as UTF-8 text (``whsec_...``), the message
the decimal timestamp, a dot and the raw body bytes. ``t`` is the time of *this attempt*, so a
merchant can refuse stale signatures (replays of an old capture of the request) while a retry
of the same event, signed anew, still passes. Compare in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "X-Switch-Signature"
EVENT_ID_HEADER = "X-Switch-Event-Id"
EVENT_TYPE_HEADER = "X-Switch-Event-Type"
SECRET_PREFIX = "whsec_"  # noqa: S105 -- a prefix, not a secret
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """A signature header is missing, malformed, stale or does not match."""


def new_secret() -> str:
    """A fresh notification secret (``whsec_`` + 43 base64url characters, 256 bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    msg = str(int(timestamp)).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Switch-Signature`` value of ``body`` sent at ``timestamp``."""
    return f"t={int(timestamp)},v1={signature(secret, timestamp, body)}"


def verify(
    secret: str, header: str, body: bytes, now: float, tolerance: float = DEFAULT_TOLERANCE_S
) -> int:
    """Check a received notification as a merchant should; returns its timestamp.

    ``SignatureError`` if the header does not parse, ``t`` is more than ``tolerance`` seconds
    from ``now``, or no ``v1`` matches (several ``v1`` are accepted: a rotation may sign with
    two secrets)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError(f"{SIGNATURE_HEADER}: malformed item {item.strip()[:20]!r}")
        parts.setdefault(name, []).append(value)
    stamps = parts.get("t", [])
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
        raise SignatureError(f"{SIGNATURE_HEADER}: needs one t=<unix seconds>")
    t = int(stamps[0])
    if abs(now - t) > tolerance:
        raise SignatureError(f"{SIGNATURE_HEADER}: timestamp outside the tolerance")
    expected = signature(secret, t, body)
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        raise SignatureError(f"{SIGNATURE_HEADER}: no matching v1 signature")
    return t
