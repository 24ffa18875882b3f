"""The contract between the merchant-event outbox and its delivery worker.

A worker *claims* due events with a lease: in one write transaction it stamps them with its
``claim_token`` and ``claimed_until = now + lease``; another worker skips rows whose lease has
not run out. Marks (delivered / failed) apply only while the row still carries the marker's
token, so a worker that stalled past its lease cannot overwrite the outcome of the worker that
took the row over. A worker that dies leaves its rows claimed until the lease ends; then they
are due again (never lost). At least once: a crash between the merchant's 2xx and the mark
sends the event again, with the same ``event_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    event_id: str
    merchant_id: str
    event_type: str
    body: str  # as stored: JSON, or the compact form (events.json_body makes the JSON)
    attempts: int  # attempts before this one
    created_at: float


@dataclass(frozen=True, slots=True)
class Callback:
    merchant_id: str
    url: str
    secret_sealed: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class Delivered:
    event_id: str
    http_status: int


@dataclass(frozen=True, slots=True)
class Failed:
    event_id: str
    error: str
    http_status: int  # 0: no HTTP answer (connection refused, timeout)
    next_attempt_at: float
    give_up: bool


class MerchantOutbox(Protocol):
    def claim_due_events(
        self, now: float, limit: int, lease: float, token: str
    ) -> list[ClaimedEvent]:
        """Pending events due at ``now`` and not leased by another worker, oldest due first,
        leased to ``token`` until ``now + lease``."""
        ...

    def mark_events(
        self, token: str, now: float, delivered: Sequence[Delivered], failed: Sequence[Failed]
    ) -> None:
        """Record a batch's outcomes in one transaction (rows still leased to ``token``)."""
        ...

    def callbacks(self, merchant_ids: Sequence[str]) -> dict[str, Callback]:
        """The callbacks configured for these merchants (absent: none configured)."""
        ...
