"""StartVerification idempotency is durable: a merchant's retry after a restart gets the first
answer, sends no second SMS and leaves the code unchanged; concurrent calls share one code.

Everything runs over the real gRPC server on a real core and SQLite store; a restart is the
core closed and opened again on the same state directory.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest

from switch.api.testing import ECOM, Harness
from switch.api.testing import run_with_api as run
from switch.api.verification import VerificationStarts, store_key
from switch.core import demo
from switch.core.pipeline import IDEMPOTENCY_WINDOW_S
from switch.core.service import SwitchCore
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.notify.sealing import AlertSeal, is_sealed

CARD = demo.CARDS[0]
OTHER = demo.CARDS[1]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)


def sms_texts(core: SwitchCore) -> list[str]:
    """The SMS texts as the handset reads them: the codes are sealed in the outbox, opened
    here with the state directory's key as the SMS worker opens them for the SMS centre."""
    seal = AlertSeal.for_state_dir(Path(core.store.path).parent)
    rows = core.store.query("SELECT msisdn, text FROM alerts ORDER BY alert_id")
    return [seal.open(m, t).reveal() if is_sealed(t) else str(t) for m, t in rows]


def otp_rows(core: SwitchCore) -> list[tuple[object, ...]]:
    return [tuple(r) for r in core.store.query("SELECT card_id, code_hash, expires_at FROM otps")]


def code_in(sms: str) -> str:
    return next(w for w in sms.split() if w.isdigit() and len(w) == 6)


async def status_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return e.value.code(), e.value.details() or ""


def test_retry_after_a_restart_gets_the_first_answer_and_no_new_code(state: Path) -> None:
    first: list[mpb.StartVerificationResponse] = []
    before: list[tuple[object, ...]] = []

    async def start(h: Harness) -> None:
        first.append(await h.client.start_verification(CARD.pan, 250_000, idempotency_key="o1"))
        assert len(sms_texts(h.core)) == 1
        before.extend(otp_rows(h.core))
        assert len(before) == 1
        # the key is stored beside the code, under its own prefix, with no PAN in clear
        rows = h.core.store.query("SELECT key, fingerprint, result FROM idempotency")
        assert [r[0] for r in rows] == [store_key(ECOM.merchant_id, "o1")]
        assert CARD.pan not in str(rows)

    async def retry(h: Harness) -> None:
        again = await h.client.start_verification(CARD.pan, 250_000, idempotency_key="o1")
        assert again == first[0]  # same masked phone, same expiry to the nanosecond
        assert otp_rows(h.core) == before  # the code was not changed
        texts = sms_texts(h.core)
        assert len(texts) == 1  # and not sent again
        code, msg = await status_of(
            h.client.start_verification(CARD.pan, 1_000, idempotency_key="o1")
        )
        assert code is grpc.StatusCode.ALREADY_EXISTS and msg.startswith("idempotency_key:")
        code, _ = await status_of(
            h.client.start_verification(OTHER.pan, 250_000, idempotency_key="o1")
        )
        assert code is grpc.StatusCode.ALREADY_EXISTS
        assert len(sms_texts(h.core)) == 1
        # the code the cardholder got before the restart is the one that pays
        r = await h.client.sale(250_000, CARD.pan, CARD.expiry, CVV2, otp=code_in(texts[0]))
        assert r.approved, r.decline_reason

    run(state, start)
    run(state, retry)


def test_fifty_concurrent_calls_one_code_one_sms_then_a_restart(state: Path) -> None:
    answers: list[mpb.StartVerificationResponse] = []

    async def burst(h: Harness) -> None:
        got = await asyncio.gather(
            *(h.client.start_verification(CARD.pan, 1000, idempotency_key="c") for _ in range(50))
        )
        assert all(a == got[0] for a in got)
        answers.append(got[0])
        assert len(sms_texts(h.core)) == 1 and len(otp_rows(h.core)) == 1
        assert h.core.store.query("SELECT COUNT(*) FROM idempotency")[0][0] == 1

    async def burst_again(h: Harness) -> None:
        got = await asyncio.gather(
            *(h.client.start_verification(CARD.pan, 1000, idempotency_key="c") for _ in range(50))
        )
        assert all(a == answers[0] for a in got)
        assert len(sms_texts(h.core)) == 1

    run(state, burst)
    run(state, burst_again)


def test_concurrent_different_requests_on_one_key(state: Path) -> None:
    async def body(h: Harness) -> None:
        calls = [
            h.client.start_verification(pan, 1000, idempotency_key="mixed")
            for _ in range(10)
            for pan in (CARD.pan, OTHER.pan)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        ok = [r for r in results if isinstance(r, mpb.StartVerificationResponse)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(ok) == 10 and len(refused) == 10  # the first request's ten, not the other's
        assert {e.code() for e in refused} == {grpc.StatusCode.ALREADY_EXISTS}
        assert len(sms_texts(h.core)) == 1

    run(state, body)


def test_failed_start_is_not_remembered_and_keys_are_apart_from_payments(state: Path) -> None:
    async def body(h: Harness) -> None:
        code, msg = await status_of(
            h.client.start_verification(demo.REMOTE_CARD_PAN, 1000, idempotency_key="f")
        )
        assert code is grpc.StatusCode.NOT_FOUND and msg.startswith("pan:")
        # nothing was sent, so nothing was remembered: the key is free for a request that works
        ch = await h.client.start_verification(CARD.pan, 1000, idempotency_key="f")
        assert ch.masked_phone and len(sms_texts(h.core)) == 1
        # a Sale with the same key is another kind of call, not a clash
        r = await h.client.sale(1000, CARD.pan, CARD.expiry, CVV2, idempotency_key="f")
        assert r.approved and not r.replayed
        # another merchant's key of the same name is its own
        await h.other.start_verification(CARD.pan, 1000, idempotency_key="f")
        texts = sms_texts(h.core)  # code, the sale's alert, the other merchant's code
        assert len(texts) == 3 and "Station Naftal" in texts[2]

    run(state, body)


def test_a_key_past_the_idempotency_window_is_a_new_request(state: Path) -> None:
    first: list[mpb.StartVerificationResponse] = []

    async def start(h: Harness) -> None:
        first.append(await h.client.start_verification(CARD.pan, 1000, idempotency_key="old"))

    run(state, start)
    with sqlite3.connect(state / "switch.db") as db:  # the switch is stopped: age the row
        db.execute(
            "UPDATE idempotency SET created_at = created_at - ?", (IDEMPOTENCY_WINDOW_S + 60,)
        )

    async def later(h: Harness) -> None:
        again = await h.client.start_verification(CARD.pan, 1000, idempotency_key="old")
        assert again.expires_at.seconds > first[0].expires_at.seconds - 1
        assert len(sms_texts(h.core)) == 2  # a new code for what is now a new request
        replay = await h.client.start_verification(CARD.pan, 1000, idempotency_key="old")
        assert replay == again and len(sms_texts(h.core)) == 2

    run(state, later)


def test_a_cancelled_first_caller_does_not_cost_a_second_code(state: Path) -> None:
    """A caller gone (its deadline) while its code is being sent: the sending finishes, and
    the retry that follows at once joins it instead of sending another code."""

    async def go() -> None:
        core = await SwitchCore.open(state, durable=False)
        try:
            starts = VerificationStarts(core)
            merchant = core.merchant(ECOM.merchant_id)
            assert merchant is not None
            first = asyncio.create_task(starts.start(merchant, "k", CARD.pan, 1000, 12))
            await asyncio.sleep(0)  # it launched the send and waits for it
            assert starts.running() == 1
            first.cancel()
            retry = await starts.start(merchant, "k", CARD.pan, 1000, 12)
            assert first.cancelled()
            assert len(sms_texts(core)) == 1
            assert await starts.start(merchant, "k", CARD.pan, 1000, 12) == retry
            assert starts.running() == 0  # done: the answer lives in the store only
            assert len(sms_texts(core)) == 1
        finally:
            await core.close()

    asyncio.run(asyncio.wait_for(go(), 30))
