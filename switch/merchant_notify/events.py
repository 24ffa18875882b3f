"""The notification a merchant receives: event types, payment statuses and the JSON body.

Body (UTF-8 JSON object, keys in this order; README "Merchant notifications")::

    {"event_id": "evt_...", "type": "payment.paid", "created_at": "2026-12-03T09:00:00.000Z",
     "merchant_id": "M-ECOM-001", "payment_id": "pay_...", "original_payment_id": "",
     "order_id": "", "order_reference": "CMD-1001", "operation": "sale",
     "status": "captured", "amount": 250000, "currency": 12, "response_code": "00",
     "auth_code": "123456", "masked_pan": "628058******1234", "metadata": {"cart": "42"}}

``amount`` is in minor units (centimes), ``currency`` ISO 4217 numeric; ``payment_id`` is the
operation the event reports (a refund's own id), ``original_payment_id`` the payment it refers
to (empty for a sale or authorization); ``order_id`` is the gateway's order id (empty for a
gRPC payment), ``order_reference`` the merchant's own. Never a full PAN: ``build_event``
refuses one.

Rows built here go into ``Changes.merchant_events`` of the unit that makes the change they
report, so the event exists if and only if the change is durable. The recorder stores a
payment's body in a compact form (the values joined by a separator, ``COMPACT``) that
``json_body`` turns into exactly this JSON when the worker sends it: no JSON is written on the
payment's path. Anything reading ``merchant_events.body`` goes through ``json_body``.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import json.encoder
import math
from collections.abc import Mapping

from switch.merchant_notify.ids import new_event_id
from switch.store.api import MerchantEventRow


class EventType(enum.StrEnum):
    PAID = "payment.paid"  # a sale, capture or bill payment approved: the money is taken
    AUTHORIZED = "payment.authorized"  # a pre-authorization approved: a hold, not yet paid
    DECLINED = "payment.declined"  # a sale or pre-authorization refused by the issuer
    REVERSED = "payment.reversed"  # a void or reversal approved: the payment is cancelled
    REFUNDED = "payment.refunded"  # a refund approved (full or partial)


class PaymentStatus(enum.StrEnum):
    """Where a payment stands (gRPC ``PaymentStatus`` and the body's ``status``)."""

    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    VOIDED = "voided"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    DECLINED = "declined"


MAX_METADATA_ENTRIES = 20
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500


class _UtcStamps:
    """``2026-12-03T09:00:00.123Z`` for epoch seconds, as ``datetime.fromtimestamp(s, UTC)``
    rounds them (half-even to the microsecond, then milliseconds truncated): the part up to
    the second is kept for the last second seen, since a busy switch stamps many payments in
    the same second (0.3 us instead of ~1.5 us a body)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1.0
        self._prefix = ""

    def __call__(self, seconds: float) -> str:
        frac, whole = math.modf(seconds)
        us = round(frac * 1e6)  # what datetime does with a float timestamp
        if us >= 1_000_000:
            whole, us = whole + 1.0, us - 1_000_000
        elif us < 0:
            whole, us = whole - 1.0, us + 1_000_000
        if whole != self._second:
            w = dt.datetime.fromtimestamp(whole, dt.UTC)
            self._prefix = (
                f"{w.year:04d}-{w.month:02d}-{w.day:02d}T{w.hour:02d}:{w.minute:02d}:"
                f"{w.second:02d}."
            )
            self._second = whole
        return f"{self._prefix}{us // 1000:03d}Z"


_utc = _UtcStamps()


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: ``"..."`` with JSON escapes (the encoder's own string function, in C): the body is written
#: as a template instead of through ``JSONEncoder.encode``, which builds a new C encoder per
#: call (~5 us of the ~8 us a 16-key body cost); the output is byte-identical (tested)
_STR = json.encoder.encode_basestring


def _check_masked(masked_pan: str) -> None:
    digits = len(masked_pan) - masked_pan.count("*")  # anything but a mask counts as a digit
    if digits > 10:  # first 6 + last 4 at most
        raise ValueError("masked_pan: more than first 6 / last 4 digits (never a full PAN)")


def build_event(
    *,
    merchant_id: str,
    event_type: EventType,
    payment_id: str,
    status: PaymentStatus,
    amount: int,
    currency: int,
    response_code: str,
    masked_pan: str,
    created_at: float,
    order_id: str = "",
    order_reference: str = "",
    original_payment_id: str = "",
    operation: str = "",
    auth_code: str = "",
    metadata: Mapping[str, str] | None = None,
    event_id: str | None = None,
    metadata_json: str | None = None,
    compact: bool = False,
) -> MerchantEventRow:
    """One notification row, ready for ``Changes.merchant_events``.

    For GATEWAY (``switch/gateway``): a payment the gateway makes through
    ``core.authorize`` inside ``switch.merchant_notify.recorder.payment_order(...)`` gets its
    event from the recorder (same commit as the journal row); call this only for an order
    change the core does not journal (for example an order declined after too many tries),
    append the row to the ``Changes`` that records that change, and commit them together.
    ``created_at`` is the time of the change (epoch seconds, the core's clock). Raises
    ``ValueError`` on a PAN that is not masked or a negative amount. ``event_id``: random
    unless given (the recorder derives one from the payment's id); ``metadata_json``: the
    metadata already encoded compactly (the recorder's order row has it), else encoded here.
    ``compact``: store the body in the compact form (``COMPACT``), made into JSON only when
    it is sent (``json_body``) -- the recorder does, on the payment's path; read a stored
    body through ``json_body``.
    """
    if amount < 0:
        raise ValueError("amount: must not be negative")
    if not merchant_id:
        raise ValueError("merchant_id: required")
    _check_masked(masked_pan)
    eid = event_id or new_event_id()
    if metadata_json is None:
        metadata_json = _ENCODE(dict(metadata)) if metadata else "{}"
    fields = (eid, event_type.value, created_at, merchant_id, payment_id, original_payment_id,
              order_id, operation, status.value, int(amount), int(currency), response_code,
              auth_code, masked_pan, metadata_json, order_reference)  # fmt: skip
    body = _compact(fields) if compact else None
    return MerchantEventRow(
        eid,
        merchant_id,
        event_type.value,
        payment_id or order_id,
        _json(*fields) if body is None else body,
        created_at,
    )


_Fields = tuple[str, str, float, str, str, str, str, str, str, int, int, str, str, str, str, str]


def _json(
    eid: str,
    event_type: str,
    created_at: float,
    merchant_id: str,
    payment_id: str,
    original_payment_id: str,
    order_id: str,
    operation: str,
    status: str,
    amount: int,
    currency: int,
    response_code: str,
    auth_code: str,
    masked_pan: str,
    metadata_json: str,
    order_reference: str,
) -> str:
    """The body (see the module docstring), written as a string template: byte-identical to
    ``JSONEncoder(separators=(",", ":"), ensure_ascii=False)`` over the same dict (tested),
    without the new C encoder that ``encode`` builds on every call."""
    s = _STR
    return (
        f'{{"event_id":{s(eid)},"type":{s(event_type)},'
        f'"created_at":"{_utc(created_at)}","merchant_id":{s(merchant_id)},'
        f'"payment_id":{s(payment_id)},"original_payment_id":{s(original_payment_id)},'
        f'"order_id":{s(order_id)},"order_reference":{s(order_reference)},'
        f'"operation":{s(operation)},"status":{s(status)},"amount":{amount},'
        f'"currency":{currency},"response_code":{s(response_code)},'
        f'"auth_code":{s(auth_code)},"masked_pan":{s(masked_pan)},"metadata":{metadata_json}}}'
    )


# -- the compact stored form -------------------------------------------------------------------
#: A stored body starting with this is not JSON yet: the body's 16 values joined by ``SEP``
#: (created_at as ``repr`` of the float, so it reads back exactly), the order reference last.
#: ``json_body`` makes the JSON when the worker sends it. A JSON body starts with ``{``.
COMPACT = "c1\x1f"
SEP = "\x1f"
_HEAD_SEPS = 15  # separators before the order reference, the one field that may hold SEP


def _compact(fields: _Fields) -> str | None:
    """``fields`` in the compact form, or ``None`` if a value other than the last holds a
    separator (none the core makes does; JSON escapes it in the metadata): then the body is
    stored as JSON at once."""
    (eid, event_type, created_at, merchant_id, payment_id, original_payment_id, order_id,
     operation, status, amount, currency, response_code, auth_code, masked_pan,
     metadata_json, order_reference) = fields  # fmt: skip
    head = SEP.join(
        (eid, event_type, repr(float(created_at)), merchant_id, payment_id,
         original_payment_id, order_id, operation, status, str(amount), str(currency),
         response_code, auth_code, masked_pan, metadata_json)
    )  # fmt: skip
    if head.count(SEP) != _HEAD_SEPS - 1:
        return None
    return f"{COMPACT}{head}{SEP}{order_reference}"


_new_tuple = tuple.__new__  # a NamedTuple row without its Python-level __new__ (0.2 vs 0.7 us)


def payment_event_row(fields: _Fields) -> MerchantEventRow:
    """The recorder's ``build_event(..., compact=True)`` on the payment's path: ``fields``
    in ``_json``'s order, plain strings and ints (no enum members, no keyword binding),
    ``payment_id`` set. Refuses an unmasked PAN as ``build_event`` does."""
    _check_masked(fields[13])
    body = _compact(fields)
    return _new_tuple(
        MerchantEventRow,
        (fields[0], fields[3], fields[1], fields[4], _json(*fields) if body is None else body,
         fields[2]),
    )  # fmt: skip


def json_body(stored: str) -> str:
    """The exact JSON to POST for a stored ``merchant_events.body``: itself if it is JSON,
    else the compact form rendered (the same bytes ``build_event`` would have stored, every
    time: a retry sends the same body). ``ValueError`` if the compact form is damaged."""
    if not stored.startswith(COMPACT):
        return stored
    f = stored[len(COMPACT) :].split(SEP, _HEAD_SEPS)
    if len(f) != _HEAD_SEPS + 1:
        raise ValueError(f"compact body has {len(f)} fields, not {_HEAD_SEPS + 1}")
    try:
        created_at, amount, currency = float(f[2]), int(f[9]), int(f[10])
    except ValueError:
        raise ValueError("compact body: created_at, amount or currency is not a number") from None
    return _json(f[0], f[1], created_at, f[3], f[4], f[5], f[6], f[7], f[8], amount, currency,
                 f[11], f[12], f[13], f[14], f[15])  # fmt: skip


# -- what a journal row means for the merchant ---------------------------------------------------
_APPROVED_TYPE = {
    "purchase": EventType.PAID,
    "completion": EventType.PAID,
    "bill_payment": EventType.PAID,
    "preauth": EventType.AUTHORIZED,
    "void": EventType.REVERSED,
    "reversal": EventType.REVERSED,
    "refund": EventType.REFUNDED,
}
_DECLINE_NOTIFIED = frozenset({"purchase", "preauth", "bill_payment"})


def event_type_for(txn_type: str, approved: bool) -> EventType | None:
    """The event a journal row of ``txn_type`` raises, or ``None`` (not a merchant's concern:
    a declined refund changes nothing, a transfer is not a merchant payment)."""
    if approved:
        return _APPROVED_TYPE.get(txn_type)
    return EventType.DECLINED if txn_type in _DECLINE_NOTIFIED else None


def payment_status(
    txn_type: str,
    approved: bool,
    amount: int,
    *,
    captured: int = 0,
    refunded: int = 0,
    reversed_: int = 0,
    refund_total: int | None = None,
) -> PaymentStatus:
    """A payment's status from its journal row and what later operations moved.

    For a sale or authorization: declined; voided once its amount is given back; refunded /
    partially refunded; captured (a sale, or an authorization with a capture); else
    authorized. For a follow-up row (capture, void, refund) the status its own operation set;
    a refund is partial when ``refund_total`` (everything refunded so far) is below what was
    captured, given as ``captured``.
    """
    if not approved:
        return PaymentStatus.DECLINED
    if txn_type in ("void", "reversal"):
        return PaymentStatus.VOIDED
    if txn_type == "refund":
        if refund_total is not None and 0 < captured and refund_total < captured:
            return PaymentStatus.PARTIALLY_REFUNDED
        return PaymentStatus.REFUNDED
    if txn_type == "completion":
        return PaymentStatus.CAPTURED
    taken = amount if txn_type != "preauth" else captured
    if reversed_ >= amount > 0:
        return PaymentStatus.VOIDED
    if refunded > 0:
        return PaymentStatus.REFUNDED if refunded >= taken else PaymentStatus.PARTIALLY_REFUNDED
    if txn_type == "preauth":
        return PaymentStatus.CAPTURED if captured > 0 else PaymentStatus.AUTHORIZED
    return PaymentStatus.CAPTURED


def check_metadata(metadata: Mapping[str, str]) -> str | None:
    """Why ``metadata`` is not acceptable (a message naming the entry), or ``None``."""
    if len(metadata) > MAX_METADATA_ENTRIES:
        return f"metadata: at most {MAX_METADATA_ENTRIES} entries"
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY or not key.isprintable():
            shown = key[:MAX_METADATA_KEY]
            return f"metadata: key {shown!r} must be 1..{MAX_METADATA_KEY} printable characters"
        if len(value) > MAX_METADATA_VALUE or not value.isprintable():
            return (
                f"metadata[{key!r}]: value must be at most {MAX_METADATA_VALUE} printable "
                "characters"
            )
    return None
