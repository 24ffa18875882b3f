"""Limit categories: which daily envelope(s) a transaction draws on.

The limits engine only knows small integers; the meaning lives here so that adding a
category is a change in one place (plus a block in ``products.toml``). A purchase draws on
the global card-payment envelope *and* on its sub-envelope (fuel, e-commerce), so a request
maps to a tuple of categories.
"""

from __future__ import annotations

import enum

from switch.core.model import AuthRequest, Channel, TxnType

FUEL_MCCS = frozenset({"5541", "5542"})


class LimitCategory(enum.IntEnum):
    ATM_CASH = 0
    CARD_PAYMENT = 1  # POS + e-commerce + bills: the 200,000 DZD envelope
    COUNTER_CASH = 2
    FUEL = 3
    ECOMMERCE = 4
    BILL_PAYMENT = 5
    TRANSFER = 6

    @property
    def config_name(self) -> str:
        return self.name.lower()


N_CATEGORIES = len(LimitCategory)


def categories_for(req: AuthRequest) -> tuple[LimitCategory, ...]:
    """The envelopes a debit request consumes (empty: no limit applies, e.g. inquiries)."""
    t = req.txn_type
    if t is TxnType.CASH_WITHDRAWAL:
        if req.channel is Channel.COUNTER:
            return (LimitCategory.COUNTER_CASH,)
        return (LimitCategory.ATM_CASH,)
    if t in (TxnType.PURCHASE, TxnType.PREAUTH):
        if req.mcc in FUEL_MCCS:
            return (LimitCategory.CARD_PAYMENT, LimitCategory.FUEL)
        if req.channel is Channel.ECOMMERCE:
            return (LimitCategory.CARD_PAYMENT, LimitCategory.ECOMMERCE)
        return (LimitCategory.CARD_PAYMENT,)
    if t is TxnType.BILL_PAYMENT:
        return (LimitCategory.CARD_PAYMENT, LimitCategory.BILL_PAYMENT)
    if t is TxnType.TRANSFER:
        return (LimitCategory.TRANSFER,)
    return ()
