"""Payments become notifications and order rows in the same commit as their journal row.

The core builds one ``Changes`` unit per authorization and submits it to its store. The
recorder is the core's unit observer (``attach(core, recorder)`` ->
``SwitchCore.add_unit_observer``): for each unit with a journal row of a merchant, before the
unit is queued for the group commit, it appends

* a ``payment_orders`` row (public payment id, order reference, metadata) when the caller
  declared the payment with ``payment_order(...)`` (the gRPC servicers and the gateway do) --
  for a refused call too, so the id the caller is given to quote maps back to the journal;
* a ``merchant_events`` row when the merchant has an enabled callback and the row is one a
  merchant is told about (``events.event_type_for``: paid, authorized, declined, reversed,
  refunded) -- whichever way the payment came (gRPC, gateway, ISO 8583, hold expiry).

So the event is durable exactly when the payment is: no payment without its notification, no
notification of a payment that was never committed. Nothing here does I/O on the payment path:
the set of merchants with callbacks is a snapshot refreshed every ``refresh_s`` seconds.

What a unit costs here is on every API payment's path, so it is kept small: one HMAC gives
both the payment id and the event id (``PaymentIds.pair``; no random bytes), the event's body
is stored in the compact form (its values joined, ``events.COMPACT``) and becomes JSON only
when the worker sends it, the metadata is encoded once for both rows, and a unit with
neither an order nor a notified merchant costs two look-ups.

How a caller declares an order (GATEWAY: around ``core.authorize`` in ``confirmOrder.do``,
``deposit.do``, ``reverse.do``, ``refund.do``)::

    order = PaymentOrder(merchant_id, order_reference="CMD-1", order_id=gw_order_id,
                         metadata={"udf1": "..."}, original_payment_id=..., taken=..., refunded=...)
    with payment_order(order):
        result = await core.authorize(req)
    order.payment_id   # "pay_...": the public id of the journal row, None if nothing committed

The context is a ``contextvars.ContextVar``: it is seen by the ``submit`` the core makes in the
same task, never by another request's.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from switch.merchant_notify.events import (
    EventType,
    event_type_for,
    payment_event_row,
    payment_status,
)
from switch.merchant_notify.ids import PaymentIds
from switch.merchant_notify.orders import OrderFacts, by_txn
from switch.store.api import Changes, JournalRow, MerchantEventRow, PaymentOrderRow

if TYPE_CHECKING:
    from switch.core.service import SwitchCore

log = logging.getLogger(__name__)

MAX_RETRYING = 10_000
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

_new_tuple = tuple.__new__
_OPERATION = {
    "purchase": "sale",
    "preauth": "authorization",
    "completion": "capture",
    "void": "void",
    "reversal": "reversal",
    "refund": "refund",
    "bill_payment": "bill_payment",
}


@dataclass(slots=True)
class PaymentOrder:
    """What the caller knows about a payment the core does not journal.

    For a follow-up (capture, void, refund) give the original's ``original_payment_id`` and
    its ``order_reference`` / ``order_id`` / ``metadata`` (they carry over), and for a refund
    ``taken`` (captured amount) and ``refunded`` (refunded before this one), so the event can
    say refunded or partially refunded. ``txn_id`` / ``payment_id`` are filled in when the
    core submits the payment's unit."""

    merchant_id: str
    order_reference: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    order_id: str = ""
    original_payment_id: str = ""
    taken: int = 0
    refunded: int = 0
    #: False: a decline of this payment is not notified here (the gateway's page may let the
    #: cardholder try again; it notifies the order's decline itself once it is final)
    notify_decline: bool = True
    txn_id: str | None = None
    payment_id: str | None = None


_CURRENT: contextvars.ContextVar[PaymentOrder | None] = contextvars.ContextVar(
    "switch_payment_order", default=None
)


class _Declared:
    """The ``with`` block of ``payment_order`` (a class: a generator-based context manager
    costs two more objects and a generator step on each payment)."""

    __slots__ = ("_order", "_token")

    def __init__(self, order: PaymentOrder) -> None:
        self._order = order

    def __enter__(self) -> PaymentOrder:
        self._token = _CURRENT.set(self._order)
        return self._order

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _CURRENT.reset(self._token)


def payment_order(order: PaymentOrder) -> _Declared:
    """Declare ``order`` for the ``core.authorize`` awaited inside the ``with`` block."""
    return _Declared(order)


class EventRecorder:
    """Decorates the core's units (see the module docstring)."""

    def __init__(
        self,
        ids: PaymentIds,
        enabled_merchants: Callable[[], frozenset[str]],
        *,
        refresh_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        order_of: Callable[[str], OrderFacts | None] | None = None,
    ) -> None:
        """``enabled_merchants`` reads the ids of merchants with an enabled callback
        (``SqliteMerchantOutbox.enabled_merchants``); it runs at most every ``refresh_s``.
        ``order_of(txn_id)`` reads a payment's order row: a follow-up nobody declared (an ISO
        reversal, a hold expiry) of a payment made with an order inherits its facts."""
        self.ids = ids
        self._order_of = order_of
        self._load = enabled_merchants
        self.refresh_s = refresh_s
        self._monotonic = monotonic
        self._enabled: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        # orders whose unit did not commit, by idempotency key, until the core's retry
        self._retrying: dict[str, PaymentOrder] = {}

    def refresh(self) -> None:
        """Re-read the merchants with callbacks now (after a configuration change)."""
        self._enabled = self._load()
        self._loaded_at = self._monotonic()

    def enabled(self, merchant_id: str) -> bool:
        """True if ``merchant_id`` has an enabled callback (as of the last refresh)."""
        now = self._monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self.refresh_s:
            try:
                self.refresh()
            except Exception:  # keep the last snapshot; payments must not fail for this
                log.exception("could not read the merchant callbacks; using the last snapshot")
                self._loaded_at = now
        return merchant_id in self._enabled

    def observe(self, ch: Changes) -> None:
        """The core's unit observer: ``decorate``, and if that fails, the unit goes on
        without its extra rows (logged): a notification bug must not refuse a payment."""
        try:
            self.decorate(ch)
        except Exception:
            ch.merchant_events.clear()
            ch.payment_orders.clear()
            log.exception("merchant notification rows could not be built; unit committed without")

    def decorate(self, ch: Changes) -> None:
        """Append the order row and the event of ``ch``'s journal row, if any."""
        j = ch.journal
        if j is None or not j.merchant_id:
            return
        merchant_id = j.merchant_id
        order = _CURRENT.get()
        if order is not None and (order.merchant_id != merchant_id or order.txn_id is not None):
            order = None  # not this unit's (another merchant's, or already used)
        key = ch.idempotency.key if ch.idempotency is not None else None
        if order is None:
            if key is not None and key in self._retrying:
                # the same request decided again after its unit lost a race with another
                # node (``Conflict``): the core's retry runs outside the caller's context
                order = self._retrying.pop(key)
                if order.merchant_id != merchant_id:
                    order = None
            if order is None and j.original_txn_id and j.txn_type in _OPERATION:
                order = self._inherited(merchant_id, j.original_txn_id)
        event_type = None
        if not j.refused and self.enabled(merchant_id):  # a refusal: an error, no event
            event_type = event_type_for(j.txn_type, j.response_code == "00")
            if event_type is EventType.DECLINED and order is not None and not order.notify_decline:
                event_type = None
        if order is None and event_type is None:
            return
        payment_id, event_id = self.ids.pair(j.txn_id)
        metadata_json = "{}"
        if order is not None:
            order.txn_id = j.txn_id
            order.payment_id = payment_id
            if order.metadata:
                metadata_json = _ENCODE(order.metadata)
            if key is not None:
                self._rearm_on_failure(ch, key, order)
            row = (j.txn_id, payment_id, merchant_id, order.order_reference, metadata_json,
                   j.created_at)  # fmt: skip
            # a PaymentOrderRow without its Python-level __new__
            ch.payment_orders.append(_new_tuple(PaymentOrderRow, row))
        else:
            payment_id = j.txn_id  # no order row: the journal's id is the payment's id
        if event_type is not None:
            ch.merchant_events.append(
                self._event(j, event_type, order, payment_id, event_id, metadata_json)
            )

    def _inherited(self, merchant_id: str, original_txn_id: str) -> PaymentOrder | None:
        """The order of an undeclared follow-up whose original was made with one (one read
        by primary key; on the event loop, and only for such rare units)."""
        if self._order_of is None:
            return None
        try:
            parent = self._order_of(original_txn_id)
        except Exception:  # the follow-up commits anyway, with its journal id
            log.exception("could not read the order of %s", original_txn_id)
            return None
        if parent is None:
            return None
        return PaymentOrder(
            merchant_id,
            order_reference=parent.order_reference,
            metadata=dict(parent.metadata),
            original_payment_id=parent.payment_id,
        )

    def _rearm_on_failure(self, ch: Changes, key: str, order: PaymentOrder) -> None:
        """If ``ch`` does not commit, let the unit the core decides again for the same key
        (``Pipeline._retry``) take ``order`` over."""
        settled = ch.on_settled

        def on_settled(error: BaseException | None) -> object:
            if error is not None:
                order.txn_id = order.payment_id = None
                if len(self._retrying) >= MAX_RETRYING:  # a halted store: nothing retries
                    self._retrying.clear()
                self._retrying[key] = order
            return None if settled is None else settled(error)

        ch.on_settled = on_settled

    def _event(
        self,
        j: JournalRow,
        event_type: EventType,
        order: PaymentOrder | None,
        payment_id: str,
        event_id: str,
        metadata_json: str,
    ) -> MerchantEventRow:
        txn_type = j.txn_type
        approved = j.response_code == "00"
        refund_total = None
        taken = 0
        if order is not None and txn_type == "refund":
            taken, refund_total = order.taken, order.refunded + j.amount
        status = payment_status(txn_type, approved, j.amount, captured=taken,
                                refund_total=refund_total)  # fmt: skip
        if order is not None:
            order_id, reference = order.order_id, order.order_reference
            original = order.original_payment_id
        else:
            order_id = reference = ""
            original = j.original_txn_id or ""
        # ``_value_``: the member's plain string (``.value`` is a slow descriptor)
        return payment_event_row(
            (event_id, event_type._value_, j.created_at, j.merchant_id, payment_id, original,
             order_id, _OPERATION.get(txn_type, txn_type), status._value_, j.amount,
             j.currency, j.response_code, j.auth_code or "", j.masked_pan, metadata_json,
             reference)
        )  # fmt: skip


#: the recorder of each core (``attach``), without keeping a closed core alive
_ATTACHED: weakref.WeakKeyDictionary[SwitchCore, EventRecorder] = weakref.WeakKeyDictionary()


def attach(core: SwitchCore, recorder: EventRecorder) -> None:
    """Make ``recorder`` the observer of the core's units (once per core; see the module
    docstring), through the core's public hook ``add_unit_observer``."""
    if core in _ATTACHED:
        raise ValueError("a recorder is already attached to this core")
    _ATTACHED[core] = recorder
    core.add_unit_observer(recorder.observe)


def attached(core: SwitchCore) -> EventRecorder | None:
    """The recorder attached to ``core``, if any."""
    return _ATTACHED.get(core)


#: The ``settings`` row holding the payment-id key (random, made on first use)
ID_KEY_SETTING = "merchant_notify.payment_id_key"


def ensure_recorder(core: SwitchCore) -> EventRecorder:
    """The core's recorder, attaching the standard one on first call: payment ids keyed by a
    random key kept in the store's ``settings`` (so every process of the switch, whatever its
    store backend, computes the same ids), and the merchants with callbacks read from
    ``merchant_callbacks`` through the store's read connection. The gRPC API, the gateway and
    ``switch run`` each call this; the first one attaches."""
    existing = attached(core)
    if existing is not None:
        return existing
    store = core.store
    key_hex = store.setting(ID_KEY_SETTING)
    if key_hex is None:
        key_hex = secrets.token_bytes(32).hex()
        store.put_setting(ID_KEY_SETTING, key_hex)
        store.flush_admin()

    def enabled_merchants() -> frozenset[str]:
        rows = store.query("SELECT merchant_id FROM merchant_callbacks WHERE enabled = 1")
        return frozenset(str(m) for (m,) in rows)

    def order_of(txn_id: str) -> OrderFacts | None:
        return by_txn(store, [txn_id]).get(txn_id)

    recorder = EventRecorder(
        PaymentIds(bytes.fromhex(key_hex)), enabled_merchants, order_of=order_of
    )
    attach(core, recorder)
    return recorder
