"""``MerchantOutbox`` and the callback configuration on their own SQLite connection.

Like ``switch.store.sqlite_outbox`` (the SMS outbox) and for the same reasons: a delivery
worker may run in another process than the switch, so it opens the existing, migrated
database read-write without migrations or the state directory's lock; WAL lets it work beside
the switch's group commit, ``busy_timeout`` waits for a commit in flight, and each write is one
short ``BEGIN IMMEDIATE`` transaction -- which is also what makes two workers' claims safe:
SQLite runs one write transaction at a time, so the second claim sees the first one's lease.
The SQL is plain (no ``RETURNING``, no upsert beyond ``ON CONFLICT``) so a PostgreSQL
counterpart can run the same statements.
"""

# ruff: noqa: S608 -- the f-strings only splice fixed column lists and placeholders
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from switch.merchant_notify.outbox import Callback, ClaimedEvent, Delivered, Failed
from switch.store.api import StoreError

BUSY_TIMEOUT_MS = 5000


class SqliteMerchantOutbox:
    """The ``merchant_events`` / ``merchant_callbacks`` tables of ``db_path`` (an existing
    switch database, migrated by ``switch run``). Thread-safe (one connection, one lock)."""

    def __init__(self, db_path: Path, *, durable: bool = True) -> None:
        self.path = Path(db_path)
        self._lock = threading.Lock()
        uri = self.path.absolute().as_uri() + "?mode=rw"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"merchant outbox {self.path}: cannot open ({exc})") from None
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            if not conn.execute("PRAGMA table_info(merchant_events)").fetchall():
                raise StoreError(
                    f"merchant outbox {self.path}: no merchant_events table (start `switch run` "
                    "once on this state directory: it migrates the store)"
                )
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"merchant outbox {self.path}: not usable ({exc})") from None
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteMerchantOutbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"merchant outbox {self.path} is closed")
        return self._conn

    # -- MerchantOutbox ------------------------------------------------------------------------
    def claim_due_events(
        self, now: float, limit: int, lease: float, token: str
    ) -> list[ClaimedEvent]:
        with self._lock:
            conn = self._open()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "UPDATE merchant_events SET claimed_until = ?, claim_token = ? "
                    "WHERE event_id IN (SELECT event_id FROM merchant_events "
                    "WHERE status = 'pending' AND next_attempt_at <= ? "
                    "AND (claimed_until IS NULL OR claimed_until <= ?) "
                    "ORDER BY next_attempt_at, event_id LIMIT ?)",
                    (now + lease, token, now, now, limit),
                )
                rows = conn.execute(
                    "SELECT event_id, merchant_id, event_type, body, attempts, created_at "
                    "FROM merchant_events WHERE claim_token = ? AND status = 'pending' "
                    "ORDER BY next_attempt_at, event_id",
                    (token,),
                ).fetchall()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return [
            ClaimedEvent(str(e), str(m), str(t), str(b), int(a), float(c))
            for e, m, t, b, a, c in rows
        ]

    def mark_events(
        self, token: str, now: float, delivered: Sequence[Delivered], failed: Sequence[Failed]
    ) -> None:
        if not delivered and not failed:
            return
        with self._lock:
            conn = self._open()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "UPDATE merchant_events SET status = 'delivered', attempts = attempts + 1, "
                    "delivered_at = ?, last_status = ?, claimed_until = NULL, "
                    "claim_token = NULL WHERE event_id = ? AND claim_token = ?",
                    [(now, d.http_status, d.event_id, token) for d in delivered],
                )
                conn.executemany(
                    "UPDATE merchant_events SET status = ?, attempts = attempts + 1, "
                    "last_error = ?, last_status = ?, next_attempt_at = ?, "
                    "claimed_until = NULL, claim_token = NULL "
                    "WHERE event_id = ? AND claim_token = ?",
                    [
                        (
                            "failed" if f.give_up else "pending",
                            f.error[:500],
                            f.http_status,
                            f.next_attempt_at,
                            f.event_id,
                            token,
                        )
                        for f in failed
                    ],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def callbacks(self, merchant_ids: Sequence[str]) -> dict[str, Callback]:
        ids = sorted(set(merchant_ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = (
                self._open()
                .execute(
                    "SELECT merchant_id, url, secret_sealed, enabled FROM merchant_callbacks "
                    f"WHERE merchant_id IN ({marks})",
                    ids,
                )
                .fetchall()
            )
        return {str(m): Callback(str(m), str(u), str(s), bool(e)) for m, u, s, e in rows}

    # -- configuration and inspection -------------------------------------------------------
    def enabled_merchants(self) -> frozenset[str]:
        """Ids of merchants with an enabled callback (the recorder's snapshot)."""
        with self._lock:
            rows = (
                self._open()
                .execute("SELECT merchant_id FROM merchant_callbacks WHERE enabled = 1")
                .fetchall()
            )
        return frozenset(str(m) for (m,) in rows)

    def merchant_exists(self, merchant_id: str) -> bool:
        with self._lock:
            rows = (
                self._open()
                .execute("SELECT 1 FROM merchants WHERE merchant_id = ?", (merchant_id,))
                .fetchall()
            )
        return bool(rows)

    def set_callback(self, merchant_id: str, url: str, secret_sealed: str, now: float) -> None:
        self._write(
            "INSERT INTO merchant_callbacks (merchant_id, url, secret_sealed, enabled, "
            "updated_at) VALUES (?, ?, ?, 1, ?) ON CONFLICT (merchant_id) DO UPDATE SET "
            "url = excluded.url, secret_sealed = excluded.secret_sealed, enabled = 1, "
            "updated_at = excluded.updated_at",
            (merchant_id, url, secret_sealed, now),
        )

    def set_enabled(self, merchant_id: str, enabled: bool, now: float) -> bool:
        """Enable or disable a merchant's callback; False if it has none."""
        with self._lock:
            conn = self._open()
            cur = conn.execute(
                "UPDATE merchant_callbacks SET enabled = ?, updated_at = ? WHERE merchant_id = ?",
                (int(enabled), now, merchant_id),
            )
            return cur.rowcount > 0

    def retry_failed(self, merchant_id: str) -> int:
        """Make a merchant's failed events due again (after its endpoint is fixed), with a
        fresh count of attempts. Due at their creation time, i.e. at once whatever the
        worker's clock; an event past ``max_age`` still gets one attempt."""
        with self._lock:
            cur = self._open().execute(
                "UPDATE merchant_events SET status = 'pending', next_attempt_at = created_at, "
                "attempts = 0 WHERE merchant_id = ? AND status = 'failed'",
                (merchant_id,),
            )
            return cur.rowcount

    def events(self, merchant_id: str | None = None, limit: int = 50) -> list[tuple[object, ...]]:
        """(event_id, merchant_id, event_type, payment_id, status, attempts, last_status,
        last_error, created_at) newest first, for operators and tests."""
        sql = (
            "SELECT event_id, merchant_id, event_type, payment_id, status, attempts, "
            "last_status, last_error, created_at FROM merchant_events"
        )
        args: tuple[object, ...] = ()
        if merchant_id is not None:
            sql += " WHERE merchant_id = ?"
            args = (merchant_id,)
        sql += " ORDER BY created_at DESC, event_id LIMIT ?"
        with self._lock:
            return list(self._open().execute(sql, (*args, limit)).fetchall())

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            conn = self._open()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(sql, args)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
