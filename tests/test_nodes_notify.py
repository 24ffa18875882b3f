"""Nodes told which rows another node wrote (PostgreSQL ``NOTIFY``, issue 13,
docs/architecture.md §7 "A conflict is not an answer"): two ``SwitchCore`` instances on one
real PostgreSQL. After node A's withdrawal, node B's live copy of the account is reloaded
from A's notification, so B's next withdrawal on it is decided on A's balance without a
conflict; with the listener off (a lost notification) the guard refuses B's stale unit and
the conflict path still gives the right answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from switch.core.model import ResponseCode
from switch.core.service import SwitchCore
from switch.core.testing import CARD, RICH_CARD, ManualClock, withdrawal
from switch.store import postgres_notify
from switch.store.postgres import PostgresStore

RC = ResponseCode
NOW = 1_796_000_000.0  # a fixed instant (2026-11-30), never the wall clock
FEE = 3_000  # 30 DZD on our own ATM (products.toml)
AMOUNT = 200_000
DEADLINE_S = 60.0


@pytest.fixture
def pg_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``SWITCH_STORE`` names a fresh database of the session's PostgreSQL, dropped after."""
    server = request.getfixturevalue("pg_server")
    db = server.create_database(server.migrated())
    monkeypatch.setenv("SWITCH_STORE", server.url(db))
    yield None
    server.drop_database(db)


def two_nodes(state: Path, body: Callable[[SwitchCore, SwitchCore], Awaitable[None]]) -> None:
    async def go() -> None:
        clock = ManualClock(NOW)
        a = await SwitchCore.open(state, durable=False, clock=clock, shared=True)
        try:
            b = await SwitchCore.open(state, durable=False, clock=clock, shared=True)
            try:
                assert isinstance(a.store, PostgresStore)
                await asyncio.wait_for(body(a, b), 120)
            finally:
                await b.close()
        finally:
            await a.close()

    asyncio.run(go())


def account_row(core: SwitchCore, number: str = CARD.account) -> tuple[int, int, int]:
    """``(account_id, balance, version)`` of an account (CARD's) in the store."""
    ((aid, balance, version),) = core.store.query(
        "SELECT account_id, balance, version FROM accounts WHERE number = ?", (number,)
    )
    return int(aid), int(balance), int(version)


def card_versions(core: SwitchCore, account_id: int) -> dict[int, int]:
    rows = core.store.query(
        "SELECT card_id, version FROM cards WHERE account_id = ?", (account_id,)
    )
    return {int(c): int(v) for c, v in rows}


async def caught_up(core: SwitchCore, account_id: int, version: int) -> None:
    """Poll (deadline, no fixed sleep) until ``core``'s live copies of the account and its
    cards have the store's versions (the account's: ``version``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE_S
    cards = card_versions(core, account_id)
    while True:
        live = core._p.accounts.get(account_id)
        assert live is not None
        live_cards = {i: c.version for i in cards if (c := core._p.cards_by_id.get(i))}
        if live.version == version and all(cards[i] == v for i, v in live_cards.items()):
            return
        assert loop.time() < end, "the other node's notification never reloaded the copy"
        await asyncio.sleep(0.01)


@pytest.mark.usefixtures("pg_store")
def test_notification_reloads_the_other_nodes_copy(state: Path) -> None:
    async def body(a: SwitchCore, b: SwitchCore) -> None:
        # both nodes have the account live
        for node in (b, a):
            r = await node.authorize(withdrawal(CARD.pan, AMOUNT, CARD.pin))
            assert r.response_code is RC.APPROVED, r
        aid, _, version = account_row(a)
        await caught_up(b, aid, version)  # A's withdrawal reached B by its notification
        live = b._p.accounts[aid]
        assert live.balance == CARD.balance - 2 * (AMOUNT + FEE)
        before = b._p.conflicts
        r = await b.authorize(withdrawal(CARD.pan, AMOUNT, CARD.pin))
        assert r.response_code is RC.APPROVED, r
        assert b._p.conflicts == before  # decided on A's balance: no redo
        assert b._p.reloads >= 1
        _, balance, _ = account_row(a)
        assert balance == CARD.balance - 3 * (AMOUNT + FEE)
        # and back: A hears of B's withdrawal the same way
        _, _, version = account_row(a)
        await caught_up(a, aid, version)
        before = a._p.conflicts
        r = await a.authorize(withdrawal(CARD.pan, AMOUNT, CARD.pin))
        assert r.response_code is RC.APPROVED, r
        assert a._p.conflicts == before
        _, balance, _ = account_row(a)
        assert balance == CARD.balance - 4 * (AMOUNT + FEE)

    two_nodes(state, body)


@pytest.mark.usefixtures("pg_store")
def test_notification_brings_the_daily_usage(state: Path) -> None:
    """50,000 DZD of ATM cash a day: A takes it all after B made the card live; once B heard
    of it, B declines the next withdrawal on its own usage (reloaded with the account), not
    by a conflict -- a reloaded account without its cards' usage would approve it."""

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        r = await b.authorize(withdrawal(RICH_CARD.pan, 1_000_000, RICH_CARD.pin))
        assert r.response_code is RC.APPROVED, r
        for _ in range(4):
            r = await a.authorize(withdrawal(RICH_CARD.pan, 1_000_000, RICH_CARD.pin))
            assert r.response_code is RC.APPROVED, r
        aid, _, version = account_row(a, RICH_CARD.account)
        await caught_up(b, aid, version)
        before = b._p.conflicts
        r = await b.authorize(withdrawal(RICH_CARD.pan, 100_000, RICH_CARD.pin))
        assert r.response_code is RC.EXCEEDS_AMOUNT_LIMIT, r
        assert b._p.conflicts == before
        _, balance, _ = account_row(a, RICH_CARD.account)
        assert balance == RICH_CARD.balance - 5 * (1_000_000 + FEE)

    two_nodes(state, body)


@pytest.mark.usefixtures("pg_store")
def test_listener_reconnects_after_its_session_is_terminated(state: Path) -> None:
    """The listening session killed on the server: the watcher listens again on a new
    connection and B hears of A's next withdrawal (what was committed in between is left to
    the guards)."""

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        assert isinstance(b.store, PostgresStore)
        watcher = b.store._watcher
        assert watcher is not None and watcher._conn is not None
        pid = watcher._conn.get_server_pid()
        a.store.query("SELECT pg_terminate_backend(?)", (pid,))
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE_S
        while watcher.connects < 2:
            assert loop.time() < end, "the listener never reconnected"
            await asyncio.sleep(0.01)
        for node in (b, a):
            r = await node.authorize(withdrawal(CARD.pan, AMOUNT, CARD.pin))
            assert r.response_code is RC.APPROVED, r
        aid, _, version = account_row(a)
        await caught_up(b, aid, version)
        before = b._p.conflicts
        r = await b.authorize(withdrawal(CARD.pan, AMOUNT, CARD.pin))
        assert r.response_code is RC.APPROVED, r
        assert b._p.conflicts == before

    two_nodes(state, body)


def test_payloads_cut_below_the_limit_and_parse_back() -> None:
    """A batch's rows in notifications under PostgreSQL's 8,000 bytes, each parsed back."""
    from switch.store.api import GUARD_ACCOUNT, GUARD_CARD, Changes

    units = []
    for i in range(1, 1_001):
        ch = Changes()
        ch.guards.append((GUARD_ACCOUNT, i, 7, 1_000_000_000 + i))
        ch.guards.append((GUARD_CARD, 10_000 + i, 5, 5))  # only read: not announced
        units.append(ch)
    notes = postgres_notify.payloads("n1", units)
    assert len(notes) > 1
    accounts: dict[int, int] = {}
    for note in notes:
        assert len(note.encode()) < 8_000
        got = postgres_notify.parse(note)
        assert got is not None
        node, a, c = got
        assert node == "n1" and c == {}
        accounts.update(a)
    assert accounts == {i: 1_000_000_000 + i for i in range(1, 1_001)}
    assert postgres_notify.parse("not|ours") is None


@pytest.mark.usefixtures("pg_store")
def test_lost_notification_still_answers_right(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No listener (as if every notification were lost): B's copy stays stale, its unit is
    refused by the guard, reloaded and decided again -- the right balance either way."""
    monkeypatch.setattr("switch.core.service.LISTEN", False)

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        for node in (b, a):
            r = await node.authorize(withdrawal(CARD.pan, AMOUNT, CARD.pin))
            assert r.response_code is RC.APPROVED, r
        before = b._p.conflicts
        r = await b.authorize(withdrawal(CARD.pan, AMOUNT, CARD.pin))
        assert r.response_code is RC.APPROVED, r
        assert b._p.conflicts == before + 1  # its copy was stale: refused, then redone
        assert b._p.reloads == 0
        aid, balance, _ = account_row(a)
        assert balance == CARD.balance - 3 * (AMOUNT + FEE)
        assert b._p.accounts[aid].balance == balance

    two_nodes(state, body)
