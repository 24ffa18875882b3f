"""The SQL of ``MerchantOutbox`` and of the callback configuration, once for both backends.

Subclasses (``SqliteMerchantOutbox``, ``PostgresMerchantOutbox``) open the connection and say
how a write transaction starts and how placeholders are spelled; everything else is here. The
statements are plain SQL both engines run.

Claims are safe under concurrency on either engine: the claiming UPDATE re-checks, on the row
itself, that it is still pending and not leased. On SQLite one write transaction runs at a
time (``BEGIN IMMEDIATE``), so the second claimer sees the first one's lease; on PostgreSQL
the inner SELECT skips rows another claim has locked (``FOR UPDATE SKIP LOCKED``), and a row
that was leased meanwhile fails the outer re-check instead of being claimed twice.
"""

# ruff: noqa: S608 -- the f-strings splice fixed clauses and placeholders, never input
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from switch.merchant_notify.outbox import Callback, ClaimedEvent, Delivered, Failed
from switch.store.api import StoreError
from switch.store.closing import LockedConnection

T = TypeVar("T")
_DUE = (
    "status = 'pending' AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?)"
)


class SqlMerchantOutbox(LockedConnection):
    """``MerchantOutbox`` + callbacks over one DB-API connection behind a lock (thread-safe).
    ``path`` names the database in messages (a URL without its password)."""

    #: appended to the claim's inner SELECT (PostgreSQL: skip rows another claim locked)
    SKIP_LOCKED = ""

    def __init__(self, conn: Any, path: str) -> None:
        self._conn: Any | None = conn
        self.path = path
        self._lock = threading.Lock()

    # -- what a backend provides -----------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        """``sql`` in the driver's placeholder spelling (written with ``?``)."""
        return sql

    def _transaction(self, conn: Any, body: Callable[[Any], T]) -> T:
        """Run ``body(conn)`` in one write transaction."""
        raise NotImplementedError

    # -- plumbing ------------------------------------------------------------------------------
    def _open(self) -> Any:
        if self._conn is None:
            raise StoreError(f"merchant outbox {self.path} is closed")
        return self._conn

    def _exec(self, conn: Any, sql: str, args: Sequence[object] = ()) -> Any:
        return conn.execute(self._sql(sql), tuple(args))

    def _many(self, conn: Any, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            cur = conn.cursor()
            try:
                cur.executemany(self._sql(sql), [tuple(r) for r in rows])
            finally:
                cur.close()

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._exec(self._open(), sql, args).fetchall())

    def _write(self, sql: str, args: Sequence[object]) -> int:
        with self._lock:
            conn = self._open()
            return int(self._transaction(conn, lambda c: self._exec(c, sql, args).rowcount))

    # -- MerchantOutbox ------------------------------------------------------------------------
    def claim_due_events(
        self, now: float, limit: int, lease: float, token: str
    ) -> list[ClaimedEvent]:
        claim = (
            f"UPDATE merchant_events SET claimed_until = ?, claim_token = ? WHERE {_DUE} "
            f"AND event_id IN (SELECT event_id FROM merchant_events WHERE {_DUE} "
            f"ORDER BY next_attempt_at, event_id LIMIT ?{self.SKIP_LOCKED})"
        )

        def body(conn: Any) -> list[tuple[Any, ...]]:
            self._exec(conn, claim, (now + lease, token, now, now, now, now, limit))
            return list(
                self._exec(
                    conn,
                    "SELECT event_id, merchant_id, event_type, body, attempts, created_at "
                    "FROM merchant_events WHERE claim_token = ? AND status = 'pending' "
                    "ORDER BY next_attempt_at, event_id",
                    (token,),
                ).fetchall()
            )

        with self._lock:
            rows = self._transaction(self._open(), body)
        return [
            ClaimedEvent(str(e), str(m), str(t), str(b), int(a), float(c))
            for e, m, t, b, a, c in rows
        ]

    def mark_events(
        self, token: str, now: float, delivered: Sequence[Delivered], failed: Sequence[Failed]
    ) -> None:
        if not delivered and not failed:
            return

        def body(conn: Any) -> None:
            self._many(
                conn,
                "UPDATE merchant_events SET status = 'delivered', attempts = attempts + 1, "
                "delivered_at = ?, last_status = ?, claimed_until = NULL, claim_token = NULL "
                "WHERE event_id = ? AND claim_token = ?",
                [(now, d.http_status, d.event_id, token) for d in delivered],
            )
            self._many(
                conn,
                "UPDATE merchant_events SET status = ?, attempts = attempts + 1, "
                "last_error = ?, last_status = ?, next_attempt_at = ?, claimed_until = NULL, "
                "claim_token = NULL WHERE event_id = ? AND claim_token = ?",
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

        with self._lock:
            self._transaction(self._open(), body)

    def callbacks(self, merchant_ids: Sequence[str]) -> dict[str, Callback]:
        ids = sorted(set(merchant_ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._read(
            "SELECT merchant_id, url, secret_sealed, enabled FROM merchant_callbacks "
            f"WHERE merchant_id IN ({marks})",
            ids,
        )
        return {str(m): Callback(str(m), str(u), str(s), bool(e)) for m, u, s, e in rows}

    # -- configuration and inspection ------------------------------------------------------------
    def enabled_merchants(self) -> frozenset[str]:
        """Ids of merchants with an enabled callback."""
        rows = self._read("SELECT merchant_id FROM merchant_callbacks WHERE enabled = 1")
        return frozenset(str(m) for (m,) in rows)

    def merchant_exists(self, merchant_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM merchants WHERE merchant_id = ?", (merchant_id,)))

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
        return (
            self._write(
                "UPDATE merchant_callbacks SET enabled = ?, updated_at = ? WHERE merchant_id = ?",
                (int(enabled), now, merchant_id),
            )
            > 0
        )

    def retry_failed(self, merchant_id: str) -> int:
        """Make a merchant's failed events due again (after its endpoint is fixed), with a
        fresh count of attempts. Due at their creation time, i.e. at once whatever the
        worker's clock; an event past ``max_age`` still gets one attempt."""
        return self._write(
            "UPDATE merchant_events SET status = 'pending', next_attempt_at = created_at, "
            "attempts = 0 WHERE merchant_id = ? AND status = 'failed'",
            (merchant_id,),
        )

    def purge_delivered(self, before: float) -> int:
        """Delete delivered events created before ``before`` (epoch seconds): the outbox keeps
        what is pending or failed, and delivered rows only as long as an operator wants them."""
        return self._write(
            "DELETE FROM merchant_events WHERE status = 'delivered' AND created_at < ?",
            (before,),
        )

    def payment(self, payment_id: str) -> tuple[Any, ...] | None:
        """(txn_id, merchant_id, order_reference, metadata JSON) of a public payment id: how
        an operator finds the journal entry of the id a merchant quotes."""
        rows = self._read(
            "SELECT txn_id, merchant_id, order_reference, metadata FROM payment_orders "
            "WHERE payment_id = ?",
            (payment_id,),
        )
        return rows[0] if rows else None

    def events(self, merchant_id: str | None = None, limit: int = 50) -> list[tuple[Any, ...]]:
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
        return self._read(sql, (*args, limit))
