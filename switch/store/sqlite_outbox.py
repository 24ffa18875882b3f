"""The SMS alert outbox on its own SQLite connection: what a delivery worker needs, nothing more.

Why a class of its own: the delivery worker runs in a separate process from the switch
(``python -m switch.notify.service``), so it must reach the ``alerts`` table without the rest
of ``SqliteStore`` -- no migrations (the switch owns the schema and applies them at start), no
read or group-commit connections, and above all not the state directory's one-process lock
(``switch.lock``), which the running switch holds. ``SqliteStore`` delegates its
``AlertOutbox`` methods to an instance of this class, so the SQL exists once.

Concurrency: SQLite in WAL mode lets this connection read while the switch's group commit
writes; each write here is one short ``BEGIN IMMEDIATE`` transaction, and ``busy_timeout``
makes it wait for the switch's commit in flight instead of failing. ``synchronous=FULL``
(unless ``durable=False``, for tests and benchmarks) makes a ``sent`` mark survive a power
cut, so an SMS is not resent after one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from switch.notify.outbox import Alert
from switch.store.alert_outbox_sql import AlertOutboxSql, alerts_from_rows
from switch.store.api import StoreError
from switch.store.closing import LockedConnection

#: Columns of ``alerts`` this class reads or writes (migrations 0001 and 0002).
REQUIRED_COLUMNS = frozenset(
    {
        "alert_id",
        "msisdn",
        "text",
        "attempts",
        "status",
        "next_attempt_at",
        "created_at",
        "carrier_id",
        "last_error",
        "kind",
        "masked_pan",
        "amount",
        "currency",
        "place",
        "available",
    }
)

BUSY_TIMEOUT_MS = 5000


class OutboxSchemaError(StoreError):
    """The database has no (complete) ``alerts`` table: the switch never migrated it."""


class SqliteOutbox(LockedConnection, AlertOutboxSql):
    """``AlertOutbox`` over ``db_path`` (an existing, migrated switch database).

    Thread-safe: one connection behind a lock, so the worker's executor thread and a test's
    main thread may both call it. Raises ``StoreError`` (``OutboxSchemaError`` for a missing
    schema) naming the file when it cannot be used.
    """

    _PH = "?"

    def __init__(self, db_path: Path, *, durable: bool = True) -> None:
        self.path = Path(db_path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = _connect(self.path, durable)
        try:
            _check_schema(self._conn, self.path)
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    # -- AlertOutbox -------------------------------------------------------------------------
    def claim_due_alerts(self, now: float, limit: int) -> list[Alert]:
        """Pending alerts due at ``now``, longest due first (a fresh alert is due when it is
        created, a retried one when its back-off ends); an alert stored without its text (the
        core stores only the posting's facts) is rendered here, off the authorization path.

        The order is the ``alerts_due (status, next_attempt_at)`` index's own (ties by
        ``alert_id``, the rowid it carries), so a claim reads ``limit`` rows: ordering by
        ``alert_id`` alone sorted *every* pending row on each claim, 42 us per alert with a
        20,000-alert backlog."""
        with self._lock:
            rows = self._open().execute(self._claim_sql(), (now, limit)).fetchall()
        return alerts_from_rows(rows)

    # -- internals ---------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"alert outbox {self.path} is closed")
        return self._conn

    def _tx_many(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """One statement over ``rows`` in one transaction (one commit for a whole batch)."""
        with self._lock:
            conn = self._open()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise


def _connect(path: Path, durable: bool) -> sqlite3.Connection:
    """Open an *existing* database read-write: ``mode=rw`` so a wrong path is an error, not a
    new empty file that the worker would then poll forever."""
    uri = path.absolute().as_uri() + "?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.OperationalError as exc:
        raise StoreError(f"alert outbox {path}: cannot open the database ({exc})") from None
    try:
        # busy_timeout first: switching to WAL needs a lock the switch may hold right now.
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"alert outbox {path}: not a usable SQLite database ({exc})") from None
    return conn


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(alerts)")}
    if not columns:
        raise OutboxSchemaError(
            f"alert outbox {path}: no alerts table (start `switch run` once on this state "
            "directory: it creates and migrates the store)"
        )
    missing = sorted(REQUIRED_COLUMNS - columns)
    if missing:
        raise OutboxSchemaError(
            f"alert outbox {path}: the alerts table lacks column(s) {', '.join(missing)} "
            "(an older schema: start `switch run` once to migrate it)"
        )
