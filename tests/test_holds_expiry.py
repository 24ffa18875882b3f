"""Pre-authorization holds expire (switch/core/holds.py): a real SwitchCore on a copy of the
demo store, its clock set to chosen instants, so a hold's age is exact and nothing sleeps."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path

import grpc
import pytest

from switch.api.testing import Harness, run_with_api
from switch.config import ConfigError, load_config, parse_config
from switch.core import demo, holds
from switch.core import testing as t
from switch.core.categories import LimitCategory
from switch.core.holds import EXPIRED, expire_holds_every
from switch.core.model import AuthRequest, AuthResult, Channel, ResponseCode, TxnType
from switch.core.service import SwitchCore
from switch.store.api import StoreError
from tests.pg_server import query_state

pytestmark = pytest.mark.usefixtures("store_backend")

RC = ResponseCode
HOUR = 3600.0
# 09:00 in Algiers: hours later is still the same business day (limits are per day)
T0 = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC).timestamp()
BAL = t.CARD.balance


async def opened(state: Path, now: float = T0, config_path: Path | None = None) -> SwitchCore:
    """A core whose every "now" (the day its limits load for, request times) is ``now`` until
    a test moves it with ``at(core, ...)``."""
    config = load_config(config_path) if config_path else None
    return await SwitchCore.open(state, config=config, clock=t.ManualClock(now))


def at(core: SwitchCore, when: float) -> None:
    """Move the core's clock (the one it was opened with) to ``when``."""
    clock = core._p.clock
    assert isinstance(clock, t.ManualClock)
    clock.now = when


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))


ok = t.authorize_expecting


async def preauth(core: SwitchCore, amount: int, when: float) -> str:
    at(core, when)
    r = await ok(core, t.ecommerce(TxnType.PREAUTH, amount=amount))
    assert r.transaction_id is not None
    return r.transaction_id


def fuel_preauth(amount: int) -> AuthRequest:
    """A fuel pump's pre-authorization: POS, MCC 5541, the card's PIN."""
    return replace(
        t.withdrawal(amount=amount, terminal=t.POS),
        txn_type=TxnType.PREAUTH,
        channel=Channel.POS,
        mcc="5541",
        merchant_id=t.FUEL.merchant_id,
    )


def hold(core: SwitchCore, txn_id: str) -> tuple[int, str]:
    ((remaining, status),) = core.store.query(
        "SELECT remaining, status FROM holds WHERE txn_id = ?", (txn_id,)
    )
    return int(remaining), str(status)


def balance_held(core: SwitchCore, number: str = t.CARD.account) -> tuple[int, int]:
    ((balance, held),) = core.store.query(
        "SELECT balance, held FROM accounts WHERE number = ?", (number,)
    )
    return int(balance), int(held)


def expiry_rows(core: SwitchCore, txn_id: str) -> list[tuple[str, str, int, str]]:
    return [
        (str(a), str(b), int(c), str(d))
        for a, b, c, d in core.store.query(
            "SELECT txn_type, response_code, amount, message FROM journal "
            "WHERE original_txn_id = ? AND message LIKE 'hold expired%'",
            (txn_id,),
        )
    ]


def assert_ledger(core: SwitchCore) -> None:
    """Every posting balances, no money appears or vanishes, every account's ``held`` is the
    sum of its open holds, and an expiry is one journal row with no postings."""
    q = core.store.query
    assert q("SELECT txn_id FROM postings GROUP BY txn_id HAVING SUM(amount) != 0") == []
    assert q("SELECT SUM(balance) FROM accounts") == [(sum(c.balance for c in demo.CARDS),)]
    assert (
        q(
            "SELECT a.account_id, a.held, COALESCE(SUM(h.remaining), 0) FROM accounts a "
            "LEFT JOIN holds h ON h.account_id = a.account_id AND h.status = 'open' "
            "GROUP BY a.account_id HAVING a.held != COALESCE(SUM(h.remaining), 0)"
        )
        == []
    )
    assert q("SELECT COUNT(*) FROM holds WHERE status = ? AND remaining != 0", (EXPIRED,)) == [(0,)]
    assert (
        q(
            "SELECT h.txn_id FROM holds h LEFT JOIN journal j ON j.original_txn_id = h.txn_id "
            "AND j.message LIKE 'hold expired%' WHERE h.status = ? GROUP BY h.txn_id "
            "HAVING COUNT(j.txn_id) != 1",
            (EXPIRED,),
        )
        == []
    )
    assert (
        q(
            "SELECT p.txn_id FROM postings p JOIN journal j ON j.txn_id = p.txn_id "
            "WHERE j.message LIKE 'hold expired%'"
        )
        == []
    )
    for bal, held in q("SELECT balance, held FROM accounts WHERE kind = 'ccp'"):
        assert bal - held >= 0


# -- configuration ---------------------------------------------------------------------------
def test_validity_is_dated_product_configuration() -> None:
    sched = load_config().product("EDAHABIA_CLASSIC").schedule_on(dt.date(2026, 11, 29))
    assert (sched.preauth_validity_hours, sched.fuel_preauth_validity_hours) == (168, 48)
    limits = {c.config_name: {"daily_amount": 1, "daily_count": 1} for c in LimitCategory}
    raw = {
        "product": [
            {
                "code": "P",
                "schedule": [
                    {"effective_from": dt.date(2024, 1, 1), "limits": limits},
                    {
                        "effective_from": dt.date(2027, 1, 1),
                        "preauth_validity_hours": 72,
                        "limits": limits,
                    },
                ],
            }
        ]
    }
    p = parse_config(raw).product("P")
    old, new = p.schedule_on(dt.date(2026, 12, 31)), p.schedule_on(dt.date(2027, 1, 1))
    # defaults: 7 days, and a fuel pump's follows the schedule's own validity unless given
    assert (old.preauth_validity_hours, old.fuel_preauth_validity_hours) == (168, 168)
    assert (new.preauth_validity_hours, new.fuel_preauth_validity_hours) == (72, 72)
    raw["product"][0]["schedule"][1]["fuel_preauth_validity_hours"] = 0  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"schedule\[1\]\.fuel_preauth_validity_hours"):
        parse_config(raw)


# -- the operation ---------------------------------------------------------------------------
def test_old_preauth_released_younger_one_kept(state: Path) -> None:
    async def body() -> None:
        core = await opened(state)
        try:
            old = await preauth(core, 1_000_000, T0)
            young = await preauth(core, 400_000, T0 + 100 * HOUR)
            assert balance_held(core) == (BAL, 1_400_000)
            assert await core.expire_holds(now=T0 + 168 * HOUR - 1) == 0  # not quite 7 days
            assert await core.expire_holds(now=T0 + 168 * HOUR) == 1
            assert hold(core, old) == (0, EXPIRED)
            assert hold(core, young) == (400_000, "open")
            assert balance_held(core) == (BAL, 400_000)  # available balance restored
            [(kind, rc, amount, message)] = expiry_rows(core, old)
            assert (kind, rc, amount) == ("reversal", "00", 1_000_000)
            assert message == "hold expired: pre-authorization not completed within 168 h, released"
            # the cardholder is told, in the same unit as the release (rendered when sent)
            [(phone, alert_kind, alert_amount, available)] = core.store.query(
                "SELECT a.msisdn, a.kind, a.amount, a.available FROM alerts a "
                "JOIN journal j ON j.txn_id = a.txn_id WHERE j.original_txn_id = ? "
                "AND j.message LIKE 'hold expired%'",
                (old,),
            )
            assert (phone, alert_kind, alert_amount) == (t.CARD.phone, "hold_released", 1_000_000)
            assert available == BAL - 400_000  # what the cardholder can spend after the release
            # the merchant's payment shows the authorization given back
            pay = await core.payment(t.ECOM.merchant_id, old)
            assert pay is not None and pay.reversed == 1_000_000 and pay.captured == 0
            # the live balance the next authorization sees agrees with the store
            r = await ok(core, t.ecommerce(amount=100_000))
            assert r.available_balance == BAL - 400_000 - 100_000
            assert await core.expire_holds(now=T0 + 268 * HOUR) == 1  # the younger one's turn
            assert hold(core, young) == (0, EXPIRED)
            assert balance_held(core) == (BAL - 100_000, 0)
            assert_ledger(core)
        finally:
            await core.close()

    run(body)


def test_fuel_preauth_expires_sooner(state: Path) -> None:
    async def body() -> None:
        core = await opened(state)
        try:
            fuel = await ok(core, fuel_preauth(800_000))
            ecom = await preauth(core, 300_000, T0)
            assert fuel.transaction_id is not None
            assert await core.expire_holds(now=T0 + 48 * HOUR - 1) == 0
            assert await core.expire_holds(now=T0 + 48 * HOUR) == 1
            assert hold(core, fuel.transaction_id) == (0, EXPIRED)
            assert hold(core, ecom) == (300_000, "open")
            [(_, _, _, message)] = expiry_rows(core, fuel.transaction_id)
            assert "within 48 h" in message
            assert_ledger(core)
        finally:
            await core.close()

    run(body)


def test_pages_of_holds_not_yet_due_do_not_hide_a_due_one(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(holds, "PAGE_SIZE", 2)

    async def body() -> None:
        core = await opened(state)
        try:
            ecom = [await preauth(core, 100_000, T0) for _ in range(4)]  # 2 full pages, 168 h
            at(core, T0 + HOUR)
            fuel = await ok(core, fuel_preauth(200_000))  # alone on the 3rd page, 48 h
            assert fuel.transaction_id is not None
            assert await core.expire_holds(now=T0 + 49 * HOUR) == 1
            assert hold(core, fuel.transaction_id) == (0, EXPIRED)
            assert [hold(core, x) for x in ecom] == [(100_000, "open")] * 4
            assert await core.expire_holds(now=T0 + 168 * HOUR) == 4  # 2 pages, all due
            assert balance_held(core) == (BAL, 0)
            assert_ledger(core)
        finally:
            await core.close()

    run(body)


def test_validity_comes_from_the_configuration(state: Path, tmp_path: Path) -> None:
    text = resources.files("switch.core").joinpath("products.toml").read_text("utf-8")
    text, n = re.subn(r"preauth_validity_hours = 168", "preauth_validity_hours = 2", text)
    assert n == 1
    cfg = tmp_path / "products.toml"
    cfg.write_text(text)

    async def body() -> None:
        core = await opened(state, config_path=cfg)
        try:
            txn = await preauth(core, 500_000, T0)
            assert await core.expire_holds(now=T0 + 2 * HOUR - 1) == 0
            assert await core.expire_holds(now=T0 + 2 * HOUR) == 1
            assert hold(core, txn) == (0, EXPIRED)
        finally:
            await core.close()

    run(body)


def test_expiry_gives_the_daily_envelope_back_as_the_store_counts_it(
    state: Path, tmp_path: Path
) -> None:
    text = resources.files("switch.core").joinpath("products.toml").read_text("utf-8")
    cfg = tmp_path / "products.toml"
    cfg.write_text(text.replace("preauth_validity_hours = 168", "preauth_validity_hours = 1"))

    async def body() -> None:
        core = await opened(state, config_path=cfg)
        try:
            txn = await preauth(core, 500_000, T0)
            j = await core.store.journal_entry(txn)
            assert j is not None and j.card_id is not None
            cat = int(LimitCategory.CARD_PAYMENT)
            assert core._p.limits.usage(j.card_id, cat, j.business_day) == (500_000, 1)
            assert await core.expire_holds(now=T0 + HOUR) == 1  # same business day
            assert core._p.limits.usage(j.card_id, cat, j.business_day) == (0, 0)
            # what a restart would rebuild the counters from agrees: nothing used
            rows = [r for r in core.store.limit_usage(j.business_day) if r[0] == j.card_id]
            assert rows == [(j.card_id, j.categories, 0, 0)]
        finally:
            await core.close()

    run(body)


def test_partially_reversed_hold_releases_only_the_rest(state: Path) -> None:
    async def body() -> None:
        core = await opened(state)
        try:
            txn = await preauth(core, 1_000_000, T0)
            rev = t.follow_up(TxnType.REVERSAL, txn, 300_000, pan=t.CARD.pan)
            assert (await ok(core, rev)).approved_amount == 300_000
            assert await core.expire_holds(now=T0 + 200 * HOUR) == 1
            assert [r[2] for r in expiry_rows(core, txn)] == [700_000]
            assert balance_held(core) == (BAL, 0)
            pay = await core.payment(t.ECOM.merchant_id, txn)
            assert pay is not None and pay.reversed == 1_000_000
            assert_ledger(core)
        finally:
            await core.close()

    run(body)


def test_completion_and_void_after_expiry_declined(state: Path) -> None:
    async def body() -> None:
        core = await opened(state)
        try:
            txn = await preauth(core, 1_000_000, T0)
            assert await core.expire_holds(now=T0 + 169 * HOUR) == 1
            at(core, T0 + 170 * HOUR)
            r = await ok(
                core, t.follow_up(TxnType.COMPLETION, txn, 500_000), RC.INVALID_TRANSACTION
            )
            assert r.message == "original: pre-authorization expired, hold released"
            await ok(core, t.follow_up(TxnType.VOID, txn, 0), RC.INVALID_TRANSACTION)
            rev = await ok(core, t.follow_up(TxnType.REVERSAL, txn, 0, pan=t.CARD.pan))
            assert rev.approved_amount == 0  # nothing left to give back
            assert balance_held(core) == (BAL, 0)
            assert core.store.query("SELECT COUNT(*) FROM postings") == [(0,)]
            assert_ledger(core)
        finally:
            await core.close()

    run(body)


def test_expiry_restart_expiry_releases_nothing_more(state: Path) -> None:
    async def body() -> None:
        core = await opened(state)
        try:
            txn = await preauth(core, 1_000_000, T0)
            other = await preauth(core, 200_000, T0 + 150 * HOUR)
            assert await core.expire_holds(now=T0 + 169 * HOUR) == 1
            assert await core.expire_holds(now=T0 + 169 * HOUR) == 0  # at once: nothing more
        finally:
            await core.close()
        core = await opened(state, now=T0 + 170 * HOUR)
        try:
            assert await core.expire_holds(now=T0 + 169 * HOUR) == 0
            assert balance_held(core) == (BAL, 200_000)
            assert len(expiry_rows(core, txn)) == 1
            r = await ok(core, t.follow_up(TxnType.COMPLETION, txn, 1), RC.INVALID_TRANSACTION)
            assert "expired" in r.message
            assert await core.expire_holds(now=T0 + 318 * HOUR) == 1  # the other, in its time
            assert hold(core, other) == (0, EXPIRED)
            assert_ledger(core)
        finally:
            await core.close()

    run(body)


@pytest.mark.parametrize("restarted", [False, True], ids=["live-hold", "hold-from-store"])
@pytest.mark.parametrize("first", ["completion", "expiry"])
def test_completion_racing_expiry_applies_exactly_one(
    state: Path, first: str, restarted: bool, store_backend: str
) -> None:
    async def body() -> None:
        core = await opened(state)
        try:
            txn = await preauth(core, 1_000_000, T0)
            if restarted:  # the hold is in the store only: both sides load it
                await core.close()
                core = await opened(state)
            at(core, T0 + 169 * HOUR)
            complete = core.authorize(t.follow_up(TxnType.COMPLETION, txn, 600_000))
            expire = core.expire_holds(now=T0 + 169 * HOUR)
            if first == "completion":
                captured, released = await asyncio.gather(complete, expire)
            else:
                released, captured = await asyncio.gather(expire, complete)
            assert released in (0, 1) and isinstance(captured, AuthResult)
            assert captured.approved != bool(released), (captured, released)
            if captured.approved:
                assert hold(core, txn) == (0, "captured")
                assert balance_held(core) == (BAL - 600_000, 0)
                assert expiry_rows(core, txn) == []
            else:
                assert captured.message == "original: pre-authorization expired, hold released"
                assert hold(core, txn) == (0, EXPIRED)
                assert balance_held(core) == (BAL, 0)
            # the task started first wins: each sees the other's change in the live hold. (On
            # PostgreSQL, each side's reads of the original await round trips: either may win,
            # exactly one still applies.)
            if store_backend == "sqlite":
                assert captured.approved == (first == "completion")
            assert_ledger(core)
        finally:
            await core.close()

    run(body)


def test_merchant_api_capture_after_expiry_refused_and_payment_shows_release(
    state: Path,
) -> None:
    async def body(h: Harness) -> None:
        cvv2 = demo.cvv2(t.CARD.pan, t.CARD.expiry)
        a = await h.client.authorize(1_000_000, t.CARD.pan, t.CARD.expiry, cvv2)
        assert a.approved
        assert await h.core.expire_holds(now=time.time() + 169 * HOUR) == 1
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.client.capture(a.payment_id, 500_000)
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details() == "original: pre-authorization expired, hold released"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.client.capture(a.payment_id)  # "the whole amount": nothing is left
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        p = await h.client.get_payment(a.payment_id)
        assert (p.reversed_minor, p.captured_minor) == (1_000_000, 0)
        listed = (await h.client.list_payments()).payments
        follow_ups = [x for x in listed if x.original_payment_id == a.payment_id]
        [release] = [x for x in follow_ups if x.message.startswith("hold expired")]
        assert (release.response_code, release.amount.amount_minor) == ("00", 1_000_000)
        assert all(x.response_code != "00" for x in follow_ups if x is not release)
        assert balance_held(h.core) == (BAL, 0)

    run_with_api(state, body)


# -- the periodic task -----------------------------------------------------------------------
def test_periodic_expiry_logs_and_survives_errors(
    state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="switch.core.holds")

    async def body() -> None:
        core = await opened(state)
        try:
            txn = await preauth(core, 1_000_000, T0)
            calls = 0

            async def flaky() -> int:
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise StoreError("disk unavailable")
                return await core.expire_holds(now=T0 + 169 * HOUR)

            task = asyncio.create_task(expire_holds_every(flaky, 0.01))
            while calls < 3:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert hold(core, txn) == (0, EXPIRED)
            assert len(expiry_rows(core, txn)) == 1
        finally:
            await core.close()

    run(body)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("hold expiry failed") for m in messages), messages
    assert messages.count("released 1 expired pre-authorization hold(s)") == 1, messages


def test_switch_run_releases_an_old_hold_at_start(tmp_path: Path) -> None:
    """The wiring: ``switch run`` expires at start (then every minute) and logs the count."""
    state = tmp_path / "var"
    placed = time.time() - 8 * 24 * HOUR

    async def seed() -> str:
        core = await opened(state, now=placed)
        try:
            return await preauth(core, 1_000_000, placed)
        finally:
            await core.close()

    txn = asyncio.run(seed())
    out = tmp_path / "switch.out"
    cmd = [sys.executable, "-m", "switch.cli", "run", "--state-dir", str(state)]
    # ports 0: nothing connects, and a port picked free beforehand could be taken meanwhile
    cmd += ["--iso-port", "0", "--grpc-port", "0", "--sms-worker", "off"]
    cmd += ["--http-port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while "released 1 expired pre-authorization hold(s)" not in out.read_text("utf-8"):
            assert proc.poll() is None, out.read_text("utf-8")
            assert time.monotonic() < deadline, out.read_text("utf-8")
            time.sleep(0.1)
        row = query_state(state, "SELECT remaining, status FROM holds WHERE txn_id = ?", (txn,))
        assert row == [(0, EXPIRED)]
        held = query_state(state, "SELECT held FROM accounts WHERE number = ?", (t.CARD.account,))
        assert held == [(0,)]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, out.read_text("utf-8")
