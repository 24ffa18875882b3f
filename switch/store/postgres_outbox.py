"""The SMS alert outbox on its own PostgreSQL connection (the ``SqliteOutbox`` counterpart).

The delivery worker calls it from its own thread (``AlertOutbox`` is a blocking contract), so
it has a blocking psycopg connection of its own, behind a lock, in autocommit: each write is
one statement, one transaction, durable (``synchronous_commit`` on) before it returns, so a
``sent`` mark survives a crash and an SMS is not resent after one. The columns, the order of
claims and the marks are the SQLite outbox's (``AlertOutboxSql``); the text is rendered here
when the core stored only the posting's facts.

**Every node delivers: claims are leased per row** (docs/architecture.md §7). A claim is one
statement: it picks the due rows (``FOR UPDATE SKIP LOCKED``: a row another worker's claim
holds at that instant is skipped, not waited for) and moves their ``next_attempt_at`` to
``now + lease`` in the same statement, so once it commits no other worker sees them due. Any
number of workers, on any number of nodes, claim side by side and never get the same row.
The marks end a lease: ``sent`` for good, a failure at its back-off time. A worker that dies
between its claim and its marks leaves the rows pending with a lease that runs out: after it
they are due again and another worker resends them with the same reference, as after a crash
of the only worker before. ``now`` is always the time the worker passes (its injected clock),
never the database's; nodes' clocks must agree to well within the lease (NTP does).

Rows a claim took but the batch did not reach (the link went down at an earlier alert, or the
batch ran out of time, ``AlertWorker``) are given back by this outbox's next claim, in the
same transaction, or by its ``close`` (a clean stop): their ``next_attempt_at`` goes back to
what it was, so they are due at once as on SQLite, not after the lease. Only rows still
pending under *this* claim's lease value are given back: a row whose lease ran out and that
another worker claimed since is left alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import psycopg

from switch.notify.outbox import CLAIM_LEASE_S, Alert
from switch.store.alert_outbox_sql import AlertOutboxSql, alerts_from_rows
from switch.store.api import StoreError
from switch.store.closing import LockedConnection

log = logging.getLogger("switch.store.outbox")

#: The claim: due rows in ``alerts_due`` index order, skipping rows another claim has locked,
#: leased in the same statement. Args: ``(now, limit, lease_until)``. RETURNING lists the
#: columns of ``AlertOutboxSql._claim_sql`` and then the row's due time before the lease
#: (to order the batch and to give untouched rows back).
_CLAIM = (
    "WITH due AS (SELECT alert_id, next_attempt_at FROM alerts "
    "WHERE status = 'pending' AND next_attempt_at <= %s "
    "ORDER BY next_attempt_at, alert_id LIMIT %s FOR UPDATE SKIP LOCKED) "
    "UPDATE alerts AS a SET next_attempt_at = %s FROM due WHERE a.alert_id = due.alert_id "
    "RETURNING a.alert_id, a.msisdn, a.text, a.attempts, a.kind, a.masked_pan, a.amount, "
    "a.currency, a.place, a.available, a.created_at, due.next_attempt_at"
)
#: Give rows of an earlier claim back: args ``(ids, due times, that claim's lease_until)``.
_RELEASE = (
    "UPDATE alerts AS a SET next_attempt_at = r.due "
    "FROM unnest(%s::bigint[], %s::double precision[]) AS r(alert_id, due) "
    "WHERE a.alert_id = r.alert_id AND a.status = 'pending' AND a.next_attempt_at = %s"
)


class PostgresOutbox(LockedConnection, AlertOutboxSql):
    """``AlertOutbox`` over the (migrated) database at ``url``; ``lease`` seconds per claim."""

    _PH = "%s"

    def __init__(self, url: str, *, durable: bool = True, lease: float = CLAIM_LEASE_S) -> None:
        from switch.store import redacted

        if not lease > 0:
            raise ValueError("lease must be > 0 seconds")
        self.path = redacted(url)  # for messages
        self.lease = lease
        self._lock = threading.Lock()
        # rows claimed and not marked yet: alert id -> its due time before the claim, and the
        # lease value that claim wrote (the next claim gives unmarked ones back)
        self._held: dict[int, float] = {}
        self._held_until = 0.0
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
        """Pending alerts due at ``now``, longest due first, each leased to this worker until
        ``now + lease`` (see the module docstring); first, in the same transaction, the rows
        of this outbox's previous claim that were never marked are given back."""
        with self._lock:
            conn = self._open()
            with conn.transaction():
                self._give_back(conn)
                lease_until = now + self.lease
                rows = conn.execute(_CLAIM, (now, limit, lease_until)).fetchall()
            self._held = {int(r[0]): float(r[-1]) for r in rows}
            self._held_until = lease_until
        rows.sort(key=lambda r: (r[-1], r[0]))  # RETURNING keeps no order
        return alerts_from_rows([r[:-1] for r in rows])

    def close(self) -> None:
        """Gives back the rows of the last claim that were never marked, then closes: a clean
        stop hands them to the other workers at once, not after the lease. (Called once the
        worker has stopped: no batch is being sent.)"""
        with self._lock:
            if self._conn is not None and self._held:
                try:
                    self._give_back(self._conn)
                except psycopg.Error as exc:  # gone: the lease will free them
                    log.debug("SMS alerts: could not give claimed rows back (%s)", exc)
        super().close()

    def _give_back(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """The rows of the previous claim not marked since: due again as they were."""
        if self._held:
            ids, dues = list(self._held), list(self._held.values())
            conn.execute(_RELEASE, (ids, dues, self._held_until))
            self._held = {}

    def _tx_many(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """One statement over ``rows`` in one transaction (one commit for a whole batch); the
        rows marked (the last parameter is the alert id) are no longer this claim's to give
        back."""
        with self._lock:
            conn = self._open()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, rows)
            for row in rows:
                if isinstance(row[-1], int):
                    self._held.pop(row[-1], None)
