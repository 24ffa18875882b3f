"""Refunds "of the rest" and refused calls, over the real gRPC server on a real core.

* A refund with the amount unset refunds everything still refundable -- after a partial
  refund too (it used to be FAILED_PRECONDITION) -- and its retry with the same key is a
  replay, not a refusal.
* A call refused with an error status (FAILED_PRECONDITION, NOT_FOUND) records nothing the
  merchant sees: no payment in ListPayments or by GetPayment, no idempotency key spent; the
  attempt stays in the journal for the operator, marked refused.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest

from switch.api.testing import Harness
from switch.api.testing import run_with_api as run
from switch.core import demo
from switch.core.service import SwitchCore

CARD = demo.CARDS[0]
OTHER = demo.CARDS[1]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def status_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return e.value.code(), e.value.details() or ""


def balance(core: SwitchCore, account: str) -> int:
    return int(core.store.query("SELECT balance FROM accounts WHERE number = ?", (account,))[0][0])


def refused_rows(core: SwitchCore) -> list[str]:
    """The operator's view: journal rows of refused calls."""
    return [str(r[0]) for r in core.store.query("SELECT txn_id FROM journal WHERE refused = 1")]


async def listed(h: Harness) -> list[str]:
    return [p.payment_id for p in (await h.client.list_payments()).payments]


def test_refund_without_amount_after_a_partial_refund_refunds_the_rest(state: Path) -> None:
    async def body(h: Harness) -> None:
        s = await h.client.sale(500_000, CARD.pan, CARD.expiry, CVV2)
        part = await h.client.refund(s.payment_id, 200_000)
        assert part.approved
        rest = await h.client.refund(s.payment_id, idempotency_key="rest-1")
        assert rest.approved and rest.approved_amount.amount_minor == 300_000, rest
        again = await h.client.refund(s.payment_id, idempotency_key="rest-1")
        assert again.replayed and again.payment_id == rest.payment_id
        assert again.approved_amount.amount_minor == 300_000
        assert balance(h.core, CARD.account) == CARD.balance
        p = await h.client.get_payment(s.payment_id)
        assert p.refunded_minor == 500_000
        code, msg = await status_of(h.client.refund(s.payment_id))
        assert code is PRECONDITION and msg.startswith("payment_id:"), msg
        # the same on a captured pre-authorization
        a = await h.client.authorize(400_000, CARD.pan, CARD.expiry, CVV2)
        c = await h.client.capture(a.payment_id, 300_000)
        assert c.approved
        assert (await h.client.refund(a.payment_id, 100_000)).approved
        r = await h.client.refund(a.payment_id)
        assert r.approved and r.approved_amount.amount_minor == 200_000, r
        assert balance(h.core, CARD.account) == CARD.balance

    run(state, body)


def test_a_refused_refund_records_nothing_the_merchant_sees(state: Path) -> None:
    async def body(h: Harness) -> None:
        s = await h.client.sale(100_000, CARD.pan, CARD.expiry, CVV2)
        before = await listed(h)
        assert before == [s.payment_id]
        for _ in range(2):  # the retry is refused again, not replayed as a payment
            code, msg = await status_of(
                h.client.refund(s.payment_id, 100_001, idempotency_key="too-much")
            )
            assert code is PRECONDITION and msg.startswith("amount:"), msg
        assert (await listed(h)) == before
        refused = refused_rows(h.core)
        assert len(refused) == 2  # kept for the operator
        for txn_id in refused:
            code, msg = await status_of(h.client.get_payment(txn_id))
            assert code is grpc.StatusCode.NOT_FOUND and msg.startswith("payment_id:"), msg
        assert h.core.store.query(
            "SELECT COUNT(*) FROM idempotency WHERE key LIKE '%:too-much'"
        ) == [(0,)]
        # nothing was spent: the payment is still wholly refundable, and the key usable
        ok = await h.client.refund(s.payment_id, idempotency_key="too-much")
        assert ok.approved and ok.approved_amount.amount_minor == 100_000
        assert await listed(h) == [ok.payment_id, s.payment_id]
        # a capture and a void refused likewise
        code, _ = await status_of(h.client.capture(s.payment_id, 1))
        assert code is PRECONDITION
        code, _ = await status_of(h.client.void(ok.payment_id))
        assert code is PRECONDITION
        assert await listed(h) == [ok.payment_id, s.payment_id]
        assert len(refused_rows(h.core)) == 4

    run(state, body)


def test_refused_bill_and_transfer_are_not_listed(state: Path) -> None:
    async def body(h: Harness) -> None:
        b = await h.client.pay_bill(
            "SONELGAZ", "000000000001", 345_000, CARD.pan, CARD.expiry, CVV2
        )
        assert b.approved
        code, _ = await status_of(
            h.client.pay_bill("SONELGAZ", "000000000001", 345_000, CARD.pan, CARD.expiry, CVV2)
        )
        assert code is PRECONDITION  # already paid
        code, _ = await status_of(
            h.client.transfer("0009999999-99", 1000, CARD.pan, CARD.expiry, CVV2)
        )
        assert code is grpc.StatusCode.NOT_FOUND
        code, _ = await status_of(
            h.client.transfer(CARD.account, 1000, CARD.pan, CARD.expiry, CVV2)
        )
        assert code is PRECONDITION
        assert await listed(h) == [b.payment_id]
        assert len(refused_rows(h.core)) == 3
        # a decline is a result, not a refusal: it is a payment the merchant got an id for
        d = await h.client.transfer(OTHER.account, 10**11, CARD.pan, CARD.expiry, CVV2)
        assert not d.approved and d.payment_id
        assert await listed(h) == [d.payment_id, b.payment_id]

    run(state, body)
