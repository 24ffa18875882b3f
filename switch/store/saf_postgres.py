"""The store-and-forward queue in the PostgreSQL store every node shares (migration 0017).

The same rows and leases as ``state_dir/saf.db`` (``switch.store.saf_rows``), so that every
node sees every queued reversal and completion advice and a node that dies leaves its
issuer's queue to another after the lease. A blocking psycopg connection of its own, in
autocommit with ``synchronous_commit`` on: a queued message is durable when ``add`` returns,
before the 91 or the approval goes back. A broken connection is opened again once and the
call repeated (a repeated ``add`` whose first commit did land queues the message twice: the
issuer sees the same STAN and field 7 again, as it does a 0421 repeat, and matches it).
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from switch.store.api import StoreError
from switch.store.saf_rows import SafRows

__all__ = ["PostgresSafRows"]


class PostgresSafRows(SafRows):
    """``SafRows`` over the (migrated) database at ``url``."""

    _PH = "%s"
    _NOW = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"

    def __init__(self, url: str) -> None:
        from switch.store import redacted

        self.url = url
        self.path = redacted(url)  # for messages
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._closed = False
        with self._lock:
            self._connect()

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                options="-c synchronous_commit=on -c application_name=switch-saf",
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"store-and-forward queue: cannot connect to {self.path} ({exc})"
            ) from None
        return self._conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, statements: list[tuple[str, tuple[object, ...]]]) -> list[Any]:
        with self._lock:
            if self._closed:
                raise StoreError("store-and-forward queue is closed")
            try:
                try:
                    return self._run_on(self._conn or self._connect(), statements)
                except psycopg.OperationalError:  # the server restarted, the link broke
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    return self._run_on(self._connect(), statements)  # once more
            except psycopg.Error as exc:
                raise StoreError(f"store-and-forward queue {self.path}: {exc}") from exc

    def _run_on(
        self,
        conn: psycopg.Connection[tuple[Any, ...]],
        statements: list[tuple[str, tuple[object, ...]]],
    ) -> list[Any]:
        out: list[Any] = []
        with conn.transaction():
            for sql, args in statements:
                cur = conn.execute(self._sql(sql), args)
                if cur.description is not None:
                    out.append(cur.fetchall())
                else:
                    out.append((cur.rowcount, None))
        return out
