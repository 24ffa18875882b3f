"""``MerchantOutbox`` and the callback configuration on their own SQLite connection.

Like ``switch.store.sqlite_outbox`` (the SMS outbox) and for the same reasons: a delivery
worker may run in another process than the switch, so it opens the existing, migrated
database read-write without migrations or the state directory's lock; WAL lets it work beside
the switch's group commit, ``busy_timeout`` waits for a commit in flight, and each write is one
short ``BEGIN IMMEDIATE`` transaction -- which is also what makes two workers' claims safe:
SQLite runs one write transaction at a time, so the second claim sees the first one's lease.
The SQL is ``sql_outbox``'s, shared with PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from switch.merchant_notify.sql_outbox import SqlMerchantOutbox
from switch.store.api import StoreError

BUSY_TIMEOUT_MS = 5000
T = TypeVar("T")


class SqliteMerchantOutbox(SqlMerchantOutbox):
    """The ``merchant_events`` / ``merchant_callbacks`` tables of ``db_path`` (an existing
    switch database, migrated by ``switch run``)."""

    def __init__(self, db_path: Path, *, durable: bool = True) -> None:
        path = Path(db_path)
        uri = path.absolute().as_uri() + "?mode=rw"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"merchant outbox {path}: cannot open ({exc})") from None
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            if not conn.execute("PRAGMA table_info(merchant_events)").fetchall():
                raise StoreError(
                    f"merchant outbox {path}: no merchant_events table (start `switch run` "
                    "once on this state directory: it migrates the store)"
                )
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"merchant outbox {path}: not usable ({exc})") from None
        except BaseException:
            conn.close()
            raise
        super().__init__(conn, str(path))

    def _transaction(self, conn: Any, body: Callable[[Any], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return out
