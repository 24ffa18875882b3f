"""Identifiers a merchant sees: event ids and payment ids that do not reveal volume.

The journal's ``txn_id`` is a 12-digit sequence: handing it to merchants would tell each one
how many transactions the whole switch processed between two of its own payments. A merchant
instead gets ``pay_`` + 32 hex characters of HMAC-SHA256(payment-id key, txn_id) (128
bits): stable (the same txn always maps to the same id, so nothing but the key is needed to
compute it) and, without the key, unrelated to the sequence. The key is random, kept in the
store's ``settings`` (``recorder.ensure_recorder``), so every process of one switch computes the
same ids whatever the store backend; knowing it reveals volume, nothing else. ``payment_orders``
maps the id back to the txn.

Event ids are random (``evt_`` + 128 random bits): an event is a delivery, not a payment, and
the merchant uses the id only to drop a repeat.
"""

from __future__ import annotations

import hmac
import os

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PAYMENT_PREFIX = "pay_"
EVENT_PREFIX = "evt_"
_ID_LEN = 32  # hex characters of 16 bytes (bytes.hex is C: base32 cost 10 us an id)
_ALPHABET = frozenset("0123456789abcdef")
_LABEL = b"switch/merchant_notify: payment ids, HMAC-SHA256, v1"


def new_event_id() -> str:
    """A fresh random event id (``evt_`` + 32 hex characters)."""
    return EVENT_PREFIX + os.urandom(16).hex()


def is_public_id(value: str, prefix: str = PAYMENT_PREFIX) -> bool:
    """True if ``value`` has the shape of an id this module makes (not that it exists)."""
    body = value[len(prefix) :]
    return value.startswith(prefix) and len(body) == _ID_LEN and set(body) <= _ALPHABET


class PaymentIds:
    """Maps journal txn ids to merchant-facing payment ids under one key."""

    def __init__(self, switch_secret: bytes) -> None:
        if len(switch_secret) < 16:
            raise ValueError("switch secret must be at least 16 bytes")
        self._key = HKDF(algorithm=SHA256(), length=32, salt=None, info=_LABEL).derive(
            switch_secret
        )

    def public(self, txn_id: str) -> str:
        # one-shot: hmac.new builds a Python object per call (6 us; this is ~1 us)
        digest = hmac.digest(self._key, txn_id.encode("ascii"), "sha256")
        return PAYMENT_PREFIX + digest[:16].hex()
