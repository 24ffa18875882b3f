"""Store-and-forward queue of messages owed to remote issuers: reversals (0420, repeated as
0421) and pre-authorization completion advices (0220, repeated as 0221).

When a request to a remote issuer times out its outcome is unknown: the issuer may have
debited the card. The switch answers 91 and owes the issuer a reversal until the issuer
acknowledges it (0430), across restarts (docs/architecture.md §4). So a reversal is written here
-- committed and durable -- *before* the 91 goes back, and it is deleted only once
acknowledged. A completion is owed the same way: approved to the acquirer once its advice is
durable here, delivered in order with the reversals (one queue per issuer, oldest first) until
the issuer answers 0230.

The rows are shared by every node that serves the same store (docs/architecture.md §7,
``switch.store.saf_rows``): on PostgreSQL a table of the shared database (migration 0017), on
SQLite the file ``state_dir/saf.db`` (mode 0600) that every ``--workers`` process of the
machine opens -- not the core's store file, whose one writer is the group commit: the queue is
written on failures only and must not wait behind it, and a queue file from before stays
where it was. Nodes take turns through leases (``claim`` / ``release``): one node at a time
delivers an issuer's queue, in order.

A reversal carries the PAN (no PIN block or track data), so each row's fields are sealed:
AES-256-CBC + HMAC-SHA256 (encrypt-then-MAC) under keys derived from the switch's secret
(``state_dir/pan.key``, the same on every node), so the rows alone show no PAN.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import switch_native

from switch.iso8583.message import FieldValue, Message
from switch.store.saf_rows import SafRows, SqliteSafRows

__all__ = ["SafEntry", "SafQueue", "SafSealError"]


@dataclass(frozen=True, slots=True)
class SafEntry:
    entry_id: int
    issuer: str
    message: Message  # the first transmission (0420 / 0220); repeats go out as 0421 / 0221
    attempts: int  # sends already made (a repeat is due when > 0)
    created_at: float


def _dump(fields: dict[int, FieldValue]) -> str:
    return json.dumps(
        {str(k): ({"hex": v.hex()} if isinstance(v, bytes) else v) for k, v in fields.items()}
    )


def _load(text: str) -> dict[int, FieldValue]:
    raw = json.loads(text)
    return {int(k): (bytes.fromhex(v["hex"]) if isinstance(v, dict) else v) for k, v in raw.items()}


class SafSealError(ValueError):
    """A queued row does not authenticate under this switch's key (tampered, other key)."""


class _Sealer:
    """Encrypt-then-MAC of one row; keys derived from the switch secret by HMAC labels."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("saf key: at least 16 bytes")
        self._enc = hmac.new(secret, b"switch saf encryption", hashlib.sha256).digest()
        self._mac = hmac.new(secret, b"switch saf authentication", hashlib.sha256).digest()

    def seal(self, plain: bytes) -> bytes:
        iv = secrets.token_bytes(16)
        pad = 16 - len(plain) % 16
        body = iv + switch_native.aes_encrypt_cbc(self._enc, iv, plain + bytes([pad]) * pad)
        return body + hmac.new(self._mac, body, hashlib.sha256).digest()

    def open(self, sealed: bytes) -> bytes:
        body, tag = sealed[:-32], sealed[-32:]
        want = hmac.new(self._mac, body, hashlib.sha256).digest()
        if len(body) < 32 or not hmac.compare_digest(tag, want):
            raise SafSealError("saf row: authentication failed")
        plain = switch_native.aes_decrypt_cbc(self._enc, body[:16], body[16:])
        return plain[: -plain[-1]]


class SafQueue:
    """The durable queue, sealed; every call runs its database work off the event loop.

    ``rows``: a ``SafRows`` backend, or the path of a SQLite queue file (``saf.db``).
    ``holder`` names this node in the leases it takes (host, pid and a random part by default:
    two queues opened by one process are two holders)."""

    def __init__(self, rows: SafRows | Path, key: bytes, holder: str | None = None) -> None:
        self._sealer = _Sealer(key)
        self.rows = rows if isinstance(rows, SafRows) else SqliteSafRows(Path(rows))
        self.path = getattr(self.rows, "path", None)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    def close(self) -> None:
        self.rows.close()

    async def add(self, issuer: str, message: Message) -> int:
        """Queue ``message`` (an 0420 or 0220) for ``issuer``; returns once durable."""
        sealed = self._seal(message)
        return await asyncio.to_thread(self.rows.add, issuer, time.time(), message.mti, sealed)

    async def pending(self, issuer: str, limit: int = 100) -> list[SafEntry]:
        """The oldest unacknowledged messages for ``issuer``, in the order they were queued."""
        rows = await asyncio.to_thread(self.rows.pending, issuer, limit)
        return [SafEntry(r[0], r[1], self._unseal(r[2], r[3]), r[4], r[5]) for r in rows]

    def _seal(self, message: Message) -> bytes:
        return self._sealer.seal(_dump(dict(message.fields)).encode())

    def _unseal(self, mti: str, sealed: bytes) -> Message:
        return Message(mti, _load(self._sealer.open(sealed).decode()))

    async def count(self, issuer: str | None = None) -> int:
        return await asyncio.to_thread(self.rows.count, issuer)

    async def mark_attempt(self, entry_id: int) -> None:
        """Record a send before it happens: after a restart the next send is a repeat."""
        await asyncio.to_thread(self.rows.mark_attempt, entry_id, time.time())

    async def acknowledge(self, entry_id: int) -> None:
        """The issuer answered (0430 / 0230): the message is delivered, it leaves the queue."""
        await asyncio.to_thread(self.rows.acknowledge, entry_id)

    async def claim(self, name: str, seconds: float) -> bool:
        """Take or renew the lease ``name`` for ``seconds`` as this queue's holder; False while
        another node holds it (``switch.store.saf_rows``)."""
        return await asyncio.to_thread(self.rows.claim, name, self.holder, seconds)

    async def release(self, name: str) -> None:
        """Give the lease ``name`` back (nothing if another holder has it by now)."""
        await asyncio.to_thread(self.rows.release, name, self.holder)
