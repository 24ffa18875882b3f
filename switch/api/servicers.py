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
from switch.core.service import CoreError, SwitchCore
from switch.digits import is_ascii_digits
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import merchant_pb2_grpc as mgrpc
from switch.gen.switch.v1 import types_pb2 as pb
from switch.store.api import StoreError

MERCHANT_ID_HEADER = "x-merchant-id"
API_KEY_HEADER = "x-api-key"
DEFAULT_PAGE = 50
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

    async def authorize(self, req: AuthRequest) -> pb.PaymentResult:
        if self.core.halted is not None:
            if self.on_halt is not None:
                self.on_halt()
            raise ApiError(grpc.StatusCode.UNAVAILABLE, "switch: approvals are halted")
        r = await self.core.authorize(req)
        self.check(req, r)
        return m.result_pb(r, req.currency)

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
        if len(request.order_reference) > 64:
            raise invalid("order_reference: at most 64 characters")
        req = m.base_request(
            merchant, api.acquirer_id(merchant), txn_type, key, amount, request.amount.currency,
            pan_=pan, expiry=expiry, cvv2=cvv2, otp=otp,
        )  # fmt: skip
        return await api.authorize(req)

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
        original = await api.core.payment(merchant.merchant_id, pid)
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
            original=pid,
        )  # fmt: skip
        return await api.authorize(req)

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
            p = await self.api.core.payment(merchant.merchant_id, pid)
            if p is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"payment_id: no payment {pid}")
            return m.payment_pb(p)

        return await self.api.run(context, body)

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
            token = request.page_token
            if token and not (len(token) <= 32 and is_ascii_digits(token)):
                raise invalid("page_token: not a token from a previous response")
            start = end = None
            if request.HasField("start_time"):
                start = request.start_time.ToNanoseconds() / 1e9
            if request.HasField("end_time"):
                end = request.end_time.ToNanoseconds() / 1e9
            if start is not None and end is not None and end < start:
                raise invalid("end_time: before start_time")
            rows = await payments_page(
                self.api.core, merchant.merchant_id, start=start, end=end,
                before_txn_id=token or None, limit=size + 1,
            )  # fmt: skip
            more = len(rows) > size
            rows = rows[:size]
            return mpb.ListPaymentsResponse(
                payments=[m.payment_pb(p) for p in rows],
                next_page_token=rows[-1].transaction_id if more else "",
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
                paid_by_payment_id=bill.paid_txn or "",
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
