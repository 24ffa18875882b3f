"""Store-and-forward queue of messages owed to remote issuers: reversals (0420, repeated as
0421) and pre-authorization completion advices (0220, repeated as 0221).

When a request to a remote issuer times out its outcome is unknown: the issuer may have
debited the card. The switch answers 91 and owes the issuer a reversal until the issuer
acknowledges it (0430), across restarts (docs/architecture.md §4). So a reversal is written here
-- committed and fsynced (WAL, ``synchronous=FULL``) -- *before* the 91 goes back, and it is
deleted only once acknowledged. A completion is owed the same way: approved to the acquirer
once its advice is durable here, delivered in order with the reversals (one queue per issuer,
oldest first) until the issuer answers 0230.

A small SQLite file of its own (``state_dir/saf.db``, mode 0600) rather than a table in the
core's store: the queue belongs to the ISO 8583 link, is written only on failures, and must
not wait behind the core's group commit. A reversal carries the PAN (no PIN block or track
data), so each row's fields are sealed: AES-256-CBC + HMAC-SHA256 (encrypt-then-MAC) under
keys derived from the switch's secret (``state_dir/pan.key``), so the file alone shows no PAN.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import switch_native

from switch.iso8583.message import FieldValue, Message

__all__ = ["SafEntry", "SafQueue", "SafSealError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS saf (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    issuer TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt REAL,
    mti TEXT NOT NULL,
    sealed BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS saf_issuer ON saf (issuer, id);
"""


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
    """The durable queue; every method runs its SQLite work off the event loop."""

    def __init__(self, path: Path, key: bytes) -> None:
        self._sealer = _Sealer(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # each commit fsyncs the WAL
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query_now(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _exec_now(self, sql: str, args: tuple[object, ...]) -> int:
        with self._lock:
            return self._db.execute(sql, args).lastrowid or 0

    async def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._query_now, sql, args)

    async def _exec(self, sql: str, args: tuple[object, ...]) -> int:
        return await asyncio.to_thread(self._exec_now, sql, args)

    async def add(self, issuer: str, message: Message) -> int:
        """Queue ``message`` (an 0420 or 0220) for ``issuer``; returns once durable."""
        return await self._exec(
            "INSERT INTO saf (issuer, created_at, mti, sealed) VALUES (?, ?, ?, ?)",
            (issuer, time.time(), message.mti, self._seal(message)),
        )

    async def pending(self, issuer: str, limit: int = 100) -> list[SafEntry]:
        """The oldest unacknowledged messages for ``issuer``, in the order they were queued."""
        rows = await self._query(
            "SELECT id, issuer, mti, sealed, attempts, created_at FROM saf"
            " WHERE issuer = ? ORDER BY id LIMIT ?",
            (issuer, limit),
        )
        return [SafEntry(r[0], r[1], self._unseal(r[2], r[3]), r[4], r[5]) for r in rows]

    def _seal(self, message: Message) -> bytes:
        return self._sealer.seal(_dump(dict(message.fields)).encode())

    def _unseal(self, mti: str, sealed: bytes) -> Message:
        return Message(mti, _load(self._sealer.open(sealed).decode()))

    async def count(self, issuer: str | None = None) -> int:
        if issuer is None:
            rows = await self._query("SELECT COUNT(*) FROM saf")
        else:
            rows = await self._query("SELECT COUNT(*) FROM saf WHERE issuer = ?", (issuer,))
        return int(rows[0][0])

    async def mark_attempt(self, entry_id: int) -> None:
        """Record a send before it happens: after a restart the next send is a repeat."""
        await self._exec(
            "UPDATE saf SET attempts = attempts + 1, last_attempt = ? WHERE id = ?",
            (time.time(), entry_id),
        )

    async def acknowledge(self, entry_id: int) -> None:
        """The issuer answered (0430 / 0230): the message is delivered, it leaves the queue."""
        await self._exec("DELETE FROM saf WHERE id = ?", (entry_id,))
