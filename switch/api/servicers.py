"""The ``switch.v1`` servicers: authenticate the merchant, validate, call ``SwitchCore``, map.

The wire layer never touches the ledger: money moves only through ``core.authorize``, which
also owns idempotency (same merchant + key + request -> the first answer, no second posting;
same key + different request -> response code 94, surfaced here as ALREADY_EXISTS).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

import grpc

from switch.api import mapping as m
from switch.api.mapping import ApiError, invalid
from switch.api.verification import VerificationStarts
from switch.core.domain import Merchant
from switch.core.merchant_queries import lookup_bill, payments_page
from switch.core.model import AuthRequest, AuthResult, ResponseCode, TxnType
from switch.core.otp_rate import VerificationRateLimited
from switch.core.refusals import DESTINATION, is_merchant_refusal
from switch.core.service import CoreError, Payment, SwitchCore
from switch.digits import is_ascii_digits
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import merchant_pb2_grpc as mgrpc
from switch.gen.switch.v1 import types_pb2 as pb
from switch.merchant_notify import orders
from switch.merchant_notify.events import payment_status
from switch.merchant_notify.ids import is_public_id
from switch.merchant_notify.recorder import PaymentOrder, ensure_recorder, payment_order
from switch.observe.trace import CURRENT_CALL
from switch.store.api import StoreError

MERCHANT_ID_HEADER = "x-merchant-id"
API_KEY_HEADER = "x-api-key"
DEFAULT_PAGE = 50
MAX_ORDER_ROWS = 1000  # operations read for one order reference (ListPayments)
MAX_PAGE = 500

T = TypeVar("T")
Ctx: TypeAlias = grpc.aio.ServicerContext


class Api:
    """What every servicer shares: the core, merchant authentication and error mapping."""

    def __init__(self, core: SwitchCore) -> None:
        self.core = core
        self.on_halt: Callable[[], None] | None = None  # the server flips health checks
        # StartVerification sends an SMS outside the authorization journal: its idempotency
        # is kept beside it (``switch.api.verification``), durable with the code itself
        self.verifications = VerificationStarts(core)
        # every payment made here gets its order row (public id, reference, metadata), and
        # its merchant's notification, in the payment's own commit (switch.merchant_notify)
        self.recorder = ensure_recorder(core)

    def merchant(self, context: Ctx) -> Merchant:
        merchant_id, api_key = m.credentials(context, MERCHANT_ID_HEADER, API_KEY_HEADER)
        merchant = self.core.authenticate_merchant(merchant_id, api_key)
        if merchant is None:  # same answer for an unknown merchant and a wrong key
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED, f"{API_KEY_HEADER}: invalid merchant credentials"
            )
        return merchant

    def acquirer_id(self, merchant: Merchant) -> str:
        term = self.core.terminal(merchant.terminal_id)
        if term is None:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION, "merchant: has no terminal configured"
            )
        return term.acquirer_id

    async def run(self, context: Ctx, body: Callable[[], Awaitable[T]]) -> T:
        try:
            return await body()
        except ApiError as e:
            await context.abort(e.code, e.message)
        raise AssertionError("unreachable")  # context.abort always raises

    async def authorize(
        self, req: AuthRequest, order: PaymentOrder | None = None
    ) -> pb.PaymentResult:
        """``core.authorize`` with ``order`` declared (``switch.merchant_notify.recorder``),
        answered with the payment's public id, order reference, metadata and status."""
        if self.core.halted is not None:
            if self.on_halt is not None:
                self.on_halt()
            raise ApiError(grpc.StatusCode.UNAVAILABLE, "switch: approvals are halted")
        if order is None:
            order = PaymentOrder(req.merchant_id or "")
        with payment_order(order):
            r = await self.core.authorize(req)
        self._quote(r, order)  # before check: a refused call carries its id as well
        self.check(req, r)
        out = m.result_pb(r, req.currency)
        self._with_order(out, req, r, order)
        return out

    def _quote(self, r: AuthResult, order: PaymentOrder) -> None:
        """``x-transaction-id`` (switch.api.tracing) as the public id of the call's journal
        row, not the journal's sequence: the merchant quotes it, the operator maps it back
        (``python -m switch.merchant_notify payment``)."""
        call = CURRENT_CALL.get()
        txn_id = r.transaction_id
        if call is None or call.on_answer is None or not txn_id:
            return
        if order.txn_id == txn_id and order.payment_id is not None:
            call.on_answer(order.payment_id)
            return
        facts = orders.by_txn(self.core.store, [txn_id]).get(txn_id)  # a replay
        call.on_answer(facts.payment_id if facts is not None else txn_id)

    def _with_order(
        self, out: pb.PaymentResult, req: AuthRequest, r: AuthResult, order: PaymentOrder
    ) -> None:
        txn_id = r.transaction_id
        if not txn_id:
            return  # refused before it was journaled: no payment
        if order.txn_id == txn_id and order.payment_id is not None:
            out.payment_id = order.payment_id
            out.order_reference = order.order_reference
            out.metadata.update(order.metadata)
        else:  # a replay: the order facts the first request stored
            facts = orders.by_txn(self.core.store, [txn_id]).get(txn_id)
            if facts is not None:
                out.payment_id = facts.payment_id
                out.order_reference = facts.order_reference
                out.metadata.update(facts.metadata)
        amount = out.approved_amount.amount_minor if r.approved else req.amount
        refund_total = order.refunded + amount if req.txn_type is TxnType.REFUND else None
        status = payment_status(
            req.txn_type.value, r.approved, amount, captured=order.taken, refund_total=refund_total
        )
        out.status = m.STATUS_OF[status]  # type: ignore[assignment]

    def resolve(self, merchant: Merchant, payment_id: str) -> tuple[str, orders.OrderFacts | None]:
        """(journal txn id, order facts) of one of the merchant's payment ids; NOT_FOUND for
        an unknown id or another merchant's (indistinguishable on purpose)."""
        if is_public_id(payment_id):
            facts = orders.resolve(self.core.store, merchant.merchant_id, payment_id)
            if facts is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"payment_id: no payment {payment_id}")
            return facts.txn_id, facts
        return payment_id, orders.by_txn(self.core.store, [payment_id]).get(payment_id)

    def payments_pb(self, payments: list[Payment]) -> list[pb.Payment]:
        ids = [p.transaction_id for p in payments]
        ids += [p.original_transaction_id for p in payments if p.original_transaction_id]
        known = orders.by_txn(self.core.store, ids)
        return [m.payment_pb(p, known) for p in payments]

    @staticmethod
    def check(req: AuthRequest, r: AuthResult) -> None:
        """Results that are errors rather than declines become gRPC statuses.

        Which declines are refusals is the core's rule (``switch.core.refusals``): it journals
        them as refused, so no payment the caller never got an id for is listed."""
        code = r.response_code
        if code is ResponseCode.DUPLICATE_TRANSMISSION:
            raise ApiError(
                grpc.StatusCode.ALREADY_EXISTS,
                "idempotency_key: already used for a different request",
            )
        if code is ResponseCode.SYSTEM_MALFUNCTION:
            raise ApiError(grpc.StatusCode.UNAVAILABLE, f"switch: {r.message}; retry later")
        if is_merchant_refusal(req, r):
            unknown = r.message.startswith(f"{DESTINATION} no such")
            status = grpc.StatusCode.NOT_FOUND if unknown else grpc.StatusCode.FAILED_PRECONDITION
            raise ApiError(status, r.message)


class PaymentsServicer(mgrpc.PaymentsServicer):
    def __init__(self, api: Api) -> None:
        self.api = api

    async def _card_payment(
        self, txn_type: TxnType, request: mpb.CardPaymentRequest, context: Ctx
    ) -> pb.PaymentResult:
        api = self.api
        merchant = api.merchant(context)
        key = m.idempotency_key(request.idempotency_key)
        amount = m.money(request.amount, request.HasField("amount"))
        pan, expiry, cvv2, otp = m.card(request.card, request.HasField("card"))
        order = PaymentOrder(
            merchant.merchant_id,
            order_reference=m.order_reference(request.order_reference),
            metadata=m.metadata(request.metadata),
        )
        req = m.base_request(
            merchant, api.acquirer_id(merchant), txn_type, key, amount, request.amount.currency,
            pan_=pan, expiry=expiry, cvv2=cvv2, otp=otp,
        )  # fmt: skip
        return await api.authorize(req, order)

    async def Authorize(self, request: mpb.CardPaymentRequest, context: Ctx) -> pb.PaymentResult:
        return await self.api.run(
            context, lambda: self._card_payment(TxnType.PREAUTH, request, context)
        )

    async def Sale(self, request: mpb.CardPaymentRequest, context: Ctx) -> pb.PaymentResult:
        return await self.api.run(
            context, lambda: self._card_payment(TxnType.PURCHASE, request, context)
        )

    async def _followup(
        self,
        txn_type: TxnType,
        context: Ctx,
        key_: str,
        payment_id: str,
        amount_pb: pb.Money | None,
    ) -> pb.PaymentResult:
        api = self.api
        merchant = api.merchant(context)
        key = m.idempotency_key(key_)
        pid = m.payment_id(payment_id)
        amount = m.money(amount_pb, True) if amount_pb is not None else None
        txn_id, facts = api.resolve(merchant, pid)
        original = await api.core.payment(merchant.merchant_id, txn_id)
        if original is None:  # unknown, or another merchant's: indistinguishable on purpose
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"payment_id: no payment {pid}")
        if amount_pb is not None and amount_pb.currency != original.currency:
            raise invalid(f"amount.currency: the payment is in {original.currency}")
        if amount is None:
            if txn_type is TxnType.COMPLETION:
                # "The whole amount", from facts a capture does not change, so a retry with
                # the same key is the same request for the core.
                amount = original.amount - original.reversed
                if amount <= 0:
                    raise ApiError(
                        grpc.StatusCode.FAILED_PRECONDITION, "payment_id: nothing to capture"
                    )
            else:
                # 0: a void releases whatever remains, a refund gives back everything still
                # refundable -- decided by the core against the live state (an earlier
                # partial refund included), and the same request again on a retry.
                amount = 0
        req = m.base_request(
            merchant, api.acquirer_id(merchant), txn_type, key, amount, original.currency,
            original=txn_id,
        )  # fmt: skip
        order = PaymentOrder(  # the original's order facts carry over to the follow-up
            merchant.merchant_id,
            order_reference=facts.order_reference if facts is not None else "",
            metadata=dict(facts.metadata) if facts is not None else {},
            original_payment_id=pid,
            taken=original.captured if original.txn_type == "preauth" else original.amount,
            refunded=original.refunded,
        )
        return await api.authorize(req, order)

    async def Capture(self, request: mpb.CaptureRequest, context: Ctx) -> pb.PaymentResult:
        amount = request.amount if request.HasField("amount") else None
        return await self.api.run(
            context,
            lambda: self._followup(
                TxnType.COMPLETION, context, request.idempotency_key, request.payment_id, amount
            ),
        )

    async def Void(self, request: mpb.VoidRequest, context: Ctx) -> pb.PaymentResult:
        return await self.api.run(
            context,
            lambda: self._followup(
                TxnType.VOID, context, request.idempotency_key, request.payment_id, None
            ),
        )

    async def Refund(self, request: mpb.RefundRequest, context: Ctx) -> pb.PaymentResult:
        amount = request.amount if request.HasField("amount") else None
        return await self.api.run(
            context,
            lambda: self._followup(
                TxnType.REFUND, context, request.idempotency_key, request.payment_id, amount
            ),
        )

    async def GetPayment(self, request: mpb.GetPaymentRequest, context: Ctx) -> pb.Payment:
        async def body() -> pb.Payment:
            merchant = self.api.merchant(context)
            pid = m.payment_id(request.payment_id)
            txn_id, _ = self.api.resolve(merchant, pid)
            p = await self.api.core.payment(merchant.merchant_id, txn_id)
            if p is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"payment_id: no payment {pid}")
            return self.api.payments_pb([p])[0]

        return await self.api.run(context, body)

    async def _of_reference(
        self,
        merchant: Merchant,
        reference: str,
        start: float | None,
        end: float | None,
        before: str,
    ) -> list[Payment]:
        """The merchant's payments of one order reference, newest first, within the time
        range and before ``before`` (an order has a handful; at most MAX_ORDER_ROWS read)."""
        core = self.api.core
        out: list[Payment] = []
        for txn_id in orders.txns_of_reference(
            core.store, merchant.merchant_id, reference, MAX_ORDER_ROWS
        ):
            if before and txn_id >= before:
                continue
            p = await core.payment(merchant.merchant_id, txn_id)  # None: a refused call
            if p is None or (start is not None and p.created_at < start):
                continue
            if end is not None and p.created_at >= end:
                continue
            out.append(p)
        return out

    async def ListPayments(
        self, request: mpb.ListPaymentsRequest, context: Ctx
    ) -> mpb.ListPaymentsResponse:
        async def body() -> mpb.ListPaymentsResponse:
            merchant = self.api.merchant(context)
            if request.merchant_id and request.merchant_id != merchant.merchant_id:
                raise ApiError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "merchant_id: you may list only your own payments",
                )
            size = request.page_size or DEFAULT_PAGE
            if not 1 <= size <= MAX_PAGE:
                raise invalid(f"page_size: must be 1..{MAX_PAGE}")
            token = request.page_token  # the last payment id of the previous page
            if token and is_public_id(token):
                facts = orders.resolve(self.api.core.store, merchant.merchant_id, token)
                if facts is None:
                    raise invalid("page_token: not a token from a previous response")
                token = facts.txn_id
            elif token and not (len(token) <= 32 and is_ascii_digits(token)):
                raise invalid("page_token: not a token from a previous response")
            start = end = None
            if request.HasField("start_time"):
                start = request.start_time.ToNanoseconds() / 1e9
            if request.HasField("end_time"):
                end = request.end_time.ToNanoseconds() / 1e9
            if start is not None and end is not None and end < start:
                raise invalid("end_time: before start_time")
            if request.order_reference:
                reference = m.order_reference(request.order_reference)
                rows = await self._of_reference(merchant, reference, start, end, token)
                rows = rows[: size + 1]
            else:
                rows = await payments_page(
                    self.api.core, merchant.merchant_id, start=start, end=end,
                    before_txn_id=token or None, limit=size + 1,
                )  # fmt: skip
            more = len(rows) > size
            rows = rows[:size]
            payments = self.api.payments_pb(rows)
            return mpb.ListPaymentsResponse(  # a payment id: no journal sequence in tokens
                payments=payments,
                next_page_token=payments[-1].payment_id if more else "",
            )

        return await self.api.run(context, body)


class BillsServicer(mgrpc.BillsServicer):
    def __init__(self, api: Api) -> None:
        self.api = api

    @staticmethod
    def _ids(biller_id: str, reference: str) -> None:
        if not biller_id:
            raise invalid("biller_id: required")
        if not reference:
            raise invalid("reference: required")
        if len(biller_id) > 32 or len(reference) > 64:
            raise invalid("reference: too long")

    def _paid_by(self, txn_id: str | None) -> str:
        if not txn_id:
            return ""
        facts = orders.by_txn(self.api.core.store, [txn_id]).get(txn_id)
        return facts.payment_id if facts is not None else txn_id

    async def LookupBill(self, request: mpb.LookupBillRequest, context: Ctx) -> mpb.Bill:
        async def body() -> mpb.Bill:
            self.api.merchant(context)
            self._ids(request.biller_id, request.reference)
            bill = await lookup_bill(self.api.core, request.biller_id, request.reference)
            if bill is None:
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND,
                    f"reference: no bill {request.reference!r} for biller {request.biller_id!r}",
                )
            return mpb.Bill(
                biller_id=bill.biller_id,
                biller_name=bill.biller_name,
                category=bill.category,
                reference=bill.reference,
                amount_due=pb.Money(amount_minor=bill.amount_due, currency=bill.currency),
                paid=bill.paid_txn is not None,
                paid_by_payment_id=self._paid_by(bill.paid_txn),
            )

        return await self.api.run(context, body)

    async def PayBill(self, request: mpb.PayBillRequest, context: Ctx) -> pb.PaymentResult:
        async def body() -> pb.PaymentResult:
            api = self.api
            merchant = api.merchant(context)
            key = m.idempotency_key(request.idempotency_key)
            self._ids(request.biller_id, request.reference)
            amount = m.money(request.amount, request.HasField("amount"))
            pan, expiry, cvv2, otp = m.card(request.card, request.HasField("card"))
            if await lookup_bill(api.core, request.biller_id, request.reference) is None:
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND,
                    f"reference: no bill {request.reference!r} for biller {request.biller_id!r}",
                )
            req = m.base_request(
                merchant, api.acquirer_id(merchant), TxnType.BILL_PAYMENT, key, amount,
                request.amount.currency, pan_=pan, expiry=expiry, cvv2=cvv2, otp=otp,
                biller_id=request.biller_id, bill_reference=request.reference,
            )  # fmt: skip
            return await api.authorize(req)  # already paid, wrong amount: FAILED_PRECONDITION

        return await self.api.run(context, body)


class TransfersServicer(mgrpc.TransfersServicer):
    def __init__(self, api: Api) -> None:
        self.api = api

    async def Transfer(self, request: mpb.TransferRequest, context: Ctx) -> pb.PaymentResult:
        async def body() -> pb.PaymentResult:
            api = self.api
            merchant = api.merchant(context)
            key = m.idempotency_key(request.idempotency_key)
            pan, expiry, cvv2, otp = m.card(request.card, request.HasField("card"))
            dest = request.destination_account
            if not dest:
                raise invalid("destination_account: required")
            if len(dest) > 34 or not dest.isprintable():
                raise invalid("destination_account: not a CCP account number")
            amount = m.money(request.amount, request.HasField("amount"))
            req = m.base_request(
                merchant, api.acquirer_id(merchant), TxnType.TRANSFER, key, amount,
                request.amount.currency, pan_=pan, expiry=expiry, cvv2=cvv2, otp=otp,
                destination_account=dest,
            )  # fmt: skip
            return await api.authorize(req)  # unknown destination: NOT_FOUND (Api.check)

        return await self.api.run(context, body)


class VerificationServicer(mgrpc.VerificationServicer):
    def __init__(self, api: Api) -> None:
        self.api = api

    async def StartVerification(
        self, request: mpb.StartVerificationRequest, context: Ctx
    ) -> mpb.StartVerificationResponse:
        async def body() -> mpb.StartVerificationResponse:
            api = self.api
            merchant = api.merchant(context)
            key = m.idempotency_key(request.idempotency_key)
            pan = m.pan(request.pan, "pan")
            amount = m.money(request.amount, request.HasField("amount"))
            if api.core.halted is not None:
                raise ApiError(grpc.StatusCode.UNAVAILABLE, "switch: approvals are halted")
            try:
                challenge = await api.verifications.start(
                    merchant, key, pan, amount, request.amount.currency
                )
            except VerificationRateLimited as e:
                raise ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)) from None
            except CoreError as e:
                text = str(e)
                code = (
                    grpc.StatusCode.NOT_FOUND
                    if "unknown card" in text
                    else grpc.StatusCode.FAILED_PRECONDITION
                )
                raise ApiError(code, text) from None
            except StoreError:
                raise ApiError(
                    grpc.StatusCode.UNAVAILABLE, "switch: store unavailable; retry later"
                ) from None
            return mpb.StartVerificationResponse(
                masked_phone=challenge.masked_phone,
                expires_at=m.timestamp(challenge.expires_at),
            )

        return await self.api.run(context, body)
