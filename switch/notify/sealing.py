"""Secrets inside SMS texts (one-time codes) sealed at rest, opened only to be sent.

Why: an OTP alert's text is the only place a one-time code exists outside the ``otps`` table's
HMAC. Stored in clear, ``alerts.text`` (and every WAL copy of it, and ``sms.log``) would hand
the code to anyone who reads the state directory. So the core never gives the store a text
holding a secret: it hands a ``SecretText`` -- the message with ``SLOT`` where each secret
goes, and the secrets -- to ``AlertSeal.seal``, and the stored text is::

    sealed1:<base64url(nonce || AES-256-GCM ciphertext+tag)>:<template>

The template (merchant, amount: the same facts the journal holds) stays readable for an
operator; only the secrets are encrypted. The AEAD's associated data binds the template and
the MSISDN, so neither can be changed in the database without the row failing to open (a code
cannot be redirected to another phone by editing ``alerts.msisdn``).

The key is derived (HKDF-SHA256, its own label) from the switch secret ``state_dir/pan.key``
(0600), so the SMS worker process -- which has the state directory, not the core's memory --
reads the same key, and there is no second key file to back up. The worker opens a sealed
text only for a transport that must deliver it (``SmsTransport.shows_secrets``: SMPP, or the
console with the development flag); every other sink gets ``masked`` (each secret ``******``).

``SLOT`` is ASCII SUB (0x1a): the renderers strip control characters from every free-text
part (merchant, place), so no input can forge a slot.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SLOT = "\x1a"
"""Where a secret goes in a template (ASCII SUB: never in a rendered text)."""
MASK = "******"
"""What a log, a terminal or ``sms.log`` shows in place of a secret."""
PREFIX = "sealed1:"
_LABEL = b"switch/notify: alert secrets, AES-256-GCM, v1"
_AAD = b"switch.alert.v1\x00"
_NONCE = 12


class SealError(ValueError):
    """A sealed text does not open: another state directory's key, or the row was edited."""


@dataclass(frozen=True, slots=True)
class SecretText:
    """A message with secrets: ``template`` holds one ``SLOT`` per item of ``secrets``."""

    template: str
    secrets: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.template.count(SLOT) != len(self.secrets):
            raise ValueError("template must hold exactly one slot per secret")
        if any(SLOT in s or not s for s in self.secrets):
            raise ValueError("secrets must be non-empty and hold no slot")

    def reveal(self) -> str:
        """The text the cardholder reads (only for a transport that delivers it)."""
        parts = self.template.split(SLOT)
        out = [parts[0]]
        for secret, part in zip(self.secrets, parts[1:], strict=True):
            out += [secret, part]
        return "".join(out)

    def masked(self) -> str:
        return self.template.replace(SLOT, MASK)


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def masked(stored: str) -> str:
    """What may be shown of a stored text anywhere: a sealed one with its secrets masked
    (no key needed: the template is in clear), any other text as it is."""
    if not is_sealed(stored):
        return stored
    return _split(stored)[1].replace(SLOT, MASK)


def seal_key(switch_secret: bytes) -> bytes:
    """The alert-sealing key, derived from the switch secret (``pan.key``) under its own
    label: the PAN-hash HMAC key and this key never meet."""
    if len(switch_secret) < 16:
        raise ValueError("switch secret must be at least 16 bytes")
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=_LABEL).derive(switch_secret)


class AlertSeal:
    """Seals and opens the secrets of alert texts under one key (see the module docstring)."""

    def __init__(self, switch_secret: bytes) -> None:
        self._aead = AESGCM(seal_key(switch_secret))

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> AlertSeal:
        """The seal of a state directory (its ``pan.key``, created by ``SwitchCore.open``);
        ``FileNotFoundError`` / ``ValueError`` if that file is missing or not hex."""
        text = (Path(state_dir) / "pan.key").read_text(encoding="ascii").strip()
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise ValueError(f"{Path(state_dir) / 'pan.key'}: not a hex key") from None

    def seal(self, msisdn: str, text: SecretText) -> str:
        """The form to store: only the template is readable without the key."""
        if text.template.startswith(PREFIX):
            raise ValueError(f"template must not start with {PREFIX!r}")
        nonce = os.urandom(_NONCE)
        body = json.dumps(list(text.secrets)).encode()
        ct = self._aead.encrypt(nonce, body, _aad(msisdn, text.template))
        return f"{PREFIX}{base64.urlsafe_b64encode(nonce + ct).decode()}:{text.template}"

    def open(self, msisdn: str, stored: str) -> SecretText:
        """The secrets back, for the moment of sending; ``SealError`` if they do not open."""
        blob, template = _split(stored)
        try:
            raw = base64.urlsafe_b64decode(blob.encode())
        except (binascii.Error, ValueError):
            raise SealError("sealed alert text is not base64") from None
        if len(raw) <= _NONCE:
            raise SealError("sealed alert text is truncated")
        try:
            body = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _aad(msisdn, template))
        except InvalidTag:
            raise SealError(
                "sealed alert text does not open under this state directory's key "
                "(other key, or the row's text or msisdn was changed)"
            ) from None
        secrets = json.loads(body)
        return SecretText(template, tuple(str(s) for s in secrets))


def _aad(msisdn: str, template: str) -> bytes:
    return _AAD + msisdn.encode() + b"\x00" + template.encode()


def _split(stored: str) -> tuple[str, str]:
    if not is_sealed(stored):
        raise SealError(f"not a sealed alert text (no {PREFIX!r} prefix)")
    blob, sep, template = stored[len(PREFIX) :].partition(":")
    if not sep:
        raise SealError("sealed alert text has no template")
    return blob, template
