"""A small typed async client of the merchant API -- the code a merchant developer copies.

    async with MerchantClient("127.0.0.1:50051", "M-ECOM-001", api_key) as client:
        result = await client.sale(250_000, pan, expiry, cvv2, idempotency_key="order-42")
        if not result.approved:
            print(result.response_code, result.decline_reason)

Declines come back as results; errors raise ``grpc.aio.AioRpcError`` (``.code()``,
``.details()`` naming the field). Every money-moving call needs an idempotency key: retry
with the same key after a timeout and you get the first answer, never a second posting.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.message import Message

from switch.core.model import DZD
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import merchant_pb2_grpc as mgrpc
from switch.gen.switch.v1 import types_pb2 as pb

DEFAULT_TARGET = "127.0.0.1:50051"
M = TypeVar("M", bound=Message)


def new_key() -> str:
    """A fresh idempotency key (store it with the order before sending, to retry safely)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class ClientTls:
    """PEM files: the CA that signed the server, and our own certificate when it asks for one."""

    ca: Path
    cert_chain: Path | None = None
    private_key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=None if self.private_key is None else self.private_key.read_bytes(),
            certificate_chain=None if self.cert_chain is None else self.cert_chain.read_bytes(),
        )


class CredentialedClient:
    """What the merchant and operator clients share: one channel (plain, or TLS with
    ``tls``), the caller's credentials sent as metadata with every call, one deadline, and
    answers checked to be of the expected message type."""

    def __init__(
        self,
        target: str,
        metadata: tuple[tuple[str, str], ...],
        *,
        timeout: float = 10.0,
        channel: grpc.aio.Channel | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        if channel is None:
            channel = (
                grpc.aio.insecure_channel(target)
                if tls is None
                else grpc.aio.secure_channel(target, tls.credentials())
            )
        self.channel = channel
        self._metadata = metadata
        self.timeout = timeout

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, method: Any, request: Message, response_type: type[M]) -> M:
        """One unary call with the caller's credentials (and a typed answer)."""
        response = await method(request, metadata=self._metadata, timeout=self.timeout)
        if not isinstance(response, response_type):
            raise TypeError(f"expected {response_type.__name__}, got {type(response).__name__}")
        return response


class MerchantClient(CredentialedClient):
    def __init__(
        self,
        target: str,
        merchant_id: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        channel: grpc.aio.Channel | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        super().__init__(
            target,
            (("x-merchant-id", merchant_id), ("x-api-key", api_key)),
            timeout=timeout,
            channel=channel,
            tls=tls,
        )
        self.payments = mgrpc.PaymentsStub(self.channel)
        self.bills = mgrpc.BillsStub(self.channel)
        self.transfers = mgrpc.TransfersStub(self.channel)
        self.verification = mgrpc.VerificationStub(self.channel)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    @staticmethod
    def money(amount_minor: int, currency: int = DZD) -> pb.Money:
        return pb.Money(amount_minor=amount_minor, currency=currency)

    @staticmethod
    def card(pan: str, expiry: str, cvv2: str, otp: str = "") -> pb.Card:
        return pb.Card(pan=pan, expiry=expiry, cvv2=cvv2, otp=otp)

    async def sale(
        self,
        amount_minor: int,
        pan: str,
        expiry: str,
        cvv2: str,
        *,
        otp: str = "",
        currency: int = DZD,
        idempotency_key: str | None = None,
    ) -> pb.PaymentResult:
        """Authorized and captured at once."""
        req = self._card_payment(amount_minor, pan, expiry, cvv2, otp, currency, idempotency_key)
        return await self._call(self.payments.Sale, req, pb.PaymentResult)

    async def authorize(
        self,
        amount_minor: int,
        pan: str,
        expiry: str,
        cvv2: str,
        *,
        otp: str = "",
        currency: int = DZD,
        idempotency_key: str | None = None,
    ) -> pb.PaymentResult:
        """A pre-authorization: the amount is held until captured, voided or expired."""
        req = self._card_payment(amount_minor, pan, expiry, cvv2, otp, currency, idempotency_key)
        return await self._call(self.payments.Authorize, req, pb.PaymentResult)

    def _card_payment(
        self,
        amount_minor: int,
        pan: str,
        expiry: str,
        cvv2: str,
        otp: str,
        currency: int,
        idempotency_key: str | None,
    ) -> mpb.CardPaymentRequest:
        return mpb.CardPaymentRequest(
            idempotency_key=idempotency_key or new_key(),
            amount=self.money(amount_minor, currency),
            card=self.card(pan, expiry, cvv2, otp),
        )

    async def capture(
        self,
        payment_id: str,
        amount_minor: int | None = None,
        *,
        currency: int = DZD,
        idempotency_key: str | None = None,
    ) -> pb.PaymentResult:
        req = mpb.CaptureRequest(
            idempotency_key=idempotency_key or new_key(), payment_id=payment_id
        )
        if amount_minor is not None:
            req.amount.CopyFrom(self.money(amount_minor, currency))
        return await self._call(self.payments.Capture, req, pb.PaymentResult)

    async def void(
        self, payment_id: str, *, idempotency_key: str | None = None
    ) -> pb.PaymentResult:
        req = mpb.VoidRequest(idempotency_key=idempotency_key or new_key(), payment_id=payment_id)
        return await self._call(self.payments.Void, req, pb.PaymentResult)

    async def refund(
        self,
        payment_id: str,
        amount_minor: int | None = None,
        *,
        currency: int = DZD,
        idempotency_key: str | None = None,
    ) -> pb.PaymentResult:
        req = mpb.RefundRequest(idempotency_key=idempotency_key or new_key(), payment_id=payment_id)
        if amount_minor is not None:
            req.amount.CopyFrom(self.money(amount_minor, currency))
        return await self._call(self.payments.Refund, req, pb.PaymentResult)

    async def get_payment(self, payment_id: str) -> pb.Payment:
        return await self._call(
            self.payments.GetPayment, mpb.GetPaymentRequest(payment_id=payment_id), pb.Payment
        )

    async def list_payments(
        self, *, page_size: int = 50, page_token: str = ""
    ) -> mpb.ListPaymentsResponse:
        return await self._call(
            self.payments.ListPayments,
            mpb.ListPaymentsRequest(page_size=page_size, page_token=page_token),
            mpb.ListPaymentsResponse,
        )

    async def lookup_bill(self, biller_id: str, reference: str) -> mpb.Bill:
        return await self._call(
            self.bills.LookupBill,
            mpb.LookupBillRequest(biller_id=biller_id, reference=reference),
            mpb.Bill,
        )

    async def pay_bill(
        self,
        biller_id: str,
        reference: str,
        amount_minor: int,
        pan: str,
        expiry: str,
        cvv2: str,
        *,
        otp: str = "",
        idempotency_key: str | None = None,
    ) -> pb.PaymentResult:
        req = mpb.PayBillRequest(
            idempotency_key=idempotency_key or new_key(),
            biller_id=biller_id,
            reference=reference,
            amount=self.money(amount_minor),
            card=self.card(pan, expiry, cvv2, otp),
        )
        return await self._call(self.bills.PayBill, req, pb.PaymentResult)

    async def transfer(
        self,
        destination_account: str,
        amount_minor: int,
        pan: str,
        expiry: str,
        cvv2: str,
        *,
        otp: str = "",
        idempotency_key: str | None = None,
    ) -> pb.PaymentResult:
        req = mpb.TransferRequest(
            idempotency_key=idempotency_key or new_key(),
            card=self.card(pan, expiry, cvv2, otp),
            destination_account=destination_account,
            amount=self.money(amount_minor),
        )
        return await self._call(self.transfers.Transfer, req, pb.PaymentResult)

    async def start_verification(
        self, pan: str, amount_minor: int, *, idempotency_key: str | None = None
    ) -> mpb.StartVerificationResponse:
        req = mpb.StartVerificationRequest(
            idempotency_key=idempotency_key or new_key(),
            pan=pan,
            amount=self.money(amount_minor),
        )
        return await self._call(
            self.verification.StartVerification, req, mpb.StartVerificationResponse
        )
