"""The one-round-trip guarded commit on PostgreSQL (``switch.store.postgres_onetrip``).

A batch whose units all pass their guards is written by one call of the server-side
function; a batch where the database moved under a guard (another node's write, a key
another node answered) writes nothing through the function and goes through the slow path,
which refuses exactly the stale units. Real PostgreSQL (the session's test server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest

from switch.core import testing as t
from switch.store.api import (
    GUARD_ACCOUNT,
    GUARD_CARD,
    AlertRow,
    Changes,
    Conflict,
    IdempotencyExpect,
    IdempotencyRow,
    MerchantEventRow,
    PaymentOrderRow,
)
from switch.store.postgres import PostgresStore
from switch.store.postgres_onetrip import FUNCTION_NAME
from switch.store.postgres_sql import NUL, SEP, Unpackable, pack_columns
from tests.pg_server import PgServer

T0 = 1_790_000_000.0  # a fixed instant: the tests never read the wall clock


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    db = pg_server.create_database(pg_server.migrated())
    yield pg_server.url(db)
    pg_server.drop_database(db)


def _run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


async def _opened(state: Path, url: str) -> PostgresStore:
    await asyncio.to_thread(
        t.run_core, state, lambda core: asyncio.sleep(0), store_spec=url, durable=False
    )  # fmt: skip  (migrated and seeded)
    store = PostgresStore(url, durable=False)
    await store.open()
    return store


def _two_accounts(store: PostgresStore) -> tuple[int, int]:
    rows = store.query("SELECT account_id FROM accounts WHERE kind = 'ccp' ORDER BY account_id")
    return int(str(rows[0][0])), int(str(rows[1][0]))


def _unit(account: int, expected: int, new: int, balance: int) -> Changes:
    return Changes(
        accounts=[(account, balance, 0)], guards=[(GUARD_ACCOUNT, account, expected, new)]
    )


def test_a_passing_batch_is_one_call_and_chains_versions(state: Path, pg_url: str) -> None:
    async def body() -> None:
        store = await _opened(state, pg_url)
        try:
            assert store.query("SELECT 1 FROM pg_proc WHERE proname = ?", (FUNCTION_NAME,))
            a, b = _two_accounts(store)
            card = await store.card_by_id(1)
            assert card is not None
            units = [
                _unit(a, 0, 21, 100),
                _unit(a, 21, 22, 90),  # decided on the first unit's result
                _unit(b, 0, 23, 7),
                Changes(
                    cards=[(1, card.status.value, 1, 0, None)],
                    guards=[(GUARD_CARD, 1, card.version, 24)],
                    # a merchant API sale's rows ride along in the same call
                    payment_orders=[
                        PaymentOrderRow("000000000501", "pay_1", "M1", "o-1", "{}", T0)
                    ],
                    merchant_events=[
                        MerchantEventRow("evt_1", "M1", "payment.paid", "pay_1", "{}", T0)
                    ],
                ),
            ]
            results = await asyncio.gather(*(store.submit(u) for u in units))
            assert results == [None, None, None, None]
            assert store.query("SELECT payment_id, order_reference FROM payment_orders") == [
                ("pay_1", "o-1")
            ]
            assert store.query(
                "SELECT event_id, created_at, next_attempt_at, status FROM merchant_events"
            ) == [("evt_1", T0, T0, "pending")]
            assert store.one_trip == 1 and store.batches == 1 and store.conflicts == 0
            got_a, got_b = await store.account(a), await store.account(b)
            assert got_a is not None and (got_a.balance, got_a.version) == (90, 22)
            assert got_b is not None and (got_b.balance, got_b.version) == (7, 23)
            got_card = await store.card_by_id(1)
            assert got_card is not None and (got_card.pin_tries, got_card.version) == (1, 24)
        finally:
            await store.close()

    _run(body())


def test_a_row_moved_by_another_node_refuses_only_its_units(state: Path, pg_url: str) -> None:
    async def body() -> None:
        store = await _opened(state, pg_url)
        try:
            a, b = _two_accounts(store)
            # another node wrote account a: its version is no longer the one decided on
            store.query(
                "UPDATE accounts SET version = 99 WHERE account_id = ? RETURNING version", (a,)
            )
            stale = store.submit(_unit(a, 0, 31, 5))
            fine = store.submit(_unit(b, 0, 32, 6))
            results = await asyncio.gather(stale, fine, return_exceptions=True)
            assert isinstance(results[0], Conflict) and results[1] is None
            # the function refused the batch, told what it found, and took the rest in a
            # second call
            assert store.one_trip == 1 and store.conflicts == 1
            got_a, got_b = await store.account(a), await store.account(b)
            assert got_a is not None and got_a.version == 99  # untouched
            assert got_b is not None and (got_b.balance, got_b.version) == (6, 32)
            # decided again on the new version: one call again
            await store.commit(_unit(a, 99, 33, 5))
            assert store.one_trip == 2
        finally:
            await store.close()

    _run(body())


def test_a_key_another_node_answered_refuses_the_unit(state: Path, pg_url: str) -> None:
    async def body() -> None:
        store = await _opened(state, pg_url)
        try:
            a, _ = _two_accounts(store)
            other = IdempotencyRow("k-1", "fp", "000000000777", "{}", T0)
            await store.commit(Changes(idempotency=other))  # the other node's answer
            mine = Changes(
                accounts=[(a, 5, 0)],
                guards=[(GUARD_ACCOUNT, a, 0, 41)],
                idempotency=IdempotencyRow("k-1", "fp", "000000000778", "{}", T0 + 1),
                idempotency_expects=IdempotencyExpect(since=T0 - 60),
            )
            with pytest.raises(Conflict):
                await store.commit(mine)
            got = await store.account(a)
            assert got is not None and got.version == 0
            row = await store.idempotent("k-1")
            assert row is not None and row.txn_id == "000000000777"
            # an expired answer (older than since) is taken over, in one call
            mine.idempotency_expects = IdempotencyExpect(since=T0 + 0.5)
            await store.commit(mine)
            row = await store.idempotent("k-1")
            assert row is not None and row.txn_id == "000000000778"
            assert store.one_trip == 1
        finally:
            await store.close()

    _run(body())


def test_packed_columns_round_trip_empty_null_bytes_and_separators(
    state: Path, pg_url: str
) -> None:
    """The function's columns travel packed (one text each): an empty string, a NULL, a
    float, bytes come back exact; a text holding the separator sends the batch the arrays
    way instead, written the same."""
    assert pack_columns([[], [""], ["a", None]], ["text", "text", "text"]) == [
        None,
        SEP,
        f"{SEP}a{SEP}{NUL}",
    ]
    with pytest.raises(Unpackable):
        pack_columns([[f"x{SEP}y"]], ["text"])
    with pytest.raises(Unpackable):
        pack_columns([[NUL]], ["text"])  # would read back as NULL

    async def body() -> None:
        store = await _opened(state, pg_url)
        try:
            a, b = _two_accounts(store)
            packed = Changes(
                accounts=[(a, 5, 0)],
                guards=[(GUARD_ACCOUNT, a, 0, 51)],
                otps=[(1, b"\x00\x1f\xff", T0 + 0.125)],
                alerts=[AlertRow("+213550000001", "", None, T0 + 0.5)],  # NULL, empty
            )
            await store.commit(packed)
            assert store.one_trip == 1
            odd = Changes(
                accounts=[(b, 6, 0)],
                guards=[(GUARD_ACCOUNT, b, 0, 52)],
                alerts=[AlertRow("+213550000002", f"a{SEP}b", "000000000602", T0)],
            )
            await store.commit(odd)
            assert store.one_trip == 1  # the arrays way, one transaction all the same
            assert store.query("SELECT code_hash, expires_at FROM otps WHERE card_id = 1") == [
                (b"\x00\x1f\xff", T0 + 0.125)
            ]
            rows = store.query(
                "SELECT msisdn, text, txn_id, created_at, masked_pan, amount FROM alerts "
                "ORDER BY msisdn"
            )
            assert rows == [
                ("+213550000001", "", None, T0 + 0.5, "", 0),
                ("+213550000002", f"a{SEP}b", "000000000602", T0, "", 0),
            ]
            got_a, got_b = await store.account(a), await store.account(b)
            assert got_a is not None and (got_a.balance, got_a.version) == (5, 51)
            assert got_b is not None and (got_b.balance, got_b.version) == (6, 52)
        finally:
            await store.close()

    _run(body())
