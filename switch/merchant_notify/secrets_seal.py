"""Merchant notification secrets sealed at rest (``merchant_callbacks.secret_sealed``).

The switch must *use* a merchant's secret (to sign), so it cannot keep only a hash as it does
for API keys. It keeps it encrypted: ``msealed1:<base64url(nonce || AES-256-GCM ct+tag)>``
under a key derived (HKDF-SHA256, its own label) from the state directory's ``pan.key`` -- the
same root as the SMS code sealing (``switch.notify.sealing``), so the notification worker in
another process reads the same key and there is no second key file to back up. The AEAD's
associated data binds the merchant id *and* the callback URL: a row edited to send another
merchant's notifications, or to send them to another address, no longer opens, and the worker
parks its events instead of signing them for the wrong receiver.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "msealed1:"
_LABEL = b"switch/merchant_notify: callback secrets, AES-256-GCM, v1"
_AAD = b"switch.merchant_callback.v1\x00"
_NONCE = 12


class SecretSealError(ValueError):
    """A sealed secret does not open: another state directory's key, or the row was edited."""


class CallbackSeal:
    """Seals and opens merchants' notification secrets under one key."""

    def __init__(self, switch_secret: bytes) -> None:
        if len(switch_secret) < 16:
            raise ValueError("switch secret must be at least 16 bytes")
        key = HKDF(algorithm=SHA256(), length=32, salt=None, info=_LABEL).derive(switch_secret)
        self._aead = AESGCM(key)

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> CallbackSeal:
        """The seal of a state directory (its ``pan.key``, created by ``SwitchCore.open``)."""
        return cls(bytes.fromhex((Path(state_dir) / "pan.key").read_text("ascii").strip()))

    def seal(self, merchant_id: str, url: str, secret: str) -> str:
        nonce = os.urandom(_NONCE)
        ct = self._aead.encrypt(nonce, secret.encode("utf-8"), _aad(merchant_id, url))
        return PREFIX + base64.urlsafe_b64encode(nonce + ct).decode("ascii")

    def open(self, merchant_id: str, url: str, stored: str) -> str:
        if not stored.startswith(PREFIX):
            raise SecretSealError("callback secret is not sealed (no msealed1: prefix)")
        try:
            raw = base64.urlsafe_b64decode(stored[len(PREFIX) :].encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise SecretSealError("sealed callback secret is not base64") from None
        if len(raw) <= _NONCE:
            raise SecretSealError("sealed callback secret is truncated")
        try:
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _aad(merchant_id, url))
        except InvalidTag:
            raise SecretSealError(
                "callback secret does not open under this state directory's key (other key, "
                "or the row's merchant or URL was changed: set the callback again)"
            ) from None
        return plain.decode("utf-8")


def _aad(merchant_id: str, url: str) -> bytes:
    return _AAD + merchant_id.encode("utf-8") + b"\x00" + url.encode("utf-8")
