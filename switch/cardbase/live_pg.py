"""One import batch at a time across every node of a PostgreSQL store.

A running switch applies its batches one at a time (``LiveImport``'s lock): each batch's
look-ups (the file's progress, the next card and account ids) see the batch before it
committed. On PostgreSQL several nodes share the store, each with its own lock; two nodes
applying batches at once would both take the same next ids (the second unit's insert fails,
and a failed group commit halts that node) or apply the same batch twice. So on PostgreSQL
a batch also holds a session advisory lock from its look-ups until its unit is durable.

The lock lives on a connection of its own (the look-ups' connection is reopened after an
error; this one must not drop a held lock unnoticed). A wait longer than ``lock_timeout``
is the store's error (the operator is told to retry), not a hang.
"""

from __future__ import annotations

from typing import Any

import psycopg

from switch.store.api import StoreError

#: pg_advisory_lock key of a running switch's import batch ("swimport")
IMPORT_LOCK = 0x7377696D706F7274


class PgBatchLock:
    """``acquire``/``release`` of the import batch lock (blocking: run on a worker thread)."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self._url = url
        self._timeout_ms = max(1, int(timeout_s * 1000))
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def acquire(self) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self._url, autocommit=True,
                    options=f"-c lock_timeout={self._timeout_ms} -c application_name=switch-import",
                )  # fmt: skip
            self._conn.execute("SELECT pg_advisory_lock(%s)", (IMPORT_LOCK,))
        except psycopg.errors.LockNotAvailable:
            raise StoreError(
                "import: another node's batch held the import lock too long; retry"
            ) from None
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"import lock: {type(exc).__name__}: {exc}") from exc

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (IMPORT_LOCK,))
        except psycopg.Error:
            self.close()  # the session is gone, and its lock with it

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
