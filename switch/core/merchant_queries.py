"""Read-only lookups the merchant API needs beyond ``SwitchCore``'s own methods.

Kept apart from ``service.py`` so the core's stable API stays small: a bill lookup (what is
due, is it paid) and a merchant's payments in a time range, page by page. Both only read the
store; every money movement still goes through ``SwitchCore.authorize``.
"""

from __future__ import annotations

from dataclasses import dataclass

from switch.core.service import Payment, SwitchCore


@dataclass(frozen=True, slots=True)
class BillView:
    biller_id: str
    biller_name: str
    category: str
    reference: str
    amount_due: int
    currency: int
    paid_txn: str | None


async def lookup_bill(core: SwitchCore, biller_id: str, reference: str) -> BillView | None:
    """The bill as a payer sees it, or ``None`` for an unknown biller or reference."""
    biller = next((b for b in core.store.billers() if b.biller_id == biller_id), None)
    if biller is None:
        return None
    bill = await core.store.bill(biller_id, reference)
    if bill is None:
        return None
    currency = 12  # bills are issued in dinars (the billers' settlement accounts are DZD)
    return BillView(
        biller.biller_id,
        biller.name,
        biller.category,
        bill.reference,
        bill.amount_due,
        currency,
        bill.paid_txn,
    )


def biller_exists(core: SwitchCore, biller_id: str) -> bool:
    return any(b.biller_id == biller_id for b in core.store.billers())


async def payments_page(
    core: SwitchCore,
    merchant_id: str,
    *,
    start: float | None,
    end: float | None,
    before_txn_id: str | None,
    limit: int,
) -> list[Payment]:
    """The merchant's journal entries with ``start <= created_at < end``, newest first.

    Keyset pagination on the transaction id (ids grow with time): a page starts strictly
    before ``before_txn_id``, so pages stay stable while new payments arrive.
    """
    # refused requests (an error status to the caller, no payment id) are the operator's only
    sql = "SELECT txn_id FROM journal WHERE merchant_id = ? AND merchant_id != '' AND refused = 0"
    args: list[object] = [merchant_id]
    if start is not None:
        sql += " AND created_at >= ?"
        args.append(start)
    if end is not None:
        sql += " AND created_at < ?"
        args.append(end)
    if before_txn_id is not None:
        sql += " AND txn_id < ?"
        args.append(before_txn_id)
    sql += " ORDER BY txn_id DESC LIMIT ?"
    args.append(limit)
    out: list[Payment] = []
    for (txn_id,) in core.store.query(sql, tuple(args)):
        p = await core.payment(merchant_id, str(txn_id))
        if p is not None:
            out.append(p)
    return out
