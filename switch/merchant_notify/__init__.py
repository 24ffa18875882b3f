"""Notifications to merchants: signed JSON POSTs from a durable outbox (issue 14 §3).

* ``events``: event types, payment statuses, the JSON body (``build_event``; a stored body is
  read through ``json_body``), metadata rules;
* ``ids``: public payment ids (``pay_...``, an HMAC of the txn id: no volume leak) and event
  ids (``evt_...``, the merchant's dedupe key: the rest of that HMAC, or random);
* ``signing``: ``X-Switch-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>``, and
  ``verify`` as a merchant should run it;
* ``recorder``: turns the core's journaled payments into ``payment_orders`` and
  ``merchant_events`` rows *in the same commit* (``attach(core, recorder)``, through
  ``SwitchCore.add_unit_observer``); callers declare
  order facts with ``payment_order(PaymentOrder(...))`` around ``core.authorize``;
* ``secrets_seal``: merchants' secrets sealed at rest (AES-256-GCM, key from ``pan.key``).

For GATEWAY (``switch/gateway``), see ``enqueue``: wrap each ``core.authorize`` of an order in
``payment_order(PaymentOrder(merchant_id, order_reference=..., order_id=..., metadata=...))``
(the payment's event then commits with it, with ``order_id`` in the body, and nothing else is
needed for paid / authorized / declined / reversed / refunded); an order change that has no
journal row (cancelled, expired) is written with the order row in one transaction
(``build_event(...)`` passed to ``OrderStore.save(order, events)``); ``enqueue_event`` commits
an event that has no row of its own to go with.

* ``worker``: leased claims, signed POSTs (aiohttp), back-off, give-up;
* ``outbox`` (the contract), ``sql_outbox`` (its SQL, once), ``sqlite_outbox`` /
  ``pg_outbox`` (own connections), ``outboxes.open_outbox`` (which one, like ``open_store``);
* ``orders``: reads of ``payment_orders`` (public id <-> txn id, reference, metadata);
* ``service``: ``switch run --merchant-notify inline|off``; ``cli``: ``python -m
  switch.merchant_notify set-callback|enable|disable|events|retry-failed|payment|purge|worker``.
"""

from switch.merchant_notify.enqueue import enqueue_event
from switch.merchant_notify.events import (
    EventType,
    PaymentStatus,
    build_event,
    check_metadata,
    event_type_for,
    json_body,
    payment_status,
)
from switch.merchant_notify.ids import PaymentIds, new_event_id
from switch.merchant_notify.recorder import (
    EventRecorder,
    PaymentOrder,
    attach,
    ensure_recorder,
    payment_order,
)
from switch.merchant_notify.signing import new_secret, signature_header, verify

__all__ = [
    "EventRecorder",
    "EventType",
    "PaymentIds",
    "PaymentOrder",
    "PaymentStatus",
    "attach",
    "build_event",
    "check_metadata",
    "enqueue_event",
    "ensure_recorder",
    "event_type_for",
    "json_body",
    "new_event_id",
    "new_secret",
    "payment_order",
    "payment_status",
    "signature_header",
    "verify",
]
