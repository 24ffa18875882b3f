"""Merchant notifications end to end: payments through the real gRPC API record signed events
in the same commit; a real aiohttp receiver on a free port gets them from the worker.

The signature is checked here with ``hmac`` directly (not ``switch.merchant_notify.signing``),
as a merchant's own code would. The clock is a ``ManualClock`` shared by the core and the
worker: retries are driven by advancing it, never by sleeping through a back-off.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from switch.api.testing import Harness, serve_api
from switch.core import demo
from switch.core.service import SwitchCore
from switch.core.testing import ManualClock
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import types_pb2 as pb
from switch.merchant_notify import (
    EventType,
    PaymentStatus,
    build_event,
    enqueue_event,
    json_body,
)
from switch.merchant_notify.cli import main as notify_cli
from switch.merchant_notify.ids import PaymentIds, is_public_id
from switch.merchant_notify.outboxes import open_outbox
from switch.merchant_notify.recorder import (
    EventRecorder,
    PaymentOrder,
    attach,
    ensure_recorder,
    payment_order,
)
from switch.merchant_notify.secrets_seal import CallbackSeal
from switch.merchant_notify.signing import signature_header, verify
from switch.merchant_notify.sqlite_outbox import SqliteMerchantOutbox
from switch.merchant_notify.worker import DeliveryPolicy, MerchantNotifyWorker
from switch.store.api import Changes, IdempotencyRow, JournalRow, MerchantEventRow

CARD = demo.CARDS[0]
POOR = demo.CARDS[1]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)
ECOM = demo.MERCHANTS[0]
SECRET = "whsec_test-secret-0123456789abcdef"
T0 = 1_790_000_000.0  # a fixed instant: the test means the same on any date
POLICY = DeliveryPolicy(timeout=5.0, base=10.0, cap=60.0, jitter=0.0, max_attempts=3, lease=30.0)


@dataclass
class Receiver:
    """A merchant's HTTP endpoint: records every POST, answers from ``statuses`` in turn
    (200 once they run out)."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    hang: asyncio.Event | None = None  # set: each request waits for it before answering

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        if self.hang is not None:
            await self.hang.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status < 300 else "try later")

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(body) for _, body in self.received]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/switch", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}/hooks/switch"
    try:
        yield rec
    finally:
        await runner.cleanup()


def set_callback(state: Path, url: str, tmp: Path) -> None:
    secret_file = tmp / "secret.txt"
    secret_file.write_text(SECRET + "\n")
    args = ["set-callback", "--state-dir", str(state), ECOM.merchant_id, url]
    assert notify_cli([*args, "--secret-file", str(secret_file)]) == 0


def expected_signature(secret: str, header: str, body: bytes) -> tuple[int, bool]:
    """Independent check: (t, whether v1 is HMAC-SHA256(secret, "t.body"))."""
    items = dict(part.split("=", 1) for part in header.split(","))
    t = int(items["t"])
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return t, hmac.compare_digest(mac, items["v1"])


def outbox_rows(core: SwitchCore) -> list[tuple[object, ...]]:
    return core.store.query(
        "SELECT event_id, event_type, status, attempts, payment_id FROM merchant_events "
        "ORDER BY created_at, event_id"
    )


def worker(
    state: Path,
    clock: ManualClock,
    *,
    batch_size: int = 32,
    concurrency: int = 8,
    policy: DeliveryPolicy = POLICY,
) -> MerchantNotifyWorker:
    outbox = open_outbox(state, durable=False)  # SWITCH_STORE's on PostgreSQL
    return MerchantNotifyWorker(
        outbox,
        CallbackSeal.for_state_dir(state),
        policy=policy,
        clock=clock,
        rng=random.Random(1),
        batch_size=batch_size,
        concurrency=concurrency,
    )


async def close(w: MerchantNotifyWorker) -> None:
    await w.close()
    w.outbox.close()  # type: ignore[attr-defined]


def run(
    state: Path, tmp: Path, body: Callable[[Harness, Receiver, ManualClock], Awaitable[None]]
) -> None:
    """A core on ``state`` with the gRPC API and a receiver configured as the e-commerce
    merchant's callback (set with the CLI before the core opens)."""

    async def go() -> None:
        clock = ManualClock(T0)
        async with receiver() as rec:
            core = await SwitchCore.open(state, durable=False, clock=clock)
            try:
                set_callback(state, rec.url, tmp)
                ensure_recorder(core).refresh()
                async with serve_api(core) as h:
                    await asyncio.wait_for(body(h, rec, clock), 30)
            finally:
                await core.close()

    asyncio.run(go())


@pytest.mark.usefixtures("store_backend")  # SQLite and PostgreSQL
def test_paid_and_declined_events_commit_with_the_payment_and_arrive_signed(
    state: Path, tmp_path: Path
) -> None:
    async def body(h: Harness, rec: Receiver, clock: ManualClock) -> None:
        sale = await h.client.sale(250_000, CARD.pan, CARD.expiry, CVV2)
        assert sale.approved
        clock.advance(1)  # the events list in order of time
        poor_cvv2 = demo.cvv2(POOR.pan, POOR.expiry)
        declined = await h.client.sale(10**9, POOR.pan, POOR.expiry, poor_cvv2)
        assert not declined.approved
        # durable with the payments, before any worker ran
        rows = outbox_rows(h.core)
        assert [(r[1], r[2], r[3]) for r in rows] == [
            ("payment.paid", "pending", 0),
            ("payment.declined", "pending", 0),
        ]
        assert [r[4] for r in rows] == [sale.payment_id, declined.payment_id]

        w = worker(state, clock)
        try:
            assert await w.run_once() == 2
        finally:
            await close(w)
        assert [(r[2], r[3]) for r in outbox_rows(h.core)] == [("delivered", 1)] * 2
        assert len(rec.received) == 2
        by_id = {headers["X-Switch-Event-Id"]: (headers, raw) for headers, raw in rec.received}
        assert set(by_id) == {str(r[0]) for r in rows}  # sent concurrently: any order
        for headers, raw in rec.received:
            t, ok = expected_signature(SECRET, headers["X-Switch-Signature"], raw)
            assert ok and t == int(T0 + 1)
            assert json.loads(raw)["event_id"] == headers["X-Switch-Event-Id"]
            assert headers["Content-Type"] == "application/json"
            assert headers["X-Switch-Event-Type"] == json.loads(raw)["type"]
        paid = json.loads(by_id[str(rows[0][0])][1])
        refused = json.loads(by_id[str(rows[1][0])][1])
        assert paid["event_id"] == rows[0][0] and paid["type"] == "payment.paid"
        assert paid["payment_id"] == sale.payment_id and paid["status"] == "captured"
        assert (paid["amount"], paid["currency"], paid["response_code"]) == (250_000, 12, "00")
        assert paid["auth_code"] == sale.auth_code and paid["operation"] == "sale"
        masked = str(paid["masked_pan"])
        assert masked == CARD.pan[:6] + "*" * (len(CARD.pan) - 10) + CARD.pan[-4:]
        assert all(CARD.pan.encode() not in raw for _, raw in rec.received)
        assert refused["type"] == "payment.declined" and refused["status"] == "declined"
        assert refused["response_code"] == declined.response_code

    run(state, tmp_path, body)


@pytest.mark.usefixtures("store_backend")  # SQLite and PostgreSQL
def test_receiver_500_then_200_is_retried_after_the_back_off(state: Path, tmp_path: Path) -> None:
    async def body(h: Harness, rec: Receiver, clock: ManualClock) -> None:
        sale = await h.client.sale(100_000, CARD.pan, CARD.expiry, CVV2)
        rec.statuses = [500]
        w = worker(state, clock)
        try:
            assert await w.run_once() == 1  # answered 500
            event_id, _, status, attempts, _ = outbox_rows(h.core)[0]
            assert (status, attempts) == ("pending", 1)
            assert await w.run_once() == 0  # not due before its back-off
            clock.advance(POLICY.base - 1)
            assert await w.run_once() == 0
            clock.advance(1)
            assert await w.run_once() == 1  # answered 200
        finally:
            await close(w)
        assert [(r[2], r[3]) for r in outbox_rows(h.core)] == [("delivered", 2)]
        assert [h_["X-Switch-Event-Id"] for h_, _ in rec.received] == [event_id] * 2
        stamps = [expected_signature(SECRET, h_["X-Switch-Signature"], b) for h_, b in rec.received]
        assert stamps == [(int(T0), True), (int(T0 + POLICY.base), True)]  # signed anew
        assert (
            rec.bodies()[0] == rec.bodies()[1] and rec.bodies()[0]["payment_id"] == sale.payment_id
        )
        last = h.core.store.query("SELECT last_status FROM merchant_events")[0][0]
        assert last == 200

    run(state, tmp_path, body)


def test_failing_receiver_is_given_up_after_max_attempts(state: Path, tmp_path: Path) -> None:
    async def body(h: Harness, rec: Receiver, clock: ManualClock) -> None:
        await h.client.sale(100_000, CARD.pan, CARD.expiry, CVV2)
        rec.statuses = [503] * 10
        w = worker(state, clock)
        try:
            for _ in range(POLICY.max_attempts):
                assert await w.run_once() == 1
                clock.advance(POLICY.cap)
            assert await w.run_once() == 0  # failed for good: not claimed again
        finally:
            await close(w)
        row = h.core.store.query(
            "SELECT status, attempts, last_status, last_error FROM merchant_events"
        )
        assert row == [("failed", POLICY.max_attempts, 503, "HTTP 503")]
        assert len(rec.received) == POLICY.max_attempts
        # the operator fixes the endpoint and makes them due again
        assert notify_cli(["retry-failed", "--state-dir", str(state), ECOM.merchant_id]) == 0
        w = worker(state, clock)
        try:
            rec.statuses = []
            assert await w.run_once() == 1
        finally:
            await close(w)
        assert h.core.store.query("SELECT status FROM merchant_events") == [("delivered",)]

    run(state, tmp_path, body)


@pytest.mark.usefixtures("store_backend")  # SQLite and PostgreSQL
def test_event_of_a_dead_worker_is_sent_by_the_next_one(state: Path, tmp_path: Path) -> None:
    """A worker that claimed a batch and died (no mark) leaves the rows leased: the next
    worker skips them until the lease ends, then delivers them -- nothing lost."""

    async def body(h: Harness, rec: Receiver, clock: ManualClock) -> None:
        await h.client.sale(100_000, CARD.pan, CARD.expiry, CVV2)
        dead = open_outbox(state, durable=False)
        claimed = dead.claim_due_events(clock(), 10, POLICY.lease, "dead-worker")
        assert len(claimed) == 1
        dead.close()  # the process is gone: never marked
        w = worker(state, clock)
        try:
            assert await w.run_once() == 0  # still leased
            clock.advance(POLICY.lease)
            assert await w.run_once() == 1
        finally:
            await close(w)
        assert [b["event_id"] for b in rec.bodies()] == [claimed[0].event_id]
        assert outbox_rows(h.core)[0][2] == "delivered"

    run(state, tmp_path, body)


def test_pending_event_survives_a_restart_of_the_switch(state: Path, tmp_path: Path) -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        async with receiver() as rec:
            core = await SwitchCore.open(state, durable=False, clock=clock)
            try:
                set_callback(state, rec.url, tmp_path)
                ensure_recorder(core).refresh()
                async with serve_api(core) as h:
                    sale = await h.client.sale(100_000, CARD.pan, CARD.expiry, CVV2)
            finally:
                await core.close()  # stopped before any delivery
            core = await SwitchCore.open(state, durable=False, clock=clock)
            try:
                w = worker(state, clock)
                try:
                    assert await w.run_once() == 1
                finally:
                    await close(w)
            finally:
                await core.close()
            assert [b["payment_id"] for b in rec.bodies()] == [sale.payment_id]

    asyncio.run(go())


@pytest.mark.usefixtures("store_backend")  # SQLite and PostgreSQL
def test_two_workers_never_send_one_event_twice(state: Path, tmp_path: Path) -> None:
    async def body(h: Harness, rec: Receiver, clock: ManualClock) -> None:
        events = [
            build_event(
                merchant_id=ECOM.merchant_id,
                event_type=EventType.PAID,
                payment_id=f"pay_{i}",
                status=PaymentStatus.CAPTURED,
                amount=100 + i,
                currency=12,
                response_code="00",
                masked_pan="628058******0001",
                created_at=clock(),
            )
            for i in range(40)
        ]
        await h.core.store.commit(Changes(merchant_events=events))
        a = worker(state, clock, batch_size=8, concurrency=4)
        b = worker(state, clock, batch_size=8, concurrency=4)
        try:
            for _ in range(10):
                done = await asyncio.gather(a.run_once(), b.run_once())
                if sum(done) == 0:
                    break
        finally:
            await close(a)
            await close(b)
        sent = [str(b_["event_id"]) for b_ in rec.bodies()]
        assert sorted(sent) == sorted(e.event_id for e in events)  # each exactly once
        assert a.stats.delivered > 0 and b.stats.delivered > 0  # both took part
        assert {r[2] for r in outbox_rows(h.core)} == {"delivered"}
        with open_outbox(state) as outbox:  # delivered rows go once old enough
            assert outbox.purge_delivered(clock()) == 0  # created at clock(): not before it
            assert outbox.purge_delivered(clock() + 1) == len(events)
        assert outbox_rows(h.core) == []

    run(state, tmp_path, body)


def order_cancelled(merchant_id: str, at: float) -> MerchantEventRow:
    return build_event(
        merchant_id=merchant_id,
        event_type=EventType.DECLINED,
        payment_id="",
        order_id="gw-order-1",
        order_reference="CMD-77",
        status=PaymentStatus.DECLINED,
        amount=5_000,
        currency=12,
        response_code="",
        masked_pan="",
        created_at=at,
    )


def test_an_order_change_without_a_payment_is_enqueued_alone(state: Path, tmp_path: Path) -> None:
    """The gateway's cancelled or expired order: no journal row, one event of its own."""

    async def body(h: Harness, rec: Receiver, clock: ManualClock) -> None:
        assert await enqueue_event(h.core, order_cancelled(ECOM.merchant_id, clock()))
        fuel = demo.MERCHANTS[1].merchant_id  # no callback: nothing stored
        assert not await enqueue_event(h.core, order_cancelled(fuel, clock()))
        w = worker(state, clock)
        try:
            assert await w.run_once() == 1
        finally:
            await close(w)
        (doc,) = rec.bodies()
        assert (doc["order_id"], doc["order_reference"], doc["payment_id"]) == (
            "gw-order-1",
            "CMD-77",
            "",
        )
        assert doc["type"] == "payment.declined"

    run(state, tmp_path, body)


def test_merchant_without_callback_records_nothing(state: Path) -> None:
    async def go() -> None:
        core = await SwitchCore.open(state, durable=False, clock=ManualClock(T0))
        try:
            ensure_recorder(core)
            async with serve_api(core) as h:
                assert (await h.client.sale(100_000, CARD.pan, CARD.expiry, CVV2)).approved
            assert outbox_rows(core) == []
        finally:
            await core.close()

    asyncio.run(go())


def test_callback_cli_refuses_bad_input_and_seals_the_secret(
    state: Path, tmp_path: Path, capsys: object
) -> None:
    async def seed() -> None:
        await (await SwitchCore.open(state, durable=False)).close()

    asyncio.run(seed())
    base = ["set-callback", "--state-dir", str(state)]
    assert notify_cli([*base, ECOM.merchant_id, "http://merchant.example/hook"]) == 2
    assert notify_cli([*base, ECOM.merchant_id, "ftp://127.0.0.1/hook"]) == 2
    assert notify_cli([*base, ECOM.merchant_id, "https://u:p@merchant.example/h"]) == 2
    assert notify_cli([*base, "M-NOPE", "https://merchant.example/hook"]) == 1
    assert notify_cli(["disable", "--state-dir", str(state), ECOM.merchant_id]) == 1
    set_callback(state, "https://merchant.example/hook", tmp_path)
    raw = b"".join(p.read_bytes() for p in state.glob("switch.db*"))
    assert SECRET.encode() not in raw  # sealed at rest (database and WAL)
    with SqliteMerchantOutbox(state / "switch.db") as outbox:
        cb = outbox.callbacks([ECOM.merchant_id])[ECOM.merchant_id]
        seal = CallbackSeal.for_state_dir(state)
        assert seal.open(cb.merchant_id, cb.url, cb.secret_sealed) == SECRET
        try:
            seal.open(cb.merchant_id, "https://attacker.example/", cb.secret_sealed)
            raise AssertionError("a sealed secret opened for another URL")
        except ValueError:
            pass
        assert outbox.enabled_merchants() == frozenset({ECOM.merchant_id})
    assert notify_cli(["disable", "--state-dir", str(state), ECOM.merchant_id]) == 0
    with SqliteMerchantOutbox(state / "switch.db") as outbox:
        assert outbox.enabled_merchants() == frozenset()


def _unit(txn_id: str, key: str) -> Changes:
    journal = JournalRow(
        txn_id, T0, 1, "purchase", "ecommerce", "00", "000001", 1, 1, "628058******0001",
        5_000, 0, 12, "", "ACQ", "VT-ECOM1", "000001", "0101000000", txn_id,
        ECOM.merchant_id, None, None, "onus", "approved",
    )  # fmt: skip
    return Changes(journal=journal, idempotency=IdempotencyRow(key, "fp", txn_id, "{}", T0))


def test_a_unit_decided_again_after_a_conflict_keeps_its_order() -> None:
    """Several nodes: a unit refused by its guards is decided again by the core, with a new
    txn id and outside the caller's context; the order facts and the event follow it."""
    recorder = EventRecorder(PaymentIds(b"k" * 32), lambda: frozenset({ECOM.merchant_id}))
    order = PaymentOrder(ECOM.merchant_id, order_reference="CMD-5", metadata={"a": "b"})
    first = _unit("000000000007", "api:M-ECOM-001:k1")
    with payment_order(order):
        recorder.decorate(first)
    assert order.txn_id == "000000000007" and len(first.payment_orders) == 1
    assert first.on_settled is not None
    first.on_settled(RuntimeError("conflict"))  # refused: the core retries
    assert order.txn_id is None
    again = _unit("000000000009", "api:M-ECOM-001:k1")
    recorder.decorate(again)  # no payment_order(...) around the retry
    assert order.txn_id == "000000000009" and order.payment_id == PaymentIds(b"k" * 32).public(
        "000000000009"
    )
    (row,) = again.payment_orders
    assert (row.txn_id, row.order_reference, row.metadata) == ("000000000009", "CMD-5", '{"a":"b"}')
    (event,) = again.merchant_events
    assert json.loads(json_body(event.body))["order_reference"] == "CMD-5"
    other = _unit("000000000010", "api:M-ECOM-001:k2")  # another request: no order of its own
    recorder.decorate(other)
    assert other.payment_orders == [] and len(other.merchant_events) == 1


def test_silent_or_closed_endpoint_is_a_failed_attempt(state: Path, tmp_path: Path) -> None:
    """No answer within the timeout, then a refused connection: each is one failed attempt
    with its reason, the event stays pending, and the worker goes on."""

    async def body(h: Harness, rec: Receiver, clock: ManualClock) -> None:
        await h.client.sale(100_000, CARD.pan, CARD.expiry, CVV2)
        rec.hang = asyncio.Event()
        quick = DeliveryPolicy(timeout=0.3, base=10.0, cap=60.0, jitter=0.0, lease=30.0)
        w = worker(state, clock, policy=quick)
        try:
            assert await w.run_once() == 1
            rec.hang.set()
            row = h.core.store.query("SELECT status, attempts, last_error FROM merchant_events")
            assert row == [("pending", 1, "no answer within 0.3 s")]
            with SqliteMerchantOutbox(state / "switch.db") as outbox:  # the port now closed
                closed = "http://127.0.0.1:1/hooks/switch"  # nothing listens on port 1
                seal = CallbackSeal.for_state_dir(state)
                outbox.set_callback(
                    ECOM.merchant_id, closed, seal.seal(ECOM.merchant_id, closed, SECRET), T0
                )
            clock.advance(quick.cap)
            assert await w.run_once() == 1
        finally:
            await close(w)
        row = h.core.store.query("SELECT status, attempts, last_status FROM merchant_events")
        assert row == [("pending", 2, 0)]
        error = str(h.core.store.query("SELECT last_error FROM merchant_events")[0][0])
        assert error.startswith("ClientConnectorError"), error

    run(state, tmp_path, body)


def test_a_hold_expiry_is_notified_under_the_order_of_its_authorization(
    state: Path, tmp_path: Path
) -> None:
    """A follow-up nobody declared (the switch's own release of an expired hold) inherits the
    order of the payment it refers to: public ids, reference and metadata."""

    async def body(h: Harness, rec: Receiver, clock: ManualClock) -> None:
        req = mpb.CardPaymentRequest(
            idempotency_key="hold-1",
            amount=h.client.money(70_000),
            card=h.client.card(CARD.pan, CARD.expiry, CVV2),
            order_reference="CMD-HOLD",
            metadata={"room": "12"},
        )
        auth = await h.client.payments.Authorize(req, metadata=h.client.metadata, timeout=10)
        assert auth.approved
        clock.advance(8 * 86400)  # past the product's 168 h validity
        assert await h.core.expire_holds() == 1
        assert (await h.client.get_payment(auth.payment_id)).status == pb.PAYMENT_STATUS_VOIDED
        w = worker(state, clock)
        try:
            assert await w.run_once() == 2
        finally:
            await close(w)
        docs = {str(d["type"]): d for d in rec.bodies()}
        assert set(docs) == {"payment.authorized", "payment.reversed"}
        released = docs["payment.reversed"]
        assert released["original_payment_id"] == auth.payment_id
        assert is_public_id(str(released["payment_id"]))
        assert (released["order_reference"], released["metadata"]) == ("CMD-HOLD", {"room": "12"})
        assert (released["status"], released["amount"]) == ("voided", 70_000)
        got = await h.client.get_payment(str(released["payment_id"]))
        assert got.original_payment_id == auth.payment_id and got.order_reference == "CMD-HOLD"

    run(state, tmp_path, body)


def test_verify_as_a_merchant_would() -> None:
    body = b'{"event_id":"evt_1","type":"payment.paid"}'
    header = signature_header(SECRET, int(T0), body)
    assert verify(SECRET, header, body, now=T0 + 10) == int(T0)
    rotated = f"{header},v1={'0' * 64}"  # a second signature (a secret being rotated)
    assert verify(SECRET, rotated, body, now=T0) == int(T0)
    bad = [
        (SECRET, header, body + b" ", T0, "no matching v1"),  # body changed
        ("whsec_another-secret-000000000", header, body, T0, "no matching v1"),
        (SECRET, header, body, T0 + 301, "outside the tolerance"),  # a stale capture replayed
        (SECRET, header.replace("t=", "t=x"), body, T0, "needs one t="),
        (SECRET, "v1=abc", body, T0, "needs one t="),
        (SECRET, "garbage", body, T0, "malformed"),
    ]
    for secret, head, raw, now, why in bad:
        with pytest.raises(ValueError, match=why):
            verify(secret, head, raw, now=now)


# -- the body's two stored forms, the event id, the core's unit hook -----------------------------
def _encoder_body(**kw: object) -> str:
    """The body as ``json`` itself writes the documented dict (the reference)."""
    doc = {
        "event_id": kw["event_id"], "type": str(kw["event_type"]),
        "created_at": kw["stamp"], "merchant_id": kw["merchant_id"],
        "payment_id": kw["payment_id"], "original_payment_id": kw["original_payment_id"],
        "order_id": kw["order_id"], "order_reference": kw["order_reference"],
        "operation": kw["operation"], "status": str(kw["status"]), "amount": kw["amount"],
        "currency": kw["currency"], "response_code": kw["response_code"],
        "auth_code": kw["auth_code"], "masked_pan": kw["masked_pan"],
        "metadata": kw["metadata"],
    }  # fmt: skip
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def test_body_template_and_compact_form_give_the_encoders_json() -> None:
    """``build_event`` writes the body as a template, and the recorder stores a compact form
    the worker turns into JSON: both must be exactly what ``json`` makes of the same dict,
    whatever the strings hold (quotes, controls, the compact form's own separator, non-ASCII),
    and the created_at instant must survive the round trip to the millisecond."""
    rng = random.Random(7)
    alphabet = 'aZ09 -"\\/\x00\x1f\x7f\u00e9\u0623\u2028\U0001f600'

    def text(n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))

    stamps = {  # instants where float -> millisecond rounding has an edge
        T0: "2026-09-21T14:13:20.000Z",
        T0 + 0.9999996: "2026-09-21T14:13:21.000Z",
        T0 + 0.0005: "2026-09-21T14:13:20.000Z",
        T0 + 59.999: "2026-09-21T14:14:19.999Z",
    }
    for i in range(600):
        created_at = list(stamps)[i % 4] if i < 40 else T0 + rng.uniform(-4e8, 4e8)
        kw: dict[str, object] = {
            "merchant_id": text(12) + "M", "payment_id": text(8), "amount": rng.randint(0, 10**12),
            "currency": rng.randint(0, 999), "response_code": text(2),
            "masked_pan": rng.choice(["628058******1234", ""]), "created_at": created_at,
            "order_id": text(20), "order_reference": text(64), "original_payment_id": text(8),
            "operation": text(6), "auth_code": text(6), "event_id": "evt_" + text(8),
            "metadata": {text(5) + "k": text(9) for _ in range(rng.randint(0, 3))},
        }  # fmt: skip
        event_type = rng.choice(list(EventType))
        status = rng.choice(list(PaymentStatus))
        full = build_event(event_type=event_type, status=status, **kw)  # type: ignore[arg-type]
        compact = build_event(event_type=event_type, status=status, compact=True, **kw)  # type: ignore[arg-type]
        stamp = json.loads(full.body)["created_at"]
        if created_at in stamps:
            assert stamp == stamps[created_at]
        expected = _encoder_body(event_type=event_type, status=status, stamp=stamp, **kw)
        assert full.body == expected and json_body(full.body) == expected
        assert json_body(compact.body) == expected
        assert compact[:4] == full[:4] and compact.created_at == full.created_at
    plain = build_event(
        merchant_id="M", event_type=EventType.PAID, payment_id="pay_1", amount=1,
        status=PaymentStatus.CAPTURED, currency=12, response_code="00", masked_pan="",
        created_at=T0, compact=True,
    )  # fmt: skip
    assert not plain.body.startswith("{") and len(plain.body) < len(json_body(plain.body))
    with pytest.raises(ValueError, match="fields"):
        json_body(plain.body.rsplit("\x1f", 3)[0])


def test_the_recorder_uses_the_cores_hook_and_derives_the_event_id(
    state: Path, tmp_path: Path
) -> None:
    """The recorder is attached through ``SwitchCore.add_unit_observer`` (once), stores the
    payment's event in the compact form with an id from the payment id's HMAC, and the
    merchant receives the JSON; a damaged stored body is given up at once, not sent."""

    async def body(h: Harness, rec: Receiver, clock: ManualClock) -> None:
        recorder = ensure_recorder(h.core)
        assert ensure_recorder(h.core) is recorder
        with pytest.raises(ValueError, match="already attached"):
            attach(h.core, recorder)
        seen: list[Changes] = []
        h.core.add_unit_observer(seen.append)  # after the recorder: sees its rows
        sale = await h.client.sale(42_000, CARD.pan, CARD.expiry, CVV2)
        (unit,) = [u for u in seen if u.journal is not None]
        assert unit.journal is not None
        pay_id, evt_id = recorder.ids.pair(unit.journal.txn_id)
        assert sale.payment_id == pay_id and is_public_id(evt_id, "evt_")
        assert [e.event_id for e in unit.merchant_events] == [evt_id]
        (stored,) = h.core.store.query("SELECT event_id, body FROM merchant_events")
        assert stored[0] == evt_id and not str(stored[1]).startswith("{")
        w = worker(state, clock)
        try:
            assert await w.run_once() == 1
            (doc,) = rec.bodies()
            assert (doc["event_id"], doc["payment_id"], doc["amount"]) == (evt_id, pay_id, 42_000)
            assert rec.received[0][1].decode() == json_body(str(stored[1]))
            await h.client.sale(1_000, CARD.pan, CARD.expiry, CVV2)
            with SqliteMerchantOutbox(state / "switch.db") as outbox:
                outbox._write(
                    "UPDATE merchant_events SET body = ? WHERE status = 'pending'",
                    ("c1\x1fdamaged",),
                )
            assert await w.run_once() == 1
        finally:
            await close(w)
        assert len(rec.received) == 1  # the damaged one was not sent
        row = h.core.store.query(
            "SELECT status, last_error FROM merchant_events WHERE status != 'delivered'"
        )
        assert row == [("failed", "stored body: compact body has 1 fields, not 16")]

    run(state, tmp_path, body)
