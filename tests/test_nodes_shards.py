"""Per-node credit rows of the GL and settlement accounts on PostgreSQL (migration 0016,
docs/architecture.md §7).

Every unit credits the same few internal accounts. Their credits go to a row of
``account_shards`` of the committing node's own (a shard number held by an advisory lock), so
two nodes' batches never lock one row; an account's balance is its row plus its shard rows.
What must hold: each node has its own shard; reads (and ``switch account show``, through
``live_account_by_number``) give the sum over every node; raw SQL reads see whole balances (the
shards are folded first); a batch commits while another transaction holds the GL row's lock.
Real PostgreSQL (``tests/pg_server.py``), two ``SwitchCore`` instances in one process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from switch.core import demo
from switch.core.ledger_accounts import GL_FEES
from switch.core.service import SwitchCore
from switch.core.testing import CARD, RICH_CARD, ManualClock, withdrawal
from switch.store.postgres import SHARD_LOCK, PostgresStore

if TYPE_CHECKING:
    from tests.pg_server import PgServer

NOW = 1_796_000_000.0  # a fixed instant (2026-11-30), never the wall clock
FEE = 3_000  # 30 DZD on our own ATM (products.toml)


@pytest.fixture
def pg_url(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh migrated database named by ``SWITCH_STORE``, dropped afterwards."""
    db = pg_server.create_database(pg_server.migrated())
    url = pg_server.url(db)
    monkeypatch.setenv("SWITCH_STORE", url)
    yield url
    pg_server.drop_database(db)


def shard_rows(url: str, account_number: str) -> dict[int, int]:
    """shard -> balance of the account's shard rows, read beside the switch (no fold)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT s.shard, s.balance FROM account_shards s JOIN accounts a "
            "ON a.account_id = s.account_id WHERE a.number = %s",
            (account_number,),
        ).fetchall()
    return {int(shard): int(bal) for shard, bal in rows}


def shard_of(core: SwitchCore) -> int:
    store = core.store
    assert isinstance(store, PostgresStore)
    return store.shard


async def fees_shown(core: SwitchCore) -> int:
    acct = await core.live_account_by_number(GL_FEES)
    assert acct is not None
    return acct.balance


def test_each_node_credits_its_own_shard_and_reads_sum_them(state: Path, pg_url: str) -> None:
    async def go() -> None:
        clock = ManualClock(NOW)
        a = await SwitchCore.open(state, durable=False, clock=clock, shared=True)
        b = await SwitchCore.open(state, durable=False, clock=clock, shared=True)
        try:
            assert shard_of(a) != shard_of(b)
            opening = await fees_shown(a)
            results = await asyncio.gather(
                a.authorize(withdrawal(CARD.pan, 100_000, CARD.pin)),
                b.authorize(withdrawal(RICH_CARD.pan, 100_000, RICH_CARD.pin)),
                a.authorize(withdrawal(RICH_CARD.pan, 200_000, RICH_CARD.pin)),
            )
            assert [r.response_code.value for r in results] == ["00", "00", "00"]
            shards = shard_rows(pg_url, GL_FEES)
            assert shards == {
                shard_of(a): 2 * FEE,
                shard_of(b): FEE,
            }
            # both nodes show the whole balance, each node's credits and the other's
            assert await fees_shown(a) == opening + 3 * FEE
            assert await fees_shown(b) == opening + 3 * FEE
            # raw SQL (audits, tests) folds the shards first: the ledger's total is whole
            ((total,),) = a.store.query("SELECT SUM(balance) FROM accounts")
            assert int(total) == sum(c.balance for c in demo.CARDS)
            assert shard_rows(pg_url, GL_FEES) == {}
            ((gl,),) = a.store.query("SELECT balance FROM accounts WHERE number = ?", (GL_FEES,))
            assert int(gl) == opening + 3 * FEE
            assert await fees_shown(b) == opening + 3 * FEE
            # credits after a fold start new shard rows
            r = await b.authorize(withdrawal(CARD.pan, 100_000, CARD.pin))
            assert r.approved
            assert shard_rows(pg_url, GL_FEES) == {shard_of(b): FEE}
            assert await fees_shown(a) == opening + 4 * FEE
        finally:
            await b.close()
            await a.close()
        # closing folds: nothing is left in shard rows, the account row is whole
        assert shard_rows(pg_url, GL_FEES) == {}
        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT balance FROM accounts WHERE number = %s", (GL_FEES,))
            assert int(row.fetchone()[0]) == opening + 4 * FEE  # type: ignore[index]

    asyncio.run(asyncio.wait_for(go(), 90))


def test_a_commit_does_not_wait_for_the_gl_row_lock(state: Path, pg_url: str) -> None:
    """Another transaction holds the GL fee and settlement rows locked as an update of their
    balance does (a second node's batch held that lock until its COMMIT before 0016): a
    withdrawal still commits and is answered. (Its postings' foreign keys take a key-share
    lock on the same rows, which an update of the balance does not block.)"""

    async def go() -> None:
        core = await SwitchCore.open(state, durable=False, clock=ManualClock(NOW), shared=True)
        try:
            with psycopg.connect(pg_url) as other:
                other.execute("SELECT 1 FROM accounts WHERE kind <> 'ccp' FOR NO KEY UPDATE")
                result = await asyncio.wait_for(
                    core.authorize(withdrawal(CARD.pan, 100_000, CARD.pin)), 30
                )
                assert result.approved
                other.rollback()
        finally:
            await core.close()

    asyncio.run(go())


def test_shards_are_released_with_the_node(state: Path, pg_url: str) -> None:
    """A node's shard is its writer connection's advisory lock: a later node may take it."""

    async def go() -> None:
        clock = ManualClock(NOW)
        a = await SwitchCore.open(state, durable=False, clock=clock, shared=True)
        first = shard_of(a)
        await a.close()
        # PostgreSQL frees a closed connection's session locks once its backend has exited,
        # a moment after close() returned: wait for that (a's work is done), or b may find
        # the shard still held and rightly take another
        await asyncio.to_thread(_wait_shard_free, pg_url, first)
        b = await SwitchCore.open(state, durable=False, clock=clock, shared=True)
        try:
            assert shard_of(b) == first
        finally:
            await b.close()

    assert os.environ["SWITCH_STORE"] == pg_url
    asyncio.run(asyncio.wait_for(go(), 60))


def _wait_shard_free(url: str, shard: int) -> None:
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
            " AND objid = %s AND objsubid = 2"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (SHARD_LOCK, shard),
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, f"shard {shard}'s lock still held after 30 s"
            time.sleep(0.02)


def test_a_raw_read_never_waits_for_a_locked_shard_row(state: Path, pg_url: str) -> None:
    """The fold before a raw SQL read skips a shard row a batch holds (the batch may be this
    node's own, waiting for the very thread the read blocks): the read answers, and the row's
    credits are folded by a later read."""

    async def go() -> None:
        core = await SwitchCore.open(state, durable=False, clock=ManualClock(NOW), shared=True)
        try:
            r = await core.authorize(withdrawal(CARD.pan, 100_000, CARD.pin))
            assert r.approved
            assert shard_rows(pg_url, GL_FEES) == {shard_of(core): FEE}
            with psycopg.connect(pg_url) as other:
                other.execute("SELECT 1 FROM account_shards FOR UPDATE")
                rows = await asyncio.wait_for(
                    asyncio.to_thread(core.store.query, "SELECT COUNT(*) FROM accounts"), 30
                )
                assert int(rows[0][0]) > 0
                assert shard_rows(pg_url, GL_FEES) == {shard_of(core): FEE}  # skipped
                other.rollback()
            ((total,),) = core.store.query("SELECT SUM(balance) FROM accounts")
            assert int(total) == sum(c.balance for c in demo.CARDS)
            assert shard_rows(pg_url, GL_FEES) == {}
        finally:
            await core.close()

    asyncio.run(go())
