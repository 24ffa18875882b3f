"""Wire <-> core mapping for the merchant API: validation of protobuf requests into
``AuthRequest`` and of ``AuthResult``/``Payment`` back into protobuf.

Only mapping lives here -- no I/O -- so every field rule is in one place and a bad request is
refused with a message naming the field before the core sees it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from switch.core.domain import Merchant
from switch.core.model import AuthRequest, AuthResult, Channel, OriginalRef, TxnType
from switch.core.service import Payment
from switch.digits import ASCII_DIGITS
from switch.gen.switch.v1 import types_pb2 as pb
from switch.merchant_notify.events import PaymentStatus, check_metadata, payment_status
from switch.merchant_notify.ids import is_public_id
from switch.merchant_notify.orders import OrderFacts

MAX_AMOUNT = 10**12  # minor units; the core refuses anything larger as malformed
MAX_KEY_LEN = 64
MAX_ORDER_REFERENCE = 64
# ISO 4217 numeric codes the API accepts; the switch itself settles only in DZD (12), so a
# known foreign currency is a decline from the core, an unknown code a malformed request.
KNOWN_CURRENCIES = frozenset({12, 36, 124, 156, 392, 434, 504, 682, 756, 784, 788, 826, 840, 978})
_DIGITS = ASCII_DIGITS  # not \d: it matches Arabic-Indic and other digits too

TYPE_OF: dict[str, int] = {
    TxnType.PURCHASE.value: pb.PAYMENT_TYPE_SALE,
    TxnType.PREAUTH.value: pb.PAYMENT_TYPE_AUTHORIZATION,
    TxnType.COMPLETION.value: pb.PAYMENT_TYPE_CAPTURE,
    TxnType.VOID.value: pb.PAYMENT_TYPE_VOID,
    TxnType.REFUND.value: pb.PAYMENT_TYPE_REFUND,
    TxnType.REVERSAL.value: pb.PAYMENT_TYPE_REVERSAL,
    TxnType.BILL_PAYMENT.value: pb.PAYMENT_TYPE_BILL_PAYMENT,
    TxnType.TRANSFER.value: pb.PAYMENT_TYPE_TRANSFER,
}


class ApiError(Exception):
    """A request refused with a gRPC status; the message names the field."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def credentials(
    context: grpc.aio.ServicerContext, id_header: str, secret_header: str
) -> tuple[str, str]:
    """The caller's id and secret from the call's metadata (merchant or operator headers);
    UNAUTHENTICATED naming the header that is missing. Checking them is the caller's job."""
    md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    caller_id = md.get(id_header, "")
    secret = md.get(secret_header, "")
    if not caller_id:
        raise ApiError(grpc.StatusCode.UNAUTHENTICATED, f"{id_header}: missing")
    if not secret:
        raise ApiError(grpc.StatusCode.UNAUTHENTICATED, f"{secret_header}: missing")
    return caller_id, secret


def luhn_ok(pan: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def idempotency_key(key: str) -> str:
    if not key:
        raise invalid("idempotency_key: required for this call")
    if len(key) > MAX_KEY_LEN or not key.isprintable():
        raise invalid(f"idempotency_key: at most {MAX_KEY_LEN} printable characters")
    return key


def money(m: pb.Money, has: bool, field: str = "amount", *, allow_zero: bool = False) -> int:
    if not has:
        raise invalid(f"{field}: required")
    if m.amount_minor < 0:
        raise invalid(f"{field}.amount_minor: must not be negative")
    if m.amount_minor == 0 and not allow_zero:
        raise invalid(f"{field}.amount_minor: must be positive")
    if m.amount_minor > MAX_AMOUNT:
        raise invalid(f"{field}.amount_minor: at most {MAX_AMOUNT}")
    if m.currency not in KNOWN_CURRENCIES:
        raise invalid(f"{field}.currency: {m.currency} is not a known ISO 4217 numeric code")
    return int(m.amount_minor)


def pan(value: str, field: str = "card.pan") -> str:
    if not value:
        raise invalid(f"{field}: required")
    if not (12 <= len(value) <= 19 and _DIGITS.fullmatch(value)):
        raise invalid(f"{field}: must be 12 to 19 digits")
    if not luhn_ok(value):
        raise invalid(f"{field}: not a valid card number (Luhn check)")
    return value


def card(c: pb.Card, has: bool) -> tuple[str, str, str, str | None]:
    """(pan, expiry, cvv2, otp) of a card-not-present payment."""
    if not has:
        raise invalid("card: required")
    number = pan(c.pan)
    if not (len(c.expiry) == 4 and _DIGITS.fullmatch(c.expiry) and 1 <= int(c.expiry[2:]) <= 12):
        raise invalid("card.expiry: must be YYMM")
    if not (len(c.cvv2) == 3 and _DIGITS.fullmatch(c.cvv2)):
        raise invalid("card.cvv2: must be 3 digits")
    if c.otp and not (len(c.otp) == 6 and _DIGITS.fullmatch(c.otp)):
        raise invalid("card.otp: must be 6 digits")
    return number, c.expiry, c.cvv2, c.otp or None


def payment_id(value: str) -> str:
    """A payment id as the API hands them out: ``pay_`` + 32 hex characters, or the
    12-digit journal id of a payment made before ids were opaque."""
    if not value:
        raise invalid("payment_id: required")
    if is_public_id(value):
        return value
    if len(value) > 32 or not _DIGITS.fullmatch(value):
        raise ApiError(grpc.StatusCode.NOT_FOUND, f"payment_id: no payment {value[:32]!r}")
    return value


def order_reference(value: str) -> str:
    if len(value) > MAX_ORDER_REFERENCE or not value.isprintable():
        raise invalid(f"order_reference: at most {MAX_ORDER_REFERENCE} printable characters")
    return value


def metadata(entries: Mapping[str, str]) -> dict[str, str]:
    """The merchant's metadata, or INVALID_ARGUMENT naming the entry at fault."""
    problem = check_metadata(entries)
    if problem is not None:
        raise invalid(problem)
    return dict(entries)


STATUS_OF: dict[PaymentStatus, int] = {
    PaymentStatus.AUTHORIZED: pb.PAYMENT_STATUS_AUTHORIZED,
    PaymentStatus.CAPTURED: pb.PAYMENT_STATUS_CAPTURED,
    PaymentStatus.VOIDED: pb.PAYMENT_STATUS_VOIDED,
    PaymentStatus.REFUNDED: pb.PAYMENT_STATUS_REFUNDED,
    PaymentStatus.PARTIALLY_REFUNDED: pb.PAYMENT_STATUS_PARTIALLY_REFUNDED,
    PaymentStatus.DECLINED: pb.PAYMENT_STATUS_DECLINED,
}


def stan_of(key: str) -> str:
    """A STAN for the journal, derived from the idempotency key (the key is what dedups)."""
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big")
    return f"{h % 1_000_000:06d}"


def transmission_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%m%d%H%M%S")


def base_request(
    merchant: Merchant,
    acquirer_id: str,
    txn_type: TxnType,
    key: str,
    amount: int,
    currency: int,
    *,
    pan_: str = "",
    expiry: str | None = None,
    cvv2: str | None = None,
    otp: str | None = None,
    original: str | None = None,
    biller_id: str | None = None,
    bill_reference: str | None = None,
    destination_account: str | None = None,
) -> AuthRequest:
    return AuthRequest(
        txn_type,
        Channel.ECOMMERCE,
        pan_,
        amount,
        currency,
        acquirer_id,
        merchant.terminal_id,
        stan_of(key),
        transmission_now(),
        merchant_id=merchant.merchant_id,
        mcc=merchant.mcc,
        card_acceptor=f"{merchant.name} / {merchant.city}",
        expiry=expiry,
        cvv2=cvv2,
        otp=otp,
        original=None if original is None else OriginalRef(transaction_id=original),
        biller_id=biller_id,
        bill_reference=bill_reference,
        destination_account=destination_account,
        idempotency_key=key,
    )


def result_pb(r: AuthResult, currency: int) -> pb.PaymentResult:
    approved = r.approved
    return pb.PaymentResult(
        payment_id=r.transaction_id or "",
        approved=approved,
        response_code=r.response_code.value,
        decline_reason="" if approved else r.message,
        auth_code=r.auth_code or "",
        approved_amount=pb.Money(
            amount_minor=(r.approved_amount or 0) if approved else 0,
            currency=r.currency or currency,
        ),
        replayed=r.replayed,
    )


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def payment_pb(p: Payment, orders: Mapping[str, OrderFacts] | None = None) -> pb.Payment:
    """``p`` as the merchant sees it; ``orders`` (by txn id) gives its public id, order
    reference and metadata, and the public id of the payment it refers to."""
    orders = orders or {}
    own = orders.get(p.transaction_id)
    original = p.original_transaction_id or ""
    status = payment_status(
        p.txn_type,
        p.response_code == "00",
        p.amount,
        captured=p.captured,
        refunded=p.refunded,
        reversed_=p.reversed,
    )
    return pb.Payment(
        payment_id=own.payment_id if own is not None else p.transaction_id,
        type=TYPE_OF.get(p.txn_type, pb.PAYMENT_TYPE_OTHER),  # type: ignore[arg-type]
        response_code=p.response_code,
        message=p.message,
        amount=pb.Money(amount_minor=p.amount, currency=p.currency),
        masked_pan=p.masked_pan,
        created_at=timestamp(p.created_at),
        original_payment_id=orders[original].payment_id if original in orders else original,
        auth_code=p.auth_code or "",
        captured_minor=p.captured,
        refunded_minor=p.refunded,
        reversed_minor=p.reversed,
        order_reference=own.order_reference if own is not None else "",
        status=STATUS_OF[status],  # type: ignore[arg-type]
        metadata=own.metadata if own is not None else {},
    )
