"""Notifications for changes that are not a core unit (for GATEWAY's order life cycle).

A payment made through ``core.authorize`` needs nothing from here: declare the order around
the call and the recorder writes its event in the payment's own commit::

    from switch.merchant_notify import PaymentOrder, ensure_recorder, payment_order

    recorder = ensure_recorder(core)              # once, at start (idempotent)
    order = PaymentOrder(merchant_id, order_reference=order_number, order_id=gw_order_id,
                         metadata=udfs)           # follow-ups: original_payment_id=
                                                  #   recorder.ids.public(original_txn_id),
                                                  #   taken=..., refunded=... (see PaymentOrder)
    with payment_order(order):
        r = await core.authorize(req)
    # order.payment_id: the payment's public id ("pay_..."), None if nothing was journaled

That covers paid, authorized, declined (by the issuer), reversed and refunded. Do not send
those again from here, or the merchant gets two events (two event ids) for one payment.

An order change without a journal row -- cancelled on the page, expired, refused after too
many tries -- is notified in the same transaction as the order row that records it: the
gateway builds the event with ``build_event(...)`` (a JSON body) and passes it to
``switch.gateway.orders.OrderStore.save(order, events)``, which updates ``gateway_orders`` and
inserts the ``merchant_events`` rows in one transaction on its connection (the outbox is in the
same database), so the order's new state and its notification are durable together or not at
all. Check ``recorder.enabled(merchant_id)`` first: a merchant without an enabled callback gets
no row.

``enqueue_event(core, row)`` here is for a change that has no row of its own to commit with:
one small commit of the event alone through the core's store (the group commit), durable when
it returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from switch.merchant_notify.recorder import ensure_recorder
from switch.store.api import Changes, MerchantEventRow

if TYPE_CHECKING:
    from switch.core.service import SwitchCore


async def enqueue_event(core: SwitchCore, row: MerchantEventRow) -> bool:
    """Commit ``row`` to the outbox if its merchant has an enabled callback; True if so
    (durable on return), False if the merchant is not notified. ``StoreError`` if the store
    cannot commit."""
    if not ensure_recorder(core).enabled(row.merchant_id):
        return False
    await core.store.commit(Changes(merchant_events=[row]))
    return True
