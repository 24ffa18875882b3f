"""The audit trail of operator actions: who, when, what, on what target, and the outcome.

Each call gets one ``Action``; the servicer fills in the target and details as it learns
them. A call that changes something hands ``action.row("ok")`` to the core, which commits it
in the same store transaction as the change (``SwitchCore.set_card_status(..., audit=)``):
the trail and the change are durable together or not at all. A read, a refusal or a call
that changed nothing is recorded in a commit of its own, before the answer leaves, so no
operator sees data the trail does not show they asked for.

Nothing secret is ever recorded: a PAN appears masked (first 6, last 4), keys never.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from switch.store.api import AuditRow, Changes, Store

MAX_TEXT = 500  # per column: a trail of what was asked, not a copy of the request


@dataclass(slots=True)
class Action:
    operator_id: str
    action: str  # the RPC name
    at: float
    target: str = ""
    details: list[str] = field(default_factory=list)
    recorded: bool = False  # the row went out with the change

    def row(self, outcome: str) -> AuditRow:
        return AuditRow(
            self.at,
            self.operator_id[:MAX_TEXT],
            self.action,
            self.target[:MAX_TEXT],
            outcome[:MAX_TEXT],
            "; ".join(self.details)[:MAX_TEXT],
        )


async def record(store: Store, row: AuditRow) -> None:
    """Commit ``row`` on its own (durable on return)."""
    await store.commit(Changes(audit=[row]))
