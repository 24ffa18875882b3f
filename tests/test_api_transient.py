"""A transient failure is never a key's answer: "UNAVAILABLE: retry with the same key" works.

A real ``switch hsm serve`` (subprocess, free port) under a ``SwitchCore`` that reaches it over
TCP, with the merchant gRPC API in process: the HSM is stopped, a Sale answers UNAVAILABLE, the
HSM comes back on the same port, and the very same request (same idempotency key) is then
processed -- once: one posting, one journal approval, one SMS -- and a further retry is a
replay. The ISO 8583 side likewise: a retransmission after a 96 is processed again, and PINs
sent while the HSM is down cost the cardholder no PIN try.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from switch.api.testing import Harness, serve_api
from switch.core import demo
from switch.core import testing as t
from switch.core.context import fingerprint, idempotency_key
from switch.core.model import AuthResult, ResponseCode
from switch.core.results import encode_result
from switch.core.service import SwitchCore
from switch.hsm.tcp_client import TcpHsmClient

CARD = demo.CARDS[0]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)
T0 = dt.datetime(2026, 6, 15, 9, 0, tzinfo=dt.UTC).timestamp()
READY = b"HSM listening on 127.0.0.1:"


@dataclass
class Hsm:
    """``switch hsm serve`` on the state directory's LMK, stopped and started at will."""

    state: Path
    port: int = 0
    proc: asyncio.subprocess.Process | None = None
    drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start it (on the port of the first start) and return once it listens."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "switch.cli", "hsm", "serve", "--port", str(self.port),
            "--state-dir", str(self.state),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        self.proc = proc
        while READY not in (line := await proc.stdout.readline()):
            assert line, "switch hsm serve exited before listening"
        self.port = int(line.split(READY, 1)[1].split(b",", 1)[0])
        self.drain = asyncio.create_task(self._drain(proc.stdout))

    @staticmethod
    async def _drain(out: asyncio.StreamReader) -> None:
        while await out.readline():
            pass

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self.drain is not None:
            await self.drain
        self.proc = self.drain = None


@asynccontextmanager
async def switch_on_tcp_hsm(state: Path) -> AsyncIterator[tuple[Harness, Hsm]]:
    hsm = Hsm(state)
    await hsm.start()
    client = TcpHsmClient("127.0.0.1", hsm.port, timeout=30.0)
    core = await SwitchCore.open(state, hsm=client, durable=False, clock=t.ManualClock(T0))
    try:
        async with serve_api(core) as h:
            yield h, hsm
    finally:
        await core.close()
        await client.close()
        await hsm.stop()


def run(state: Path, body: Callable[[Harness, Hsm], Awaitable[None]]) -> None:
    async def go() -> None:
        async with switch_on_tcp_hsm(state) as (h, hsm):
            await asyncio.wait_for(body(h, hsm), 60)

    asyncio.run(go())


def count(core: SwitchCore, sql: str, *args: object) -> int:
    return int(core.store.query(sql, args)[0][0])


async def status_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return e.value.code(), e.value.details() or ""


def test_sale_unavailable_while_the_hsm_is_down_then_approved_once_with_the_same_key(
    state: Path,
) -> None:
    async def body(h: Harness, hsm: Hsm) -> None:
        core = h.core
        await hsm.stop()
        for _ in range(2):  # a retry while still down is not a replay of the first failure
            code, msg = await status_of(
                h.client.sale(250_000, CARD.pan, CARD.expiry, CVV2, idempotency_key="down-1")
            )
            assert code is grpc.StatusCode.UNAVAILABLE and "retry" in msg, msg
        assert count(core, "SELECT COUNT(*) FROM idempotency WHERE key LIKE 'api:%'") == 0
        assert count(core, "SELECT COUNT(*) FROM postings") == 0

        await hsm.start()
        first = await h.client.sale(250_000, CARD.pan, CARD.expiry, CVV2, idempotency_key="down-1")
        assert first.approved and not first.replayed, first
        again = await h.client.sale(250_000, CARD.pan, CARD.expiry, CVV2, idempotency_key="down-1")
        assert again.replayed and again.payment_id == first.payment_id
        assert again.auth_code == first.auth_code
        # the refused attempts are the operator's: the merchant sees the one payment
        assert [p.payment_id for p in (await h.client.list_payments()).payments] == [
            first.payment_id
        ]

        assert count(core, "SELECT COUNT(DISTINCT txn_id) FROM postings") == 1
        assert count(core, "SELECT COUNT(*) FROM journal WHERE response_code = '00'") == 1
        assert count(core, "SELECT COUNT(*) FROM alerts") == 1
        (txn_id,) = core.store.query(  # the journal id behind the opaque payment id
            "SELECT txn_id FROM payment_orders WHERE payment_id = ?", (first.payment_id,)
        )[0]
        assert count(core, "SELECT COUNT(*) FROM alerts WHERE txn_id = ?", txn_id) == 1
        balance = count(core, "SELECT balance FROM accounts WHERE number = ?", CARD.account)
        assert balance == CARD.balance - 250_000

    run(state, body)


def test_iso_retransmission_after_a_96_is_processed_again_and_costs_no_pin_try(
    state: Path,
) -> None:
    async def body(h: Harness, hsm: Hsm) -> None:
        core = h.core
        await hsm.stop()
        w = t.withdrawal(amount=500_000)
        r = await core.authorize(w)
        assert r.response_code is ResponseCode.SYSTEM_MALFUNCTION and not r.replayed
        # More PINs than the product allows tries, right and wrong, while the HSM is down:
        # none of them is a wrong PIN, the HSM never said so.
        for pin in (CARD.pin, "0000", "0000", "0000"):
            other = t.withdrawal(amount=100_000, pin=pin)
            assert (await core.authorize(other)).response_code is ResponseCode.SYSTEM_MALFUNCTION
        again = await core.authorize(w)  # the ATM's retransmission, still down
        assert again.response_code is ResponseCode.SYSTEM_MALFUNCTION and not again.replayed
        assert count(core, "SELECT COUNT(*) FROM idempotency") == 0
        assert count(core, "SELECT pin_tries FROM cards WHERE pan_last4 = ?", CARD.pan[-4:]) == 0

        await hsm.start()
        ok = await core.authorize(w)  # the retransmission after recovery: processed
        assert ok.response_code is ResponseCode.APPROVED and not ok.replayed, ok
        replay = await core.authorize(w)
        assert replay.replayed and replay.transaction_id == ok.transaction_id
        # the PIN tries are intact: a wrong PIN now is the first of three
        wrong = await core.authorize(t.withdrawal(amount=100_000, pin="0000"))
        assert wrong.response_code is ResponseCode.INCORRECT_PIN
        assert count(core, "SELECT pin_tries FROM cards WHERE pan_last4 = ?", CARD.pan[-4:]) == 1
        assert count(core, "SELECT COUNT(DISTINCT txn_id) FROM postings") == 1
        # a reversal of the approved withdrawal finds it by its STAN (the key is the approval's)
        rev = await core.authorize(t.reversal_of(w))
        assert rev.approved and rev.approved_amount == 500_000, rev

    run(state, body)


def test_a_96_stored_by_an_earlier_release_is_processed_afresh(state: Path) -> None:
    """Stores upgraded in place still hold keys whose answer is a 96: not replayed either."""
    req = t.ecommerce(key="stuck-1")
    key = idempotency_key(req)

    async def remember_96(core: SwitchCore) -> None:  # what the earlier release committed
        fp = fingerprint(req, core._p.pan_hash(req.pan))
        first = AuthResult(ResponseCode.SYSTEM_MALFUNCTION, "HSM error UN", transaction_id="9")
        with sqlite3.connect(core.store.path) as db:
            db.execute(
                "INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)",
                (key, fp, "9", encode_result(first), T0),
            )

    async def retry(core: SwitchCore) -> None:
        ok = await core.authorize(req)
        assert ok.approved and not ok.replayed, ok
        again = await core.authorize(req)
        assert again.replayed and again.transaction_id == ok.transaction_id
        assert count(core, "SELECT COUNT(DISTINCT txn_id) FROM postings") == 1

    t.run_core(state, remember_96, durable=False, clock=t.ManualClock(T0))
    t.run_core(state, retry, durable=False, clock=t.ManualClock(T0 + 60))  # a restart
