"""PostgreSQL driver choice for the store's hot path: asyncpg vs psycopg 3 (async), side by side.

What the switch does per authorization, on one event loop (uvloop, as ``switch run``):

* **group commit**: one batch of withdrawal ``Changes`` units (journal row, three postings,
  three balances, idempotency answer, SMS alert) durable before the answers -- one batch in
  flight at a time, as the store does. Measured with one unit a batch (an idle switch) and 64
  (under load). Variants: the store's one-statement commit (``switch.store.postgres_sql``)
  on asyncpg and on psycopg; and psycopg's pipeline mode with one ``executemany`` per table
  inside BEGIN/COMMIT (the obvious psycopg design).
* **point reads**: a card by PAN hash, then its account, from 32 concurrent tasks over a pool
  of 4 connections (asyncpg's pool; psycopg_pool's ``AsyncConnectionPool``), and on the
  store's own 4 read connections (``switch.store.postgres_reads``, asyncpg without the pool).

Each figure: units (or card+account reads) per second, and the client's CPU microseconds per
unit (``time.process_time``): the switch's process is the bottleneck, so the CPU a driver
takes from the event loop matters as much as the wall-clock rate. The server is a throwaway
one started here (``tests/pg_server.py``, fsync on: commits really reach the disk) unless
``SWITCH_PG_URL`` names one (its database is then filled with the bench's tables: use an
empty one). Run: ``python -m bench bench_store`` (about a minute).
"""

# ruff: noqa: S608 -- the f-strings only splice fixed column lists
from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
import psycopg_pool
import uvloop

from switch.store.api import AlertRow, Changes, IdempotencyRow, JournalRow
from switch.store.postgres_reads import ReadConnections
from switch.store.postgres_schema import migrate
from switch.store.postgres_sql import ACCOUNT_COLS, CARD_COLS, batch_args, commit_sql

N_CARDS = 20_000
SECONDS = 3.0  # per measurement
READERS = 32
POOL = 4
GL_ATM, GL_FEES = 1, 2


def _setup(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO accounts ({ACCOUNT_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                [
                    (
                        i,
                        f"ACC{i:010d}",
                        "gl" if i <= 2 else "ccp",
                        "h",
                        "",
                        12,
                        10**12,
                        0,
                        int(i <= 2),
                    )
                    for i in range(1, N_CARDS + 3)
                ],
            )
            cur.executemany(
                f"INSERT INTO cards ({CARD_COLS}) VALUES ({','.join(['%s'] * 19)})",
                [
                    (
                        i,
                        _pan_hash(i),
                        "628058",
                        f"{i % 10000:04d}",
                        i + 2,
                        "classic",
                        "3012",
                        "201",
                        "00",
                        1,
                        "1234",
                        "",
                        "K" * 16,
                        "K" * 16,
                        "K" * 16,
                        "active",
                        0,
                        0,
                        None,
                    )
                    for i in range(1, N_CARDS + 1)
                ],
            )


def _pan_hash(i: int) -> bytes:
    return i.to_bytes(32, "big")


class _Units:
    """Withdrawal units with increasing txn ids (every variant writes fresh rows)."""

    def __init__(self) -> None:
        self.seq = 0
        self.rng = random.Random(7)

    def unit(self) -> Changes:
        self.seq += 1
        txn = f"{self.seq:012d}"
        card = self.rng.randrange(1, N_CARDS + 1)
        acct = card + 2
        now = time.time()
        ch = Changes(
            journal=JournalRow(
                txn,
                now,
                20_500,
                "withdrawal",
                "atm",
                "00",
                "123456",
                card,
                acct,
                "628058******0001",
                200_000,
                1_500,
                12,
                "1,2",
                "ACQ1",
                "ATM00001",
                f"{self.seq % 1_000_000:06d}",
                "1203101010",
                f"{self.seq:012d}",
                "",
                None,
                GL_ATM,
                "onus",
                "",
            ),
            postings=[
                (txn, 0, acct, -201_500),
                (txn, 1, GL_ATM, 200_000),
                (txn, 2, GL_FEES, 1_500),
            ],
            accounts=[(acct, 10**12 - self.seq, 0), (GL_ATM, self.seq, 0), (GL_FEES, self.seq, 0)],
            idempotency=IdempotencyRow(f"iso:ACQ1:ATM00001:{txn}", "fp", txn, "{}", now),
            alerts=[
                AlertRow(
                    "213555000001",
                    "",
                    txn,
                    now,
                    "withdrawal",
                    "628058******0001",
                    200_000,
                    12,
                    "ATM00001",
                    10**9,
                )
            ],
        )
        return ch


async def _timed(step: Callable[[], Awaitable[int]]) -> tuple[float, float]:
    """Repeat ``step`` (returns units done) for SECONDS: (units/s, client CPU us/unit)."""
    await step()  # warm: statements prepared, pools filled
    units = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < SECONDS:
        units += await step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return units / wall, cpu / units * 1e6


async def _commit_asyncpg(url: str, units: _Units, batch: int) -> tuple[float, float]:
    conn = await asyncpg.connect(url)
    sql = commit_sql("dollar")
    try:

        async def step() -> int:
            await conn.execute(sql, *batch_args([units.unit() for _ in range(batch)]))
            return batch

        return await _timed(step)
    finally:
        await conn.close()


async def _commit_psycopg(url: str, units: _Units, batch: int) -> tuple[float, float]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0)
    sql = commit_sql("format")
    try:

        async def step() -> int:
            await conn.execute(sql, batch_args([units.unit() for _ in range(batch)]))
            return batch

        return await _timed(step)
    finally:
        await conn.close()


_PIPELINE_SQL = (
    ("INSERT INTO journal VALUES (" + ",".join(["%s"] * 25) + ")", "journal"),
    ("INSERT INTO postings (txn_id, leg, account_id, amount) VALUES (%s,%s,%s,%s)", "postings"),
    ("UPDATE accounts SET balance = %s, held = %s WHERE account_id = %s", "accounts"),
    (
        "INSERT INTO idempotency (key, fingerprint, txn_id, result, created_at) "
        "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (key) DO UPDATE SET result = excluded.result",
        "idempotency",
    ),
    (
        "INSERT INTO alerts (msisdn, text, txn_id, created_at, next_attempt_at, kind, "
        "masked_pan, amount, currency, place, available) VALUES "
        "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        "alerts",
    ),
)


def _pipeline_rows(units: list[Changes]) -> dict[str, list[tuple[Any, ...]]]:
    acc: dict[int, tuple[int, int, int]] = {}
    for c in units:
        for a in c.accounts:
            acc[a[0]] = a
    return {
        "journal": [(*c.journal[:-1], int(c.journal.refused)) for c in units if c.journal],
        "postings": [p for c in units for p in c.postings],
        "accounts": [(b, h, i) for i, b, h in acc.values()],
        "idempotency": [tuple(c.idempotency) for c in units if c.idempotency],
        "alerts": [
            (
                a.msisdn,
                a.text,
                a.txn_id,
                a.created_at,
                a.created_at,
                a.kind,
                a.masked_pan,
                a.amount,
                a.currency,
                a.place,
                a.available,
            )
            for c in units
            for a in c.alerts
        ],
    }


async def _commit_psycopg_pipeline(url: str, units: _Units, batch: int) -> tuple[float, float]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:

        async def step() -> int:
            rows = _pipeline_rows([units.unit() for _ in range(batch)])
            async with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
                for sql, table in _PIPELINE_SQL:
                    await cur.executemany(sql, rows[table])
            return batch

        return await _timed(step)
    finally:
        await conn.close()


_CARD_SQL = f"SELECT {CARD_COLS} FROM cards WHERE pan_hash = $1"
_ACCOUNT_SQL = f"SELECT {ACCOUNT_COLS} FROM accounts WHERE account_id = $1"


async def _reads_asyncpg(url: str) -> tuple[float, float]:
    pool = await asyncpg.create_pool(url, min_size=POOL, max_size=POOL)
    rng = random.Random(3)

    async def one() -> None:
        h = _pan_hash(rng.randrange(1, N_CARDS + 1))
        row = await pool.fetchrow(_CARD_SQL, h)
        assert row is not None
        await pool.fetchrow(_ACCOUNT_SQL, row[4])

    async def step() -> int:
        await asyncio.gather(*(one() for _ in range(READERS * 8)))
        return READERS * 8

    try:
        return await _timed(step)
    finally:
        await pool.close()


async def _reads_store(url: str) -> tuple[float, float]:
    """The same reads on the store's own read connections (postgres_reads)."""
    reads = ReadConnections(url, POOL, {})
    await reads.open()
    rng = random.Random(3)

    async def one() -> None:
        h = _pan_hash(rng.randrange(1, N_CARDS + 1))
        row = await reads.fetchrow(_CARD_SQL, h)
        assert row is not None
        await reads.fetchrow(_ACCOUNT_SQL, row[4])

    async def step() -> int:
        await asyncio.gather(*(one() for _ in range(READERS * 8)))
        return READERS * 8

    try:
        return await _timed(step)
    finally:
        await reads.close()


async def _reads_psycopg(url: str) -> tuple[float, float]:
    pool = psycopg_pool.AsyncConnectionPool(
        url, min_size=POOL, max_size=POOL, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    rng = random.Random(3)
    card_sql = _CARD_SQL.replace("$1", "%s")
    account_sql = _ACCOUNT_SQL.replace("$1", "%s")

    async def one() -> None:
        h = _pan_hash(rng.randrange(1, N_CARDS + 1))
        async with pool.connection() as conn:
            cur = await conn.execute(card_sql, (h,))
            row = await cur.fetchone()
            assert row is not None
        async with pool.connection() as conn:
            await (await conn.execute(account_sql, (row[4],))).fetchone()

    async def step() -> int:
        await asyncio.gather(*(one() for _ in range(READERS * 8)))
        return READERS * 8

    try:
        return await _timed(step)
    finally:
        await pool.close()


async def _run(url: str) -> list[tuple[str, tuple[float, float], tuple[float, float] | None]]:
    units = _Units()
    out: list[tuple[str, tuple[float, float], tuple[float, float] | None]] = []
    for batch in (1, 64):
        out.append(
            (
                f"commit, {batch} unit(s)/batch",
                await _commit_asyncpg(url, units, batch),
                await _commit_psycopg(url, units, batch),
            )
        )
        out.append(
            (
                f"  psycopg pipeline+executemany, {batch}/batch",
                await _commit_psycopg_pipeline(url, units, batch),
                None,
            )
        )
    out.append(("point reads (card+account)", await _reads_asyncpg(url), await _reads_psycopg(url)))
    out.append(("  asyncpg, the store's ReadConnections", await _reads_store(url), None))
    return out


def main() -> None:
    url = os.environ.get("SWITCH_PG_URL")
    server = None
    if url is None:
        from tests.pg_server import start

        server = start(fsync=True)
        url = server.url(server.create_database())
    try:
        _setup(url)
        rows = uvloop.run(_run(url))
    finally:
        if server is not None:
            server.stop()
    print(f"bench_store: PostgreSQL drivers on the hot path ({SECONDS:g} s each, uvloop)")
    print(f"{'':44} {'asyncpg':>22} {'psycopg 3 async':>22}")
    print(f"{'':44} {'units/s  CPU us/unit':>22} {'units/s  CPU us/unit':>22}")
    for name, a, p in rows:
        left = f"{a[0]:9,.0f} {a[1]:10.1f}"
        right = "" if p is None else f"{p[0]:9,.0f} {p[1]:10.1f}"
        if name.startswith("  psycopg"):  # a psycopg-only variant: in the psycopg column
            left, right = f"{'':20}", left
        print(f"{name:44} {left:>22} {right:>22}")


if __name__ == "__main__":
    main()
