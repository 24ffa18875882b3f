"""Notifications to merchants: signed JSON POSTs from a durable outbox (issue 14 §3).

* ``events``: event types, payment statuses, the JSON body (``build_event``), metadata rules;
* ``ids``: public payment ids (``pay_...``, an HMAC of the txn id: no volume leak) and event
  ids (``evt_...``, random: the merchant's dedupe key);
* ``signing``: ``X-Switch-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>``, and
  ``verify`` as a merchant should run it;
* ``recorder``: turns the core's journaled payments into ``payment_orders`` and
  ``merchant_events`` rows *in the same commit* (``attach(core, recorder)``); callers declare
  order facts with ``payment_order(PaymentOrder(...))`` around ``core.authorize``;
* ``secrets_seal``: merchants' secrets sealed at rest (AES-256-GCM, key from ``pan.key``).

For GATEWAY (``switch/gateway``): wrap each ``core.authorize`` of an order in
``payment_order(PaymentOrder(merchant_id, order_reference=..., order_id=..., metadata=...))``
(the payment's event then commits with it, with ``order_id`` in the body); for an order change
that has no journal row, append ``build_event(...)`` to the ``Changes.merchant_events`` of the
unit that records the change, if ``recorder.enabled(merchant_id)``.
"""

from switch.merchant_notify.events import (
    EventType,
    PaymentStatus,
    build_event,
    check_metadata,
    event_type_for,
    payment_status,
)
from switch.merchant_notify.ids import PaymentIds, new_event_id
from switch.merchant_notify.recorder import (
    EventRecorder,
    PaymentOrder,
    RecordingStore,
    attach,
    payment_order,
)
from switch.merchant_notify.signing import new_secret, signature_header, verify

__all__ = [
    "EventRecorder",
    "EventType",
    "PaymentIds",
    "PaymentOrder",
    "PaymentStatus",
    "RecordingStore",
    "attach",
    "build_event",
    "check_metadata",
    "event_type_for",
    "new_event_id",
    "new_secret",
    "payment_order",
    "payment_status",
    "signature_header",
    "verify",
]
