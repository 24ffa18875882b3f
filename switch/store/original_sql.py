"""``Store.original``'s two queries and its summary, once for both store backends.

What an original transaction still allows (reversal, refund, completion) is the journal's
approved follow-ups summed by type, less what reversing a follow-up gave back; the SQL and
the arithmetic are the same on SQLite and PostgreSQL, only the placeholder (``?`` for
sqlite3, ``$1`` for asyncpg) and how the rows are fetched differ.
"""

# ruff: noqa: S608 -- the f-strings only splice the driver's fixed placeholder, never input

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from switch.store.api import JournalRow, OriginalSummary


def followup_sums_sql(ph: str) -> str:
    """(txn_type, amount, fee) of the approved follow-ups of the original ``ph``."""
    return (
        "SELECT txn_type, COALESCE(SUM(amount), 0), COALESCE(SUM(fee), 0) FROM journal "
        f"WHERE original_txn_id = {ph} AND response_code = '00' GROUP BY txn_type"
    )


def undone_followups_sql(ph: str) -> str:
    """(txn_type, amount) given back by reversing a completion or refund of original ``ph``."""
    return (
        "SELECT c.txn_type, COALESCE(SUM(r.amount), 0) FROM journal r JOIN journal c "
        f"ON r.original_txn_id = c.txn_id WHERE c.original_txn_id = {ph} "
        "AND c.txn_type IN ('completion', 'refund') AND c.response_code = '00' "
        "AND r.response_code = '00' AND r.txn_type IN ('reversal', 'void') "
        "GROUP BY c.txn_type"
    )


def summarize_original(
    j: JournalRow,
    sum_rows: Iterable[Any],
    undone_rows: Iterable[Any],
) -> OriginalSummary:
    """The original ``j`` with its follow-ups' rows (``followup_sums_sql`` and
    ``undone_followups_sql``). A reversed completion is no longer captured, and a reversed
    refund makes the payment refundable again (as the in-memory path in
    switch/core/followups.py does)."""
    sums = {str(t): (int(a), int(f)) for t, a, f in sum_rows}
    undone = {str(t): int(a) for t, a in undone_rows}
    rev = sums.get("reversal", (0, 0))
    void = sums.get("void", (0, 0))
    return OriginalSummary(
        txn_id=j.txn_id,
        txn_type=j.txn_type,
        channel=j.channel,
        response_code=j.response_code,
        card_id=j.card_id,
        account_id=j.account_id,
        amount=j.amount,
        fee=j.fee,
        currency=j.currency,
        categories=j.categories,
        business_day=j.business_day,
        merchant_id=j.merchant_id,
        counter_account_id=j.counter_account_id,
        reversed=rev[0] + void[0],
        refunded=sums.get("refund", (0, 0))[0] - undone.get("refund", 0),
        captured=sums.get("completion", (0, 0))[0] - undone.get("completion", 0),
        fee_reversed=rev[1] + void[1],
        route=j.route,
        parent_txn_id=j.original_txn_id,
    )
