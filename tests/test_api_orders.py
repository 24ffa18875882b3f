"""The merchant API's order model over real gRPC: order reference, metadata and status stored
with the payment and returned by every call; payment ids that do not reveal the switch's
volume; metadata refused with INVALID_ARGUMENT naming the entry at fault."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest

from switch.api.testing import Harness
from switch.api.testing import run_with_api as run
from switch.api.tracing import TRANSACTION_ID_KEY
from switch.core import demo
from switch.core.model import AuthRequest, Channel, TxnType
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import types_pb2 as pb
from switch.merchant_notify.cli import main as notify_cli
from switch.merchant_notify.ids import is_public_id

CARD = demo.CARDS[0]
POOR = demo.CARDS[1]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
S = pb.PaymentStatus


async def pay(
    h: Harness,
    amount: int,
    *,
    reference: str = "",
    metadata: dict[str, str] | None = None,
    authorize: bool = False,
    key: str | None = None,
    card: demo.DemoCard = CARD,
) -> pb.PaymentResult:
    req = mpb.CardPaymentRequest(
        idempotency_key=key or uuid.uuid4().hex,
        amount=h.client.money(amount),
        card=h.client.card(card.pan, card.expiry, demo.cvv2(card.pan, card.expiry)),
        order_reference=reference,
        metadata=metadata or {},
    )
    rpc = h.client.payments.Authorize if authorize else h.client.payments.Sale
    result: pb.PaymentResult = await rpc(req, metadata=h.client.metadata, timeout=10)
    return result


async def status_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return e.value.code(), e.value.details() or ""


def test_reference_metadata_and_status_round_trip(state: Path) -> None:
    meta = {"cart": "42", "customer": "Amina B.", "channel": "web"}

    async def body(h: Harness) -> None:
        r = await pay(h, 250_000, reference="CMD-1001", metadata=meta, key="o-1")
        assert r.approved and is_public_id(r.payment_id), r.payment_id
        assert (r.order_reference, dict(r.metadata), r.status) == (
            "CMD-1001",
            meta,
            S.Value("PAYMENT_STATUS_CAPTURED"),
        )
        again = await pay(h, 250_000, reference="CMD-1001", metadata=meta, key="o-1")
        assert again.replayed and again.payment_id == r.payment_id
        assert (again.order_reference, dict(again.metadata)) == ("CMD-1001", meta)
        p = await h.client.get_payment(r.payment_id)
        assert (p.payment_id, p.order_reference, dict(p.metadata)) == (
            r.payment_id,
            "CMD-1001",
            meta,
        )
        assert p.status == pb.PAYMENT_STATUS_CAPTURED
        listed = (await h.client.list_payments()).payments
        assert [(x.payment_id, x.order_reference, x.status) for x in listed] == [
            (r.payment_id, "CMD-1001", pb.PAYMENT_STATUS_CAPTURED)
        ]
        assert dict(listed[0].metadata) == meta

    run(state, body)


def test_status_follows_capture_partial_refunds_and_void(state: Path) -> None:
    async def body(h: Harness) -> None:
        a = await pay(h, 1_000_000, reference="CMD-7", metadata={"k": "v"}, authorize=True)
        assert a.status == pb.PAYMENT_STATUS_AUTHORIZED
        assert (await h.client.get_payment(a.payment_id)).status == pb.PAYMENT_STATUS_AUTHORIZED

        c = await h.client.capture(a.payment_id, 600_000)
        assert c.approved and c.status == pb.PAYMENT_STATUS_CAPTURED
        assert is_public_id(c.payment_id) and c.payment_id != a.payment_id
        assert (c.order_reference, dict(c.metadata)) == ("CMD-7", {"k": "v"})  # carried over
        cap = await h.client.get_payment(c.payment_id)
        assert cap.original_payment_id == a.payment_id and cap.type == pb.PAYMENT_TYPE_CAPTURE

        r1 = await h.client.refund(a.payment_id, 200_000)
        assert r1.approved and r1.status == pb.PAYMENT_STATUS_PARTIALLY_REFUNDED
        assert r1.order_reference == "CMD-7"
        got = await h.client.get_payment(a.payment_id)
        assert got.status == pb.PAYMENT_STATUS_PARTIALLY_REFUNDED and got.refunded_minor == 200_000
        r2 = await h.client.refund(a.payment_id)
        assert r2.approved and r2.status == pb.PAYMENT_STATUS_REFUNDED
        assert (await h.client.get_payment(a.payment_id)).status == pb.PAYMENT_STATUS_REFUNDED

        s = await pay(h, 50_000, reference="CMD-8")
        v = await h.client.void(s.payment_id)
        assert v.approved and v.status == pb.PAYMENT_STATUS_VOIDED and v.order_reference == "CMD-8"
        assert (await h.client.get_payment(s.payment_id)).status == pb.PAYMENT_STATUS_VOIDED

        d = await pay(h, POOR.balance + 1, reference="CMD-9", card=POOR)
        assert not d.approved and d.status == pb.PAYMENT_STATUS_DECLINED
        assert is_public_id(d.payment_id) and d.order_reference == "CMD-9"
        assert (await h.client.get_payment(d.payment_id)).status == pb.PAYMENT_STATUS_DECLINED

    run(state, body)


def test_payment_ids_do_not_reveal_the_sequence(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def body(h: Harness) -> None:
        ids = [(await pay(h, 1_000 + i)).payment_id for i in range(3)]
        assert all(is_public_id(i) for i in ids) and len(set(ids)) == 3
        assert not any(i[4:].isdigit() for i in ids)
        journal = [str(t) for (t,) in h.core.store.query("SELECT txn_id FROM journal")]
        assert not set(ids) & set(journal)  # the journal's sequence stays inside
        req = mpb.CardPaymentRequest(
            idempotency_key="quoted-1",
            amount=h.client.money(1_000),
            card=h.client.card(CARD.pan, CARD.expiry, CVV2),
        )
        call = h.client.payments.Sale(req, metadata=h.client.metadata, timeout=10)
        sale = await call
        quoted = (await call.trailing_metadata()).get(TRANSACTION_ID_KEY)
        assert quoted == sale.payment_id  # the id for support is the opaque one too
        # another merchant's id, and an id of the right shape that nobody was given
        code, msg = await status_of(h.other.get_payment(ids[0]))
        assert code is grpc.StatusCode.NOT_FOUND and msg.startswith("payment_id:"), msg
        code, msg = await status_of(h.client.get_payment("pay_" + "a" * 32))
        assert code is grpc.StatusCode.NOT_FOUND and msg.startswith("payment_id:"), msg
        # the operator finds the journal entry behind the id a merchant quotes
        (txn_id,) = h.core.store.query(
            "SELECT txn_id FROM payment_orders WHERE payment_id = ?", (ids[0],)
        )[0]
        assert notify_cli(["payment", "--state-dir", str(state), ids[0]]) == 0
        assert f"txn_id: {txn_id}" in capsys.readouterr().out
        assert notify_cli(["payment", "--state-dir", str(state), "pay_" + "a" * 32]) == 1

    run(state, body)


def test_a_payment_without_an_order_row_keeps_its_journal_id(state: Path) -> None:
    """A payment made before ids were opaque (no payment_orders row) is still found, listed
    and refunded under its 12-digit id."""

    async def body(h: Harness) -> None:
        merchant = demo.MERCHANTS[0]
        term = h.core.terminal(merchant.terminal_id)
        assert term is not None
        legacy = await h.core.authorize(
            AuthRequest(
                TxnType.PURCHASE, Channel.ECOMMERCE, CARD.pan, 30_000, 12, term.acquirer_id,
                merchant.terminal_id, "000001", "0101000000", merchant_id=merchant.merchant_id,
                mcc=merchant.mcc, expiry=CARD.expiry, cvv2=CVV2, idempotency_key="legacy-1",
            )
        )  # fmt: skip
        assert legacy.approved and legacy.transaction_id
        txn_id = legacy.transaction_id
        p = await h.client.get_payment(txn_id)
        assert p.payment_id == txn_id and p.order_reference == ""
        refund = await h.client.refund(txn_id, 10_000)
        assert refund.approved and is_public_id(refund.payment_id)
        got = await h.client.get_payment(refund.payment_id)
        assert got.original_payment_id == txn_id

    run(state, body)


@pytest.mark.parametrize(
    ("reference", "metadata", "message"),
    [
        ("x" * 65, {}, "order_reference: at most 64 printable characters"),
        ("bad\nref", {}, "order_reference: at most 64 printable characters"),
        ("", {f"k{i}": "v" for i in range(21)}, "metadata: at most 20 entries"),
        ("", {"k" * 41: "v"}, "metadata: key"),
        ("", {"note": "v" * 501}, "metadata['note']: value must be at most 500"),
        ("", {"note": "tab\there"}, "metadata['note']: value must be at most 500"),
    ],
)
def test_bad_reference_or_metadata_is_invalid_argument(
    state: Path, reference: str, metadata: dict[str, str], message: str
) -> None:
    async def body(h: Harness) -> None:
        code, msg = await status_of(pay(h, 1_000, reference=reference, metadata=metadata))
        assert code is INVALID and msg.startswith(message), msg
        assert h.core.store.query("SELECT COUNT(*) FROM journal")[0][0] == 0  # nothing posted

    run(state, body)


def test_list_payments_of_one_order_reference(state: Path) -> None:
    async def body(h: Harness) -> None:
        sale = await pay(h, 80_000, reference="CMD-A")
        other = await pay(h, 10_000, reference="CMD-B")
        refund = await h.client.refund(sale.payment_id, 5_000)
        assert sale.approved and other.approved and refund.approved
        declined = await pay(h, POOR.balance + 1, reference="CMD-A", card=POOR)
        assert not declined.approved  # a declined attempt belongs to the order's history too

        async def listed(**kw: object) -> mpb.ListPaymentsResponse:
            req = mpb.ListPaymentsRequest(order_reference="CMD-A", **kw)  # type: ignore[arg-type]
            got: mpb.ListPaymentsResponse = await h.client.payments.ListPayments(
                req, metadata=h.client.metadata, timeout=10
            )
            return got

        page = await listed()
        ids = [p.payment_id for p in page.payments]
        assert ids == [declined.payment_id, refund.payment_id, sale.payment_id]  # newest first
        assert other.payment_id not in ids and not page.next_page_token
        assert {p.order_reference for p in page.payments} == {"CMD-A"}
        first = await listed(page_size=1)
        assert [p.payment_id for p in first.payments] == ids[:1] and first.next_page_token
        rest = await listed(page_size=10, page_token=first.next_page_token)
        assert [p.payment_id for p in rest.payments] == ids[1:]
        code, msg = await status_of(
            h.client.payments.ListPayments(
                mpb.ListPaymentsRequest(order_reference="x" * 65),
                metadata=h.client.metadata,
                timeout=10,
            )
        )
        assert code is INVALID and msg.startswith("order_reference:"), msg
        assert (await h.other.list_payments()).payments == []  # another merchant sees none

    run(state, body)
