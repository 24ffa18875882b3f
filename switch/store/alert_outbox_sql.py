"""The SMS alert outbox's SQL and row mapping, once for ``SqliteOutbox`` and ``PostgresOutbox``.

Both backends claim the same columns in the same order (the ``alerts_due`` index's) and mark
the same way; only the placeholder (``?`` / ``%s``), the connection and the claim differ
(SQLite reads the due rows -- one worker per state directory; PostgreSQL leases them in the
same statement, so every node's worker claims side by side). A backend mixes
``AlertOutboxSql`` in, names its placeholder in ``_PH`` and provides ``_tx_many`` (whose
rows end with the alert id).
"""

# ruff: noqa: S608 -- the f-strings only splice the backend's fixed placeholder, never input

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from switch.notify.messages import render_alert
from switch.notify.outbox import Alert


def alerts_from_rows(rows: Sequence[Sequence[Any]]) -> list[Alert]:
    """Claimed rows (the columns of ``AlertOutboxSql._claim_sql``) as alerts; an alert stored
    without its text (the core stores only the posting's facts) is rendered here, off the
    authorization path."""
    out = []
    for alert_id, msisdn, text, attempts, kind, masked, amount, cur, place, avail, at in rows:
        if not text:
            when = datetime.fromtimestamp(at, UTC)
            text = render_alert(kind, masked, amount, cur, place, when, avail)
        out.append(Alert(int(alert_id), str(msisdn), str(text), int(attempts)))
    return out


class AlertOutboxSql:
    """The statements and marks shared by both alert outboxes."""

    #: the driver's placeholder: ``?`` (sqlite3) or ``%s`` (psycopg)
    _PH: ClassVar[str]

    def _tx_many(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """One statement over ``rows`` in one transaction (each backend defines its own)."""
        raise NotImplementedError

    def _claim_sql(self) -> str:
        """Pending alerts due at a time, ``alerts_due (status, next_attempt_at)`` index order
        (ties by ``alert_id``), at most a number: args ``(now, limit)``."""
        p = self._PH
        return (
            "SELECT alert_id, msisdn, text, attempts, kind, masked_pan, amount, currency, "
            "place, available, created_at FROM alerts WHERE status = 'pending' "
            f"AND next_attempt_at <= {p} ORDER BY next_attempt_at, alert_id LIMIT {p}"
        )

    def mark_alerts_sent(self, sent: Sequence[tuple[int, str]], now: float) -> None:
        if not sent:
            return
        p = self._PH
        self._tx_many(
            f"UPDATE alerts SET status = 'sent', carrier_id = {p}, attempts = attempts + 1 "
            f"WHERE alert_id = {p}",
            [(carrier_id, alert_id) for alert_id, carrier_id in sent],
        )

    def mark_alert_failed(
        self, alert_id: int, error: str, next_attempt_at: float, give_up: bool
    ) -> None:
        """Only a pending row: with leased claims, a worker that overran its lease may report
        a failure of an alert another worker has sent since; that must not make it pending."""
        p = self._PH
        self._tx_many(
            f"UPDATE alerts SET attempts = attempts + 1, last_error = {p}, next_attempt_at = {p}, "
            f"status = {p} WHERE alert_id = {p} AND status = 'pending'",
            [(error[:500], next_attempt_at, "parked" if give_up else "pending", alert_id)],
        )
