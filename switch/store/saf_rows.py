"""The store-and-forward queue's rows and leases, shared by every node that delivers them.

``switch.iso8583.saf.SafQueue`` seals each message and hands this layer opaque bytes; here is
where they live and how the nodes take turns on them (docs/architecture.md §7):

* ``saf``: one row per message owed to a remote issuer (``issuer``, ``mti``, ``sealed``,
  ``attempts``), delivered oldest first (``id`` order) and deleted only on the issuer's
  acknowledgement;
* ``saf_leases``: ``(name, holder, expires_at)``. A node delivers an issuer's queue only while
  it holds the lease ``issuer:<name>``, and decides a follow-up of a remote original only
  while it holds ``original:<txn id>``. A lease is taken or renewed in one transaction
  (inserted if absent, else updated if expired or already ours), given back by deleting
  it; one left by a node that died expires after its length and is taken over. Times are
  the *database's* clock, so nodes on several machines (or a test's shifted clock) compare
  one time.

Two backends with the same SQL (``_PH`` placeholder, ``_NOW`` clock expression):

* :class:`SqliteSafRows` -- ``state_dir/saf.db``, opened by every ``--workers`` process of
  the machine (WAL, ``synchronous=FULL``: each commit fsyncs before it returns, a
  ``busy_timeout`` so processes wait for each other's short writes instead of failing);
* ``switch.store.saf_postgres.PostgresSafRows`` -- the tables of migration 0017 in the
  PostgreSQL store every node shares.

The calls are blocking (each is one short transaction); the queue runs them off the event loop.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from switch.store.api import StoreError

__all__ = ["SafRow", "SafRows", "SqliteSafRows"]

#: ``(id, issuer, mti, sealed, attempts, created_at)``
SafRow = tuple[int, str, str, bytes, int, float]

#: saf.db's schema. ``AUTOINCREMENT`` (this file only; the PostgreSQL table of migration 0017
#: draws its ids from an identity column): an id is never reused, so id order is queue order.
_SQLITE_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS saf_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""


class SafRows:
    """The SQL of the queue and its leases; a backend supplies ``_run`` (one transaction)."""

    _PH = "?"
    #: the database's clock in epoch seconds
    _NOW = "((julianday('now') - 2440587.5) * 86400.0)"

    def _sql(self, text: str) -> str:
        return text.replace("?", self._PH).replace("NOW()", self._NOW)

    def _run(self, statements: list[tuple[str, tuple[object, ...]]]) -> list[Any]:
        """Execute ``statements`` in one transaction; per statement, its rows (a SELECT) or
        ``(rowcount, lastrowid)``."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- the queue -------------------------------------------------------------------------
    def add(self, issuer: str, created_at: float, mti: str, sealed: bytes) -> int:
        (result,) = self._run(
            [
                (
                    "INSERT INTO saf (issuer, created_at, mti, sealed) VALUES (?, ?, ?, ?)"
                    " RETURNING id",
                    (issuer, created_at, mti, sealed),
                )
            ]
        )
        return int(result[0][0])

    def pending(self, issuer: str, limit: int) -> list[SafRow]:
        (rows,) = self._run(
            [
                (
                    "SELECT id, issuer, mti, sealed, attempts, created_at FROM saf"
                    " WHERE issuer = ? ORDER BY id LIMIT ?",
                    (issuer, limit),
                )
            ]
        )
        return [(int(r[0]), r[1], r[2], bytes(r[3]), int(r[4]), float(r[5])) for r in rows]

    def count(self, issuer: str | None) -> int:
        if issuer is None:
            (rows,) = self._run([("SELECT COUNT(*) FROM saf", ())])
        else:
            (rows,) = self._run([("SELECT COUNT(*) FROM saf WHERE issuer = ?", (issuer,))])
        return int(rows[0][0])

    def mark_attempt(self, entry_id: int, now: float) -> None:
        self._run(
            [("UPDATE saf SET attempts = attempts + 1, last_attempt = ? WHERE id = ?",
              (now, entry_id))]
        )  # fmt: skip

    def acknowledge(self, entry_id: int) -> None:
        self._run([("DELETE FROM saf WHERE id = ?", (entry_id,))])

    # -- leases ----------------------------------------------------------------------------
    def claim(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease ``name`` for ``seconds``: True when ``holder`` has it (it
        was free, expired or already ``holder``'s), False while another holder's runs."""
        inserted, updated = self._run(
            [
                (
                    "INSERT INTO saf_leases (name, holder, expires_at) VALUES (?, ?, NOW() + ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    (name, holder, seconds),
                ),
                (
                    "UPDATE saf_leases SET holder = ?, expires_at = NOW() + ?"
                    " WHERE name = ? AND (holder = ? OR expires_at < NOW())",
                    (holder, seconds, name, holder),
                ),
            ]
        )
        return bool(inserted[0] or updated[0])

    def release(self, name: str, holder: str) -> None:
        """Give the lease back (a no-op when it expired and another holder took it)."""
        self._run([("DELETE FROM saf_leases WHERE name = ? AND holder = ?", (name, holder))])

    def lease_holder(self, name: str) -> str | None:
        """Who holds ``name`` now (None: free or expired), for tests and the operator."""
        (rows,) = self._run(
            [("SELECT holder FROM saf_leases WHERE name = ? AND expires_at >= NOW()", (name,))]
        )
        return str(rows[0][0]) if rows else None


class SqliteSafRows(SafRows):
    """The queue in ``path`` (``state_dir/saf.db``, mode 0600), which several processes of
    one machine may open at once (``switch run --workers``)."""

    #: how long a statement waits for another process's write before failing (ms)
    BUSY_TIMEOUT_MS = 10_000

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout={self.BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # each commit fsyncs the WAL
        self._db.executescript(_SQLITE_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, statements: list[tuple[str, tuple[object, ...]]]) -> list[Any]:
        out: list[Any] = []
        with self._lock:
            db = self._db
            try:
                # IMMEDIATE: the write lock first, so a read-then-write never needs an
                # upgrade another process could refuse (SQLITE_BUSY without waiting)
                db.execute("BEGIN IMMEDIATE" if len(statements) > 1 else "BEGIN")
                try:
                    for sql, args in statements:
                        cur = db.execute(self._sql(sql), args)
                        if cur.description is not None:
                            out.append(cur.fetchall())
                        else:
                            out.append((cur.rowcount, cur.lastrowid))
                    db.execute("COMMIT")
                except BaseException:
                    db.rollback()
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"store-and-forward queue {self.path}: {exc}") from exc
        return out

    def drain(self, into: Callable[[SafRow], object]) -> int:
        """Hand every row to ``into`` (oldest first) and delete them, all under this file's
        write lock: processes draining the same file at once (``--workers`` nodes starting
        together) take turns and the second finds it empty. An error (or a crash) keeps every
        row here; those ``into`` took already are then handed over again next time."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    "SELECT id, issuer, mti, sealed, attempts, created_at FROM saf ORDER BY id"
                ).fetchall()
                for r in rows:
                    into((int(r[0]), r[1], r[2], bytes(r[3]), int(r[4]), float(r[5])))
                db.execute("DELETE FROM saf WHERE id <= ?", (rows[-1][0] if rows else 0,))
                db.execute("COMMIT")
            except BaseException:
                db.rollback()
                raise
        return len(rows)
