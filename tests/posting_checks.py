"""The ledger check after a run of several nodes: every approval an ATM saw posted once.

Shared by the failover tests (two PostgreSQL nodes, one killed) and the ``--workers`` tests:
both end by proving the same rule of issue 13 -- each approval the client saw is journaled
once with its own auth code and three balanced legs, no approval it did not see, no posting
without a journal row, and the demo accounts' total unchanged (withdrawals only move money).
"""

from __future__ import annotations

from pathlib import Path

from switch.core import demo
from switch.iso8583.message import Message
from tests.pg_server import query_state


def assert_approvals_posted_once(state: Path, approved: list[tuple[Message, Message]]) -> None:
    """``approved``: the (request, answer) pairs an ATM got 00 for; ``state``: the state
    directory (or the store named by ``SWITCH_STORE``) the nodes wrote."""

    def q(sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return query_state(state, sql, args)

    for msg, answer in approved:
        rows = q(
            "SELECT txn_id FROM journal WHERE stan = ? AND transmission = ? "
            "AND terminal_id = ? AND txn_type = 'cash_withdrawal' AND response_code = '00'",
            (msg.text(11), msg.text(7), msg.text(41)),
        )
        assert len(rows) == 1, (msg.text(11), rows)
        txn_id = str(rows[0][0])
        assert txn_id[-6:] == answer.text(38)  # the auth code the ATM got
        legs = q("SELECT SUM(amount), COUNT(*) FROM postings WHERE txn_id = ?", (txn_id,))
        assert [(int(str(a)), int(str(n))) for a, n in legs] == [(0, 3)]
    ((n_approved,),) = q(
        "SELECT COUNT(*) FROM journal WHERE txn_type = 'cash_withdrawal' AND response_code = '00'"
    )
    assert int(str(n_approved)) == len(approved)  # none the ATMs did not see, none twice
    assert q("SELECT txn_id FROM postings GROUP BY txn_id HAVING SUM(amount) != 0") == []
    ((orphans,),) = q(
        "SELECT COUNT(*) FROM postings p LEFT JOIN journal j ON j.txn_id = p.txn_id "
        "WHERE j.txn_id IS NULL"
    )
    assert int(str(orphans)) == 0
    ((total,),) = q("SELECT SUM(balance) FROM accounts")
    assert int(str(total)) == sum(c.balance for c in demo.CARDS)
