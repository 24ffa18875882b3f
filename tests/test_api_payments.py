"""The merchant gRPC API end to end: a real grpc.aio server on a free port over a real
``SwitchCore`` (SQLite in a temp dir, in-process HSM, demo data)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest

from switch.api.testing import Harness
from switch.api.testing import run_with_api as run
from switch.core import demo
from switch.core.service import SwitchCore
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import types_pb2 as pb

CARD = demo.CARDS[0]
POOR = demo.CARDS[1]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)


def postings(core: SwitchCore) -> int:
    return int(core.store.query("SELECT COUNT(DISTINCT txn_id) FROM postings")[0][0])


def balance(core: SwitchCore, account: str) -> int:
    return int(core.store.query("SELECT balance FROM accounts WHERE number = ?", (account,))[0][0])


async def status_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return e.value.code(), e.value.details() or ""


def test_sale_approved_then_visible_by_get_and_list(state: Path) -> None:
    async def body(h: Harness) -> None:
        r = await h.client.sale(250_000, CARD.pan, CARD.expiry, CVV2, idempotency_key="o-1")
        assert r.approved and r.response_code == "00" and r.auth_code and not r.replayed
        assert r.approved_amount == pb.Money(amount_minor=250_000, currency=12)
        assert balance(h.core, CARD.account) == CARD.balance - 250_000
        p = await h.client.get_payment(r.payment_id)
        assert p.type == pb.PAYMENT_TYPE_SALE and p.amount.amount_minor == 250_000
        assert p.masked_pan.startswith("628058") and CARD.pan not in p.masked_pan
        assert p.created_at.seconds > 0
        page = await h.client.list_payments()
        assert [x.payment_id for x in page.payments] == [r.payment_id]

    run(state, body)


def test_decline_is_a_result_with_iso_code(state: Path) -> None:
    async def body(h: Harness) -> None:
        cvv = demo.cvv2(POOR.pan, POOR.expiry)
        r = await h.client.sale(POOR.balance + 1, POOR.pan, POOR.expiry, cvv)
        assert not r.approved and r.response_code == "51" and r.decline_reason
        bad = await h.client.sale(1000, CARD.pan, CARD.expiry, "000" if CVV2 != "000" else "001")
        assert not bad.approved and bad.response_code != "00"

    run(state, body)


def test_authorize_partial_capture_refund_never_more_than_captured(state: Path) -> None:
    async def body(h: Harness) -> None:
        a = await h.client.authorize(1_000_000, CARD.pan, CARD.expiry, CVV2)
        assert a.approved
        c = await h.client.capture(a.payment_id, 600_000)
        assert c.approved and c.approved_amount.amount_minor == 600_000
        # the hold is closed: a second capture is a precondition failure, not a posting
        code, msg = await status_of(h.client.capture(a.payment_id, 100))
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "original" in msg
        r1 = await h.client.refund(a.payment_id, 200_000)
        assert r1.approved
        code, msg = await status_of(h.client.refund(a.payment_id, 400_001))
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "amount" in msg
        r2 = await h.client.refund(a.payment_id, 400_000)
        assert r2.approved
        p = await h.client.get_payment(a.payment_id)
        assert (p.captured_minor, p.refunded_minor) == (600_000, 600_000)
        assert balance(h.core, CARD.account) == CARD.balance

    run(state, body)


def test_full_capture_and_full_refund_without_amount(state: Path) -> None:
    async def body(h: Harness) -> None:
        a = await h.client.authorize(300_000, CARD.pan, CARD.expiry, CVV2)
        c = await h.client.capture(a.payment_id, idempotency_key="cap")
        assert c.approved and c.approved_amount.amount_minor == 300_000
        again = await h.client.capture(a.payment_id, idempotency_key="cap")
        assert again.replayed and again.payment_id == c.payment_id
        r = await h.client.refund(a.payment_id)
        assert r.approved and r.approved_amount.amount_minor == 300_000
        assert balance(h.core, CARD.account) == CARD.balance

    run(state, body)


def test_void_of_preauth_and_sale(state: Path) -> None:
    async def body(h: Harness) -> None:
        a = await h.client.authorize(300_000, CARD.pan, CARD.expiry, CVV2)
        v = await h.client.void(a.payment_id)
        assert v.approved
        code, _ = await status_of(h.client.capture(a.payment_id, 100))
        assert code is grpc.StatusCode.FAILED_PRECONDITION
        s = await h.client.sale(200_000, CARD.pan, CARD.expiry, CVV2)
        assert (await h.client.void(s.payment_id)).approved
        assert balance(h.core, CARD.account) == CARD.balance

    run(state, body)


def test_idempotent_replay_and_conflict(state: Path) -> None:
    async def body(h: Harness) -> None:
        first = await h.client.sale(123_400, CARD.pan, CARD.expiry, CVV2, idempotency_key="k1")
        n = postings(h.core)
        again = await h.client.sale(123_400, CARD.pan, CARD.expiry, CVV2, idempotency_key="k1")
        assert again.replayed and again.payment_id == first.payment_id
        assert again.auth_code == first.auth_code and postings(h.core) == n
        code, msg = await status_of(
            h.client.sale(999, CARD.pan, CARD.expiry, CVV2, idempotency_key="k1")
        )
        assert code is grpc.StatusCode.ALREADY_EXISTS and "idempotency_key" in msg
        assert postings(h.core) == n
        assert balance(h.core, CARD.account) == CARD.balance - 123_400

    run(state, body)


def test_fifty_concurrent_calls_one_key_one_posting(state: Path) -> None:
    async def body(h: Harness) -> None:
        n = postings(h.core)
        results = await asyncio.gather(
            *(
                h.client.sale(77_700, CARD.pan, CARD.expiry, CVV2, idempotency_key="same")
                for _ in range(50)
            )
        )
        assert {r.payment_id for r in results} == {results[0].payment_id}
        assert all(r.approved for r in results)
        assert sum(not r.replayed for r in results) == 1
        assert postings(h.core) == n + 1
        assert balance(h.core, CARD.account) == CARD.balance - 77_700

    run(state, body)


def test_a_merchant_never_sees_or_acts_on_another_merchants_payments(state: Path) -> None:
    async def body(h: Harness) -> None:
        s = await h.client.sale(100_000, CARD.pan, CARD.expiry, CVV2)
        for call in (
            h.other.get_payment(s.payment_id),
            h.other.refund(s.payment_id, 100),
            h.other.void(s.payment_id),
            h.other.capture(s.payment_id, 100),
        ):
            code, msg = await status_of(call)
            assert code is grpc.StatusCode.NOT_FOUND and "payment_id" in msg
        assert (await h.other.list_payments()).payments == []
        req_list = h.other.payments.ListPayments(
            mpb.ListPaymentsRequest(merchant_id="M-ECOM-001"), metadata=h.other.metadata
        )
        code, msg = await status_of(req_list)
        assert code is grpc.StatusCode.PERMISSION_DENIED and "merchant_id" in msg
        assert (await h.client.get_payment(s.payment_id)).refunded_minor == 0

    run(state, body)


def test_list_payments_pages_and_time_range(state: Path) -> None:
    async def body(h: Harness) -> None:
        from google.protobuf.timestamp_pb2 import Timestamp

        ids = [
            (await h.client.sale(1000 + i, CARD.pan, CARD.expiry, CVV2)).payment_id
            for i in range(5)
        ]
        seen: list[str] = []
        token = ""
        while True:
            page = await h.client.list_payments(page_size=2, page_token=token)
            assert len(page.payments) <= 2
            seen += [p.payment_id for p in page.payments]
            token = page.next_page_token
            if not token:
                break
        assert seen == ids[::-1]
        future = Timestamp(seconds=4_000_000_000)
        empty = await h.client.payments.ListPayments(
            mpb.ListPaymentsRequest(start_time=future), metadata=h.client.metadata
        )
        assert list(empty.payments) == []
        past = await h.client.payments.ListPayments(
            mpb.ListPaymentsRequest(end_time=future, start_time=Timestamp(seconds=1)),
            metadata=h.client.metadata,
        )
        assert len(past.payments) == 5

    run(state, body)


def test_fifty_concurrent_refunds_one_key_one_posting(state: Path) -> None:
    async def body(h: Harness) -> None:
        s = await h.client.sale(500_000, CARD.pan, CARD.expiry, CVV2)
        n = postings(h.core)
        results = await asyncio.gather(
            *(h.client.refund(s.payment_id, 1_000, idempotency_key="r") for _ in range(50))
        )
        assert {r.payment_id for r in results} == {results[0].payment_id}
        assert all(r.approved for r in results) and postings(h.core) == n + 1
        assert (await h.client.get_payment(s.payment_id)).refunded_minor == 1_000

    run(state, body)


def test_concurrent_verification_one_key_one_sms(state: Path) -> None:
    async def body(h: Harness) -> None:
        answers = await asyncio.gather(
            *(h.client.start_verification(CARD.pan, 1000, idempotency_key="v") for _ in range(20))
        )
        assert all(a == answers[0] for a in answers)
        assert h.core.store.query("SELECT COUNT(*) FROM alerts")[0][0] == 1

    run(state, body)


def test_replay_survives_a_restart(state: Path) -> None:
    first: list[pb.PaymentResult] = []

    async def before(h: Harness) -> None:
        first.append(await h.client.sale(42_000, CARD.pan, CARD.expiry, CVV2, idempotency_key="p"))

    async def after(h: Harness) -> None:
        again = await h.client.sale(42_000, CARD.pan, CARD.expiry, CVV2, idempotency_key="p")
        assert again.replayed and again.payment_id == first[0].payment_id
        assert balance(h.core, CARD.account) == CARD.balance - 42_000

    run(state, before)
    run(state, after)
