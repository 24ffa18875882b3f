"""The contract between the store's alert outbox and the delivery worker.

The authorization core writes an ``Alert`` row in the same transaction as the posting it
reports (so no approval exists without its alert, and no alert without its approval); the
worker claims due rows, sends them and marks them. The store implements ``AlertOutbox``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: int
    msisdn: str
    text: str
    attempts: int


class AlertOutbox(Protocol):
    def claim_due_alerts(self, now: float, limit: int) -> list[Alert]:
        """Pending alerts whose next attempt time is due, oldest first."""
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
