"""Bills, transfers, verification, health and reflection over the real gRPC server, and every
status code the API uses (malformed requests name their field)."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from switch.api.client import MerchantClient
from switch.api.testing import ECOM, Harness
from switch.api.testing import run_with_api as run
from switch.core import demo
from switch.core.service import SwitchCore
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import types_pb2 as pb
from switch.notify.sealing import AlertSeal

CARD = demo.CARDS[0]
OTHER = demo.CARDS[1]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def balance(core: SwitchCore, account: str) -> int:
    return int(core.store.query("SELECT balance FROM accounts WHERE number = ?", (account,))[0][0])


def postings(core: SwitchCore) -> int:
    return int(core.store.query("SELECT COUNT(*) FROM postings")[0][0])


async def status_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return e.value.code(), e.value.details() or ""


def sale_req(**kw: object) -> mpb.CardPaymentRequest:
    base: dict[str, object] = {
        "idempotency_key": "k",
        "amount": pb.Money(amount_minor=1000, currency=12),
        "card": pb.Card(pan=CARD.pan, expiry=CARD.expiry, cvv2=CVV2),
    }
    base.update(kw)
    return mpb.CardPaymentRequest(**base)  # type: ignore[arg-type]


def test_bill_lookup_and_payment(state: Path) -> None:
    async def body(h: Harness) -> None:
        bill = await h.client.lookup_bill("SONELGAZ", "000000000001")
        assert bill.amount_due == pb.Money(amount_minor=345_000, currency=12)
        assert bill.biller_name == "Sonelgaz" and not bill.paid
        r = await h.client.pay_bill(
            "SONELGAZ", "000000000001", 345_000, CARD.pan, CARD.expiry, CVV2, idempotency_key="b1"
        )
        assert r.approved
        again = await h.client.pay_bill(
            "SONELGAZ", "000000000001", 345_000, CARD.pan, CARD.expiry, CVV2, idempotency_key="b1"
        )
        assert again.replayed and again.payment_id == r.payment_id
        paid = await h.client.lookup_bill("SONELGAZ", "000000000001")
        assert paid.paid and paid.paid_by_payment_id == r.payment_id
        code, msg = await status_of(
            h.client.pay_bill("SONELGAZ", "000000000001", 345_000, CARD.pan, CARD.expiry, CVV2)
        )
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "paid" in msg
        code, msg = await status_of(h.client.lookup_bill("SONELGAZ", "999999999999"))
        assert code is grpc.StatusCode.NOT_FOUND and "reference" in msg
        code, msg = await status_of(
            h.client.pay_bill("ADE", "0000000001", 1, CARD.pan, CARD.expiry, CVV2)
        )
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "amount" in msg
        assert balance(h.core, CARD.account) == CARD.balance - 345_000

    run(state, body)


def test_transfer_between_ccp_accounts(state: Path) -> None:
    async def body(h: Harness) -> None:
        r = await h.client.transfer(OTHER.account, 1_000_000, CARD.pan, CARD.expiry, CVV2)
        assert r.approved
        assert balance(h.core, CARD.account) == CARD.balance - 1_000_000
        assert balance(h.core, OTHER.account) == OTHER.balance + 1_000_000
        n = postings(h.core)
        code, msg = await status_of(
            h.client.transfer("0009999999-99", 1000, CARD.pan, CARD.expiry, CVV2)
        )
        assert code is grpc.StatusCode.NOT_FOUND and "destination_account" in msg
        code, msg = await status_of(
            h.client.transfer(CARD.account, 1000, CARD.pan, CARD.expiry, CVV2)
        )
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "destination_account" in msg
        assert postings(h.core) == n  # validated before any posting

    run(state, body)


def test_verification_sends_an_sms_and_the_code_approves(state: Path) -> None:
    async def body(h: Harness) -> None:
        ch = await h.client.start_verification(CARD.pan, 250_000, idempotency_key="v1")
        assert ch.masked_phone.startswith("+213") and "*" in ch.masked_phone
        assert ch.expires_at.seconds > 0
        again = await h.client.start_verification(CARD.pan, 250_000, idempotency_key="v1")
        assert again == ch
        alerts = h.core.store.query("SELECT msisdn, text FROM alerts")
        assert len(alerts) == 1  # the replay sent no second SMS
        [(msisdn, sealed)] = alerts  # the code is sealed at rest: open it as the worker does
        code_ = (
            AlertSeal.for_state_dir(Path(h.core.store.path).parent).open(msisdn, sealed).secrets[0]
        )
        r = await h.client.sale(250_000, CARD.pan, CARD.expiry, CVV2, otp=code_)
        assert r.approved
        code, msg = await status_of(h.client.start_verification(CARD.pan, 1, idempotency_key="v1"))
        assert code is grpc.StatusCode.ALREADY_EXISTS and "idempotency_key" in msg
        code, msg = await status_of(h.client.start_verification(demo.REMOTE_CARD_PAN, 1))
        assert code is grpc.StatusCode.NOT_FOUND and "pan" in msg

    run(state, body)


def test_authentication(state: Path) -> None:
    async def body(h: Harness) -> None:
        for mid, key in ((ECOM.merchant_id, "wrong"), ("nobody", ECOM.api_key), ("", "")):
            c = h.client_for(mid, key)
            try:
                code, msg = await status_of(c.sale(1000, CARD.pan, CARD.expiry, CVV2))
                assert code is grpc.StatusCode.UNAUTHENTICATED and "x-" in msg
            finally:
                await c.close()
        assert postings(h.core) == 0

    run(state, body)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "x" * 65}, "idempotency_key"),
        ({"amount": None}, "amount"),
        ({"amount": pb.Money(amount_minor=-5, currency=12)}, "amount.amount_minor"),
        ({"amount": pb.Money(amount_minor=0, currency=12)}, "amount.amount_minor"),
        ({"amount": pb.Money(amount_minor=10**13, currency=12)}, "amount.amount_minor"),
        ({"amount": pb.Money(amount_minor=100, currency=999)}, "amount.currency"),
        ({"card": None}, "card"),
        ({"card": pb.Card(pan="", expiry="3012", cvv2="123")}, "card.pan"),
        ({"card": pb.Card(pan="6280580000000018", expiry="3012", cvv2="123")}, "card.pan"),
        ({"card": pb.Card(pan="62805800000000a7", expiry="3012", cvv2="123")}, "card.pan"),
        ({"card": pb.Card(pan=CARD.pan, expiry="3013", cvv2="123")}, "card.expiry"),
        ({"card": pb.Card(pan=CARD.pan, expiry="3012", cvv2="12")}, "card.cvv2"),
        ({"card": pb.Card(pan=CARD.pan, expiry="3012", cvv2="123", otp="12")}, "card.otp"),
    ],
)
def test_malformed_sale_is_invalid_argument_naming_the_field(
    state: Path, kw: dict[str, object], field: str
) -> None:
    async def body(h: Harness) -> None:
        req = sale_req(**{k: v for k, v in kw.items() if v is not None})
        for k, v in kw.items():
            if v is None:
                req.ClearField(k)  # type: ignore[arg-type]
        code, msg = await status_of(h.client.payments.Sale(req, metadata=h.client.metadata))
        assert code is INVALID, msg
        assert msg.startswith(field + ":"), msg
        assert CARD.pan not in msg and CVV2 not in msg
        assert postings(h.core) == 0

    run(state, body)


def test_other_malformed_requests(state: Path) -> None:
    async def body(h: Harness) -> None:
        md = h.client.metadata
        code, msg = await status_of(h.client.get_payment(""))
        assert code is INVALID and msg.startswith("payment_id:")
        code, msg = await status_of(h.client.get_payment("000000009999"))
        assert code is grpc.StatusCode.NOT_FOUND and msg.startswith("payment_id:")
        code, msg = await status_of(h.client.lookup_bill("", "1"))
        assert code is INVALID and msg.startswith("biller_id:")
        code, msg = await status_of(h.client.list_payments(page_size=501))
        assert code is INVALID and msg.startswith("page_size:")
        code, msg = await status_of(h.client.list_payments(page_token="abc"))
        assert code is INVALID and msg.startswith("page_token:")
        code, msg = await status_of(
            h.client.transfers.Transfer(
                mpb.TransferRequest(
                    idempotency_key="t",
                    card=pb.Card(pan=CARD.pan, expiry=CARD.expiry, cvv2=CVV2),
                    amount=pb.Money(amount_minor=5, currency=12),
                ),
                metadata=md,
            )
        )
        assert code is INVALID and msg.startswith("destination_account:")
        code, msg = await status_of(h.client.start_verification("1234", 100))
        assert code is INVALID and msg.startswith("pan:")
        s = await h.client.sale(5000, CARD.pan, CARD.expiry, CVV2)
        code, msg = await status_of(h.client.refund(s.payment_id, 10, currency=978))
        assert code is INVALID and msg.startswith("amount.currency:")

    run(state, body)


def test_unavailable_when_the_core_is_halted(state: Path) -> None:
    async def body(h: Harness) -> None:
        h.core._p.halted = "test: store commit failed"  # what a failed commit sets
        code, msg = await status_of(h.client.sale(1000, CARD.pan, CARD.expiry, CVV2))
        assert code is grpc.StatusCode.UNAVAILABLE and "switch" in msg
        async with grpc.aio.insecure_channel(h.target) as ch:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING

    run(state, body)


def test_health_serving_and_reflection(state: Path) -> None:
    async def body(h: Harness) -> None:
        async with grpc.aio.insecure_channel(h.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for service in ("", "switch.v1.Payments", "switch.v1.Bills"):
                r = await stub.Check(health_pb2.HealthCheckRequest(service=service))
                assert r.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(ch)
            names: set[str] = set()
            async for resp in refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            ):
                names |= {s.name for s in resp.list_services_response.service}
            assert {"switch.v1.Payments", "switch.v1.Transfers", "grpc.health.v1.Health"} <= names

    run(state, body)


def test_client_is_usable_as_context_manager(state: Path) -> None:
    async def body(h: Harness) -> None:
        async with MerchantClient(h.target, ECOM.merchant_id, ECOM.api_key) as c:
            assert (await c.sale(1000, CARD.pan, CARD.expiry, CVV2)).approved

    run(state, body)
