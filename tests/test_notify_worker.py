"""The outbox worker against the project's real SQLite store and a real SMPP peer.

Time is a controlled clock so back-off can be checked without sleeping; the store, the SMPP
peer and the transport are the real ones over a temp file and TCP.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from switch.notify.console import ConsoleTransport, read_console_file
from switch.notify.messages import render_alert
from switch.notify.outbox import Alert
from switch.notify.smpp import SmppTransport
from switch.notify.transport import TransportError
from switch.notify.worker import AlertWorker, RetryPolicy, reference_for
from switch.store import SwitchStore
from switch.store import open_store as open_switch_store
from switch.store.api import AlertRow, Changes
from tests.smpp_peer import SmppPeer

T = TypeVar("T")
T0 = 1_800_000_000.0
WHEN = datetime(2026, 11, 29, 13, 5, tzinfo=UTC)
POLICY = RetryPolicy(base=10.0, cap=60.0, jitter=0.5, max_attempts=4)
pytestmark = pytest.mark.usefixtures("store_backend")  # the SQLite and PostgreSQL outboxes


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout=120)

    return asyncio.run(bounded())


async def open_store(tmp_path: Path, alerts: int, now: float = T0) -> SwitchStore:
    # the state directory's SQLite file, or SWITCH_STORE's PostgreSQL database (store_backend)
    store = open_switch_store(None, tmp_path, durable=False)
    await store.open()
    rows = [
        AlertRow(
            msisdn=f"+21355000{i:04d}",
            text=render_alert("withdrawal", "***1234", 100_000 * (i + 1), 12, "GAB", WHEN, i),
            txn_id=f"txn-{i}",
            created_at=now,
        )
        for i in range(alerts)
    ]
    if rows:
        await store.commit(Changes(alerts=rows))
    return store


def alert_rows(store: SwitchStore) -> list[tuple[object, ...]]:
    return store.query(
        "SELECT alert_id, status, attempts, next_attempt_at, carrier_id, last_error "
        "FROM alerts ORDER BY alert_id"
    )


@pytest.fixture
def peer() -> Iterator[SmppPeer]:
    p = SmppPeer()
    yield p
    p.stop()


def smpp(peer: SmppPeer) -> SmppTransport:
    return SmppTransport("127.0.0.1", peer.port, system_id="switch", password="secret", timeout=30)


def test_alerts_go_out_through_the_console_file_and_are_marked_sent(tmp_path: Path) -> None:
    out = tmp_path / "state" / "sms.log"

    async def scenario() -> None:
        store = await open_store(tmp_path, 3)
        worker = AlertWorker(store, ConsoleTransport(out), clock=Clock())
        try:
            assert await worker.run_once() == 3
            assert await worker.run_once() == 0
            rows = alert_rows(store)
            assert [r[1:3] for r in rows] == [("sent", 1)] * 3
            assert [r[4] for r in rows] == [f"console-alert-{r[0]}" for r in rows]
            texts = [t for (t,) in store.query("SELECT text FROM alerts ORDER BY alert_id")]
        finally:
            worker.close()
            await store.close()
        lines = read_console_file(out)
        assert [line[1] for line in lines] == [reference_for(int(r[0])) for r in rows]  # type: ignore[call-overload]
        assert [line[3] for line in lines] == texts
        assert all("\n" in line[3] for line in lines)  # bilingual text kept, one line each

    run(scenario)


def test_retries_with_exponential_backoff_then_delivers_once(
    tmp_path: Path, peer: SmppPeer
) -> None:
    clock = Clock()

    async def scenario() -> None:
        store = await open_store(tmp_path, 1)
        worker = AlertWorker(store, smpp(peer), policy=POLICY, clock=clock, rng=random.Random(3))
        try:
            peer.reject_next(1)
            peer.drop_next(1)
            assert await worker.run_once() == 1  # the peer drops the connection
            [(_, status, attempts, next_at, _, error)] = alert_rows(store)
            assert (status, attempts) == ("pending", 1) and "ConnectionError" in str(error)
            first_delay = float(next_at) - clock.now  # type: ignore[arg-type]
            assert 5.0 <= first_delay <= 10.0
            assert await worker.run_once() == 0  # not due yet: no resend before the back-off
            clock.now = float(next_at) + 0.001  # type: ignore[arg-type]
            assert await worker.run_once() == 1  # rebinds, then refused: 0x58 throttled
            [(_, status, attempts, next_at, _, error)] = alert_rows(store)
            assert "0x00000058" in str(error)
            second_delay = float(next_at) - clock.now  # type: ignore[arg-type]
            assert (status, attempts) == ("pending", 2) and 10.0 <= second_delay <= 20.0
            clock.now = float(next_at) + 0.001  # type: ignore[arg-type]
            assert await worker.run_once() == 1
            [(_, status, attempts, _, carrier_id, _)] = alert_rows(store)
            assert (status, attempts) == ("sent", 3)
        finally:
            worker.close()
            await store.close()
        assert len(peer.messages) == 1
        assert carrier_id == ",".join(peer.messages[0].message_ids)
        assert len(peer.binds) == 2  # rebound after the drop, kept after the refusal

    run(scenario)


def test_parked_after_max_attempts(tmp_path: Path, peer: SmppPeer) -> None:
    clock = Clock()

    async def scenario() -> None:
        store = await open_store(tmp_path, 1)
        worker = AlertWorker(store, smpp(peer), policy=POLICY, clock=clock, rng=random.Random(1))
        peer.reject_next(100)
        try:
            for attempt in range(1, POLICY.max_attempts + 1):
                assert await worker.run_once() == 1
                [(_, status, attempts, next_at, _, _)] = alert_rows(store)
                assert attempts == attempt
                clock.now = float(next_at) + 0.001  # type: ignore[arg-type]
            assert status == "parked"
            clock.now += 10 * 86400
            assert await worker.run_once() == 0
        finally:
            worker.close()
            await store.close()
        assert worker.stats.parked == 1 and worker.stats.sent == 0
        assert len(peer.submits) == POLICY.max_attempts and peer.messages == []

    run(scenario)


def test_many_alerts_each_delivered_exactly_once_by_the_running_worker(
    tmp_path: Path, peer: SmppPeer
) -> None:
    async def scenario() -> None:
        store = await open_store(tmp_path, 25, now=time.time())
        worker = AlertWorker(store, smpp(peer), batch_size=7, poll_interval=0.02)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await store.commit(
                Changes(alerts=[AlertRow("+213550009999", "late one", "txn-late", time.time())])
            )
            deadline = time.monotonic() + 45
            while len(peer.messages) < 26 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)  # give a duplicate every chance to show up
            stop.set()
            await task
            rows = alert_rows(store)
            texts = dict(store.query("SELECT alert_id, text FROM alerts"))
        finally:
            stop.set()
            worker.close()
            await store.close()
        assert [r[1] for r in rows] == ["sent"] * 26
        refs = [int(m.user_message_reference or 0) for m in peer.messages]
        assert sorted(refs) == sorted(int(r[0]) for r in rows)  # type: ignore[call-overload]
        assert {m.user_message_reference: m.text for m in peer.messages} == texts

    run(scenario)


class CrashAfterSend(Exception):
    pass


class CrashingOutbox:
    """The real store, but the process 'dies' when it tries to mark the alert sent."""

    def __init__(self, store: SwitchStore) -> None:
        self.store = store

    def claim_due_alerts(self, now: float, limit: int) -> list[Alert]:
        return self.store.claim_due_alerts(now, limit)

    def mark_alerts_sent(self, sent: Sequence[tuple[int, str]], now: float) -> None:
        raise CrashAfterSend

    def mark_alert_failed(
        self, alert_id: int, error: str, next_attempt_at: float, give_up: bool
    ) -> None:
        self.store.mark_alert_failed(alert_id, error, next_attempt_at, give_up)


def test_crash_between_send_and_mark_resends_with_the_same_reference(
    tmp_path: Path, peer: SmppPeer
) -> None:
    async def scenario() -> None:
        store = await open_store(tmp_path, 1)
        try:
            crashing = AlertWorker(CrashingOutbox(store), smpp(peer), clock=Clock())
            with pytest.raises(CrashAfterSend):
                await crashing.run_once()
            crashing.close()
            assert [r[1] for r in alert_rows(store)] == ["pending"]  # not lost
            restarted = AlertWorker(store, smpp(peer), clock=Clock())
            assert await restarted.run_once() == 1
            restarted.close()
            [(alert_id, status, *_)] = alert_rows(store)
        finally:
            await store.close()
        assert status == "sent"
        # At-least-once across that crash: the repeat carries the same dedupe key.
        assert [m.user_message_reference for m in peer.messages] == [alert_id, alert_id]

    run(scenario)


class ExplodingTransport:
    shows_secrets = False

    def __init__(self) -> None:
        self.calls = 0

    def send(self, msisdn: str, text: str, reference: str) -> str:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("bug in a transport")
        if self.calls == 2:
            raise TransportError("SMSC busy")
        return "id-1"

    def close(self) -> None:
        return None


def test_unexpected_transport_exceptions_are_retried_not_fatal(tmp_path: Path) -> None:
    clock = Clock()

    async def scenario() -> None:
        store = await open_store(tmp_path, 1)
        transport = ExplodingTransport()
        worker = AlertWorker(store, transport, policy=POLICY, clock=clock)
        try:
            for _ in range(3):
                assert await worker.run_once() == 1
                clock.now += POLICY.cap + 1
            rows = alert_rows(store)
        finally:
            worker.close()
            await store.close()
        assert [r[1:3] for r in rows] == [("sent", 3)]
        assert worker.stats.errors == ["RuntimeError: bug in a transport", "SMSC busy"]

    run(scenario)


def test_retry_policy_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(base=2.0, cap=30.0, jitter=0.25, max_attempts=5)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (40, 30.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(ceiling * 0.75 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling * 0.1  # really jittered
    assert RetryPolicy(jitter=0.0).delay(3, rng) == 20.0
    for bad in ({"base": 0.0}, {"cap": 1.0}, {"jitter": 2.0}, {"max_attempts": 0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


def test_link_down_stops_the_batch_and_spends_one_attempt_not_all(
    tmp_path: Path, peer: SmppPeer
) -> None:
    clock = Clock()

    async def scenario() -> None:
        store = await open_store(tmp_path, 5)
        worker = AlertWorker(store, smpp(peer), policy=POLICY, clock=clock, rng=random.Random(2))
        peer.fail_binds(2)
        try:
            assert await worker.run_once() == 1  # bind refused: stop right there
            assert [r[2] for r in alert_rows(store)] == [1, 0, 0, 0, 0]
            assert worker.link_failures == 1
            assert await worker.run_once() == 1
            assert [r[2] for r in alert_rows(store)] == [1, 1, 0, 0, 0]
            assert worker.link_failures == 2
            assert await worker.run_once() == 3  # link back: the rest go out
            assert worker.link_failures == 0
            clock.now += POLICY.cap + 1
            assert await worker.run_once() == 2
            rows = alert_rows(store)
        finally:
            worker.close()
            await store.close()
        assert [r[1] for r in rows] == ["sent"] * 5
        assert sorted(int(m.user_message_reference or 0) for m in peer.messages) == [
            int(r[0])  # type: ignore[call-overload]
            for r in rows
        ]

    run(scenario)


def test_a_refused_message_does_not_stop_the_batch(tmp_path: Path, peer: SmppPeer) -> None:
    async def scenario() -> None:
        store = await open_store(tmp_path, 3)
        worker = AlertWorker(store, smpp(peer), policy=POLICY, clock=Clock())
        peer.reject_next(1)
        try:
            assert await worker.run_once() == 3
            rows = alert_rows(store)
        finally:
            worker.close()
            await store.close()
        assert [r[1:3] for r in rows] == [("pending", 1), ("sent", 1), ("sent", 1)]
        assert worker.link_failures == 0

    run(scenario)


def test_running_worker_backs_off_while_the_link_is_down(tmp_path: Path, peer: SmppPeer) -> None:
    async def scenario() -> None:
        store = await open_store(tmp_path, 20, now=time.time())
        policy = RetryPolicy(base=0.2, cap=5.0, jitter=0.0, max_attempts=50)
        worker = AlertWorker(store, smpp(peer), policy=policy, poll_interval=0.01)
        peer.fail_binds(1000)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        t0 = time.monotonic()
        try:
            # The third bind comes after 0.2 + 0.4 s of back-off: without back-off it would
            # come ~20 ms in (poll_interval 0.01). Only this lower bound holds under any load
            # (a count of binds within a fixed sleep does not: a slow start gives fewer).
            deadline = t0 + 30
            while len(peer.binds) < 3:
                assert time.monotonic() < deadline, f"{len(peer.binds)} binds in 30 s"
                await asyncio.sleep(0.01)
            third_bind_after = time.monotonic() - t0
            peer.heal()  # the SMS centre is back
            deadline = time.monotonic() + 45
            while len(peer.messages) < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
            worker.close()
            await store.close()
        assert third_bind_after >= 0.2 + 0.4
        assert len(peer.messages) == 20

    run(scenario)


class BrokenOutbox:
    """An outbox whose database is gone."""

    def __init__(self) -> None:
        self.claims: list[float] = []  # time.monotonic() of each claim

    def claim_due_alerts(self, now: float, limit: int) -> list[Alert]:
        self.claims.append(time.monotonic())
        raise OSError("disk I/O error")

    def mark_alerts_sent(self, sent: Sequence[tuple[int, str]], now: float) -> None:
        raise AssertionError("never reached")

    def mark_alert_failed(
        self, alert_id: int, error: str, next_attempt_at: float, give_up: bool
    ) -> None:
        raise AssertionError("never reached")


def test_outbox_errors_keep_the_worker_alive_with_back_off(tmp_path: Path) -> None:
    async def scenario() -> None:
        outbox = BrokenOutbox()
        policy = RetryPolicy(base=0.2, cap=5.0, jitter=0.0)
        worker = AlertWorker(outbox, ConsoleTransport(tmp_path / "sms.log"), policy=policy,
                             poll_interval=0.01)  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 30
        while len(outbox.claims) < 3:
            assert time.monotonic() < deadline, f"{len(outbox.claims)} claims in 30 s"
            await asyncio.sleep(0.01)
        stop.set()
        await task
        worker.close()
        # 0.2 then 0.4 s between claims, not one claim per 10 ms: gaps, the lower bounds that
        # hold under any load (not a count of claims within a fixed sleep).
        first, second, third = outbox.claims[:3]
        assert second - first >= 0.2 - 1e-3 and third - second >= 0.4 - 1e-3

    run(scenario)


class SlowTransport:
    """Each send takes 20 s of the test's clock (a slow SMS centre)."""

    shows_secrets = False

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[str] = []

    def send(self, msisdn: str, text: str, reference: str) -> str:
        self.clock.now += 20.0
        self.sent.append(reference)
        return f"id-{reference}"

    def close(self) -> None:
        return None


def test_a_batch_starts_no_send_past_its_time_limit(tmp_path: Path) -> None:
    """A PostgreSQL claim leases its rows for ``CLAIM_LEASE_S``: a batch that ran long must
    stop before another node's worker may take its rows; the rest goes out next time."""
    clock = Clock()

    async def scenario() -> None:
        store = await open_store(tmp_path, 3)
        transport = SlowTransport(clock)
        worker = AlertWorker(store, transport, clock=clock, batch_time_limit=30.0)
        try:
            assert await worker.run_once() == 2  # sends at +0 and +20; +40 is too late
            assert [r[1] for r in alert_rows(store)] == ["sent", "sent", "pending"]
            assert await worker.run_once() == 1  # the third is given back, due at once
            assert [r[1:3] for r in alert_rows(store)] == [("sent", 1)] * 3
        finally:
            worker.close()
            await store.close()
        assert len(transport.sent) == len(set(transport.sent)) == 3

    run(scenario)
