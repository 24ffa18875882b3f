"""The SMS alert outbox on its own PostgreSQL connection (the ``SqliteOutbox`` counterpart).

The delivery worker calls it from its own thread (``AlertOutbox`` is a blocking contract), so
it has a blocking psycopg connection of its own, behind a lock, in autocommit: each write is
one statement, one transaction, durable (``synchronous_commit`` on) before it returns, so a
``sent`` mark survives a crash and an SMS is not resent after one. The SQL is the SQLite
outbox's: same columns, same order of claims, the text rendered here when the core stored
only the posting's facts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import psycopg

from switch.notify.outbox import Alert
from switch.store.alert_outbox_sql import AlertOutboxSql, alerts_from_rows
from switch.store.api import StoreError
from switch.store.closing import LockedConnection

log = logging.getLogger("switch.store.outbox")

#: pg_try_advisory_lock key of the one delivering SMS worker ("switchsw")
SMS_WORKER_LOCK = 0x7377697463687377


class PostgresOutbox(LockedConnection, AlertOutboxSql):
    """``AlertOutbox`` over the (migrated) database at ``url``."""

    _PH = "%s"

    def __init__(self, url: str, *, durable: bool = True) -> None:
        from switch.store import redacted

        self.path = redacted(url)  # for messages
        self._lock = threading.Lock()
        self._active = False  # holds SMS_WORKER_LOCK: this is the delivering worker
        self._standby_logged = False
        try:
            self._conn: psycopg.Connection[tuple[Any, ...]] | None = psycopg.connect(
                url, autocommit=True, options=f"-c synchronous_commit={'on' if durable else 'off'}"
            )
        except psycopg.Error as exc:
            raise StoreError(f"alert outbox: cannot connect to PostgreSQL ({exc})") from None

    def _open(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None:
            raise StoreError("alert outbox is closed")
        return self._conn

    def claim_due_alerts(self, now: float, limit: int) -> list[Alert]:
        """Pending alerts due at ``now``, longest due first (``alerts_due`` index order).

        One delivering worker per database, whatever the number of nodes: the first claim
        takes a session advisory lock (``SMS_WORKER_LOCK``) and keeps it while this
        connection lives; a worker of another node gets no alerts until that one stops (its
        connection closes and the lock goes with it), so no alert is sent by two workers."""
        with self._lock:
            conn = self._open()
            if not self._active:
                got = conn.execute("SELECT pg_try_advisory_lock(%s)", (SMS_WORKER_LOCK,))
                row = got.fetchone()
                if not (row and row[0]):
                    if not self._standby_logged:
                        log.info("SMS alerts: another worker delivers them; standing by")
                        self._standby_logged = True
                    return []
                self._active = True
            rows = conn.execute(self._claim_sql(), (now, limit)).fetchall()
        return alerts_from_rows(rows)

    def close(self) -> None:
        """Give the delivering role up *before* the connection goes: PostgreSQL releases a
        dead session's advisory locks only once its backend has noticed the disconnect, which
        is asynchronous; an explicit unlock makes a clean stop hand over at once."""
        with self._lock:
            if self._conn is not None and self._active:
                try:
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (SMS_WORKER_LOCK,))
                except psycopg.Error as exc:  # the connection is gone: so is the lock
                    log.debug("SMS alerts: unlock on close failed (%s)", exc)
                self._active = False
        super().close()

    def _tx_many(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """One statement over ``rows`` in one transaction (one commit for a whole batch)."""
        with self._lock:
            conn = self._open()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, rows)
