"""The contract between the store's alert outbox and the delivery worker.

The authorization core writes an ``Alert`` row in the same transaction as the posting it
reports (so no approval exists without its alert, and no alert without its approval); the
worker claims due rows, sends them and marks them. The store implements ``AlertOutbox``.

A claim may *lease* the rows it returns (PostgreSQL does, so every node runs a worker): they
are not due again for ``CLAIM_LEASE_S`` unless marked, and a worker that dies holding them
leaves them due once the lease is over. A worker must therefore finish a batch well inside
the lease: ``AlertWorker`` starts no send later than half of it after its claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

#: Seconds a leasing claim holds its rows (``PostgresOutbox``): long against a batch (an SMPP
#: send times out after 10 s, and a worker starts none after half the lease), short enough
#: that a dead node's alerts go out within a minute or so.
CLAIM_LEASE_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: int
    msisdn: str
    text: str
    attempts: int


class AlertOutbox(Protocol):
    def claim_due_alerts(self, now: float, limit: int) -> list[Alert]:
        """Pending alerts whose next attempt time is due at ``now`` (the worker's clock),
        oldest first; a leasing outbox makes them not due to anyone else until ``now`` +
        its lease (or their mark)."""
        ...

    def mark_alerts_sent(self, sent: Sequence[tuple[int, str]], now: float) -> None:
        """Mark ``(alert_id, carrier_id)`` pairs sent, all in one transaction: the worker
        marks a whole batch at once (one commit, not one fsync per SMS)."""
        ...

    def mark_alert_failed(
        self, alert_id: int, error: str, next_attempt_at: float, give_up: bool
    ) -> None:
        """Record a failed attempt; ``give_up`` parks the alert for an operator."""
        ...
