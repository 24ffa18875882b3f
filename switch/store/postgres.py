"""PostgreSQL backend of the ``Store`` protocol: group commit on asyncpg, the rest on psycopg.

Driver: asyncpg for the hot path (the group commit and the point reads of cards, accounts,
idempotency answers...), chosen by measuring both drivers on exactly that path
(``bench/bench_store.py``, figures in docs/architecture.md §7): asyncpg took 2.5x less client
CPU per committed unit and about 1.4x less per read than psycopg 3 async (pipeline mode
included), and the switch's one event loop is the bottleneck. The plain (blocking) methods of
the protocol -- start-up loads, seeding, operator and test queries -- run on psycopg's
blocking connections, as ``switch.store.api`` allows: they are off the hot path, and a
blocking call cannot await an asyncpg connection from inside the running loop.

Group commit (as ``SqliteStore``): ``submit`` appends a unit to the pending batch; once every
task runnable now has queued its unit, the batch's rows are written by ONE statement
(``switch.store.postgres_sql.commit_sql``: one ``WITH`` clause per table, each fed by arrays)
on the writer connection, and the futures resolve only after PostgreSQL acknowledged the
COMMIT (``synchronous_commit=on``: the WAL is flushed). While one batch is in flight the next
accumulates. Units carrying version guards (several nodes, ``postgres_guards``) are checked
first in the same transaction, after their keys and rows are locked: those whose guards fail
are left out and get ``Conflict``. Such a batch is first offered to a server-side function
that locks, checks and writes it in one round trip (``postgres_onetrip``); only a batch whose
guards do not all hold (or that it does not take) goes the way just described. A batch with
nothing to guard and no rarer rows (import batches, merchant notifications) is that one
statement alone, its own transaction. If a batch fails, every unit in it fails and the store
refuses further commits (the core answers 96): the core's memory and the database must not
diverge; a deadlock or serialization failure (nothing written) is retried instead.

Connections: one asyncpg writer, a few asyncpg read connections handed out in turn
(``postgres_reads``: several reads in flight at once), psycopg connections for blocking
reads, administrative inserts (one transaction until ``flush_admin``) and the SMS outbox
(``PostgresOutbox``, used from the worker's thread).
"""

# ruff: noqa: S608 -- the f-strings only splice fixed column lists, never input
from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import psycopg

from switch.core.domain import (
    Account,
    AccountKind,
    Bill,
    Card,
    CardStatus,
    Hold,
)
from switch.notify.outbox import Alert
from switch.store import redacted as redacted  # re-exported: others import it from here
from switch.store.api import (
    Changes,
    IdempotencyRow,
    JournalRow,
    OpenHold,
    OriginalSummary,
    StoreError,
    stamp_source,
)
from switch.store.original_sql import (
    followup_sums_sql,
    summarize_original,
    undone_followups_sql,
)
from switch.store.postgres_guards import (
    BILLS_SQL,
    LOCK_KEYS_SQL,
    LOCK_ROWS_SQL,
    Touched,
    Versions,
    check,
)
from switch.store.postgres_notify import OnRows, RowWatcher, node_id
from switch.store.postgres_onetrip import BATCH_TYPES, CALL_SQL, ensure_function, speculate
from switch.store.postgres_outbox import PostgresOutbox
from switch.store.postgres_reads import ReadConnections
from switch.store.postgres_schema import migrate
from switch.store.postgres_sql import (
    CARD_COLS,
    JOURNAL_COLS,
    Unpackable,
    batch_args,
    commit_sql,
    extra_args,
    extra_statements,
    pack_columns,
)
from switch.store.reference_reads import ReferenceReads, ReferenceWrites
from switch.store.settle import GroupCommitQueue, resolve_batch

log = logging.getLogger("switch.store")

_COMMIT_SQL = commit_sql("dollar")
SEED_LOCK = 0x7377697463687364  # pg_advisory_lock key of the first start's seeding
TXN_SEQ_LOCK = 0x7377697463687371  # pg_advisory_xact_lock key of reserve_txn_ids
_RETRIES = 5  # a batch rolled back by a deadlock or serialization failure is tried again
# reads carry the row's version (migration 0011, docs/architecture.md §7); inserts leave it 0
CARD_READ = CARD_COLS + ", version"
#: An account's balance and held are its row's plus its shard rows' (migration 0016: the GL and
#: settlement accounts' credits, one row per node; a cardholder's account has none).
ACCOUNT_READ = (
    "account_id, number, kind, holder, phone, currency, "
    "balance + COALESCE((SELECT sum(s.balance) FROM account_shards s "
    "WHERE s.account_id = accounts.account_id), 0)::int8, "
    "held + COALESCE((SELECT sum(s.held) FROM account_shards s "
    "WHERE s.account_id = accounts.account_id), 0)::int8, may_go_negative, version"
)
SHARD_LOCK = 0x5377  # pg_try_advisory_lock(SHARD_LOCK, n): the node holding shard n
SHARDS = 64  # shard numbers tried; beyond that many live nodes, two share one (slower)
#: Moves the shard rows' credits into their account rows (one statement: atomic). Nothing is
#: decided on these accounts, so it may run while nodes commit; a node's next credit simply
#: creates its shard row again. A shard row locked by a batch not yet committed is skipped,
#: never waited for: the fold runs on the event loop's thread (query()), and the batch holding
#: the lock may be this node's own, which needs that loop to finish.
FOLD_SHARDS_SQL = (
    "WITH l AS (SELECT account_id, shard FROM account_shards FOR UPDATE SKIP LOCKED), "
    "s AS (DELETE FROM account_shards x USING l WHERE x.account_id = l.account_id "
    "AND x.shard = l.shard RETURNING x.account_id, x.balance, x.held), "
    "t AS (SELECT account_id, sum(balance) AS b, sum(held) AS h FROM s GROUP BY account_id) "
    "UPDATE accounts SET balance = accounts.balance + t.b, held = accounts.held + t.h "
    "FROM t WHERE accounts.account_id = t.account_id"
)
#: A statement that has not answered by then fails (the server cancels it): a hung database
#: makes the switch answer 96 -- a failed commit halts it -- instead of leaving ATMs waiting.
STATEMENT_TIMEOUT_S = 30.0
#: ``SWITCH_PG_ONE_TRIP=0`` writes every guarded batch the slow way (BEGIN, locks, write,
#: COMMIT): only for ``bench_nodes`` to measure the one-call commit against it in one run.
ONE_TRIP = os.environ.get("SWITCH_PG_ONE_TRIP", "1") != "0"
READ_POOL = 4  # connections for the async reads (bench_store measured reads over 4)


_QMARK_OR_LITERAL = re.compile(r"'(?:[^']|'')*'|\?|%")


def format_placeholders(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (and a literal ``%`` as ``%%``), outside
    quoted literals: the store's ``query`` takes the SQL its SQLite twin takes."""

    def sub(m: re.Match[str]) -> str:
        tok = m[0]
        if tok == "?":
            return "%s"
        if tok == "%":
            return "%%"
        return tok.replace("%", "%%")

    return _QMARK_OR_LITERAL.sub(sub, sql)


def _card(r: Sequence[Any] | asyncpg.Record) -> Card:
    return Card(
        card_id=int(r[0]),
        pan_hash=bytes(r[1]),
        pan_first6=str(r[2]),
        pan_last4=str(r[3]),
        account_id=int(r[4]),
        product=str(r[5]),
        expiry=str(r[6]),
        service_code=str(r[7]),
        pan_sequence=str(r[8]),
        pvki=int(r[9]),
        pvv=str(r[10]),
        ibm_offset=str(r[11]),
        pvk=str(r[12]),
        cvk=str(r[13]),
        mk_ac=str(r[14]),
        status=CardStatus(str(r[15])),
        pin_tries=int(r[16]),
        otp_tries=int(r[17]),
        activated_at=None if r[18] is None else float(r[18]),
        version=int(r[19]),
    )


async def _claim_shard(conn: asyncpg.Connection) -> int:
    """The first shard number no other live node holds: a session advisory lock kept by the
    writer connection for its life (a node that dies releases it with its connection)."""
    for n in range(SHARDS):
        if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", SHARD_LOCK, n):
            return n
    return secrets.randbelow(SHARDS)  # every number taken: share one (correct, slower)


def _account(r: Sequence[Any] | asyncpg.Record) -> Account:
    return Account(
        account_id=int(r[0]),
        number=str(r[1]),
        kind=AccountKind(str(r[2])),
        holder=str(r[3]),
        phone=str(r[4]),
        currency=int(r[5]),
        balance=int(r[6]),
        held=int(r[7]),
        may_go_negative=bool(r[8]),
        version=int(r[9]),
    )


def _journal(r: Sequence[Any] | asyncpg.Record) -> JournalRow:
    t = tuple(r)
    return JournalRow._make((*t[:-1], bool(t[-1])))


class PostgresStore(GroupCommitQueue, ReferenceReads, ReferenceWrites):
    """``Store`` on one PostgreSQL database (see the module docstring)."""

    _PH = "%s"

    def __init__(
        self,
        url: str,
        *,
        durable: bool = True,
        read_pool: int = READ_POOL,
        timeout: float = STATEMENT_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.durable = durable
        self._read_pool_size = read_pool
        self._writer: asyncpg.Connection | None = None
        self._pool: ReadConnections | None = None
        self._sync: psycopg.Connection[tuple[Any, ...]] | None = None
        self._sync_lock = threading.Lock()
        self._adminc: psycopg.Connection[tuple[Any, ...]] | None = None
        self._admin_lock = threading.Lock()
        self._seeding = False  # is_empty said True: the seed lock is held until flush_admin
        self._outbox: PostgresOutbox | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[Changes, asyncio.Future[None]]] = []
        self._flush_scheduled = False
        self._committing = False
        self._inflight: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        self._stamp = stamp_source()  # versions of rows written without a guard
        self.shard = 0  # this node's account_shards rows (claimed at open)
        self.conflicts = 0  # statistics: units refused by their guards
        self._one_trip = False  # the one-call commit is used (open: ``postgres_onetrip``)
        self.one_trip = 0  # statistics: guarded batches written by one call (postgres_onetrip)
        self.node = node_id()  # this store's batches in the notifications (postgres_notify)
        self._watcher: RowWatcher | None = None
        self.batches = 0  # statistics: number of group commits and units committed
        self.units = 0
        #: told ``(units, seconds)`` of each durable group commit (the metrics' histograms)
        self.on_commit: Callable[[int, float], object] | None = None

    @property
    def path(self) -> str:
        """Where the store is, for messages (the URL without its password)."""
        return redacted(self.url)

    # -- lifecycle ---------------------------------------------------------------------------
    def _settings(self) -> dict[str, str]:
        return {
            "synchronous_commit": "on" if self.durable else "off",
            "application_name": "switch",
        }

    def _connect_sync(self) -> psycopg.Connection[tuple[Any, ...]]:
        opts = " ".join(f"-c {k}={v}" for k, v in self._settings().items())
        return psycopg.connect(self.url, autocommit=True, options=opts)

    async def open(self) -> None:
        try:
            self._sync = self._connect_sync()
            migrate(self._sync)
            self._one_trip = ONE_TRIP and ensure_function(self._sync)
            self._adminc = self._connect_sync()
            self._adminc.autocommit = False
            self._outbox = PostgresOutbox(self.url, durable=self.durable)
            self._writer = await asyncpg.connect(
                self.url, server_settings=self._settings(), command_timeout=self.timeout
            )
            self.shard = await _claim_shard(self._writer)
            self._pool = ReadConnections(
                self.url, self._read_pool_size, self._settings(), timeout=self.timeout
            )
            await self._pool.open()
        except (OSError, psycopg.Error, asyncpg.PostgresError) as exc:
            await self._close_connections()
            raise StoreError(f"store {self.path}: {exc}") from exc
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        while self._pending or self._committing or self._flush_scheduled:
            await asyncio.sleep(0.001)  # let the last batches reach the database
        self._fold_shards()
        await self._close_connections()

    def _fold_shards(self) -> None:
        """Folds the shard rows into their accounts (at close, and before raw SQL reads, so
        ``SUM(balance) FROM accounts`` in an audit or a test is the ledger's total; under load a
        row a batch holds at that instant stays a shard row until the next fold)."""
        with self._sync_lock:
            if self._sync is None:
                return
            try:
                self._sync.execute(FOLD_SHARDS_SQL)
            except psycopg.Error as exc:
                raise StoreError(f"folding the account shards failed: {exc}") from exc

    async def watch_rows(self, on_rows: OnRows) -> RowWatcher:
        """Hand the accounts and cards other nodes' batches write to ``on_rows`` from now on
        (``postgres_notify``: a connection of its own LISTENs; closed with the store)."""
        if self._watcher is not None:
            await self._watcher.close()
        watcher = RowWatcher(self.node, on_rows)
        try:
            await watcher.open(self.url, self._settings())
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"store {self.path}: listening for rows: {exc}") from exc
        self._watcher = watcher
        return watcher

    async def _close_connections(self) -> None:
        if self._watcher is not None:
            await self._watcher.close()
            self._watcher = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        with self._admin_lock:
            if self._adminc is not None:
                self._adminc.close()  # an admin transaction never flushed is rolled back
                self._adminc = None
        with self._sync_lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    # -- group commit ------------------------------------------------------------------------
    # (commit and submit: GroupCommitQueue in switch/store/settle.py)
    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._committing or not self._pending:
            return
        batch, self._pending = self._pending, []
        if self._failed is not None or self._writer is None or self._loop is None:
            resolve_batch(batch, self._failed or StoreError("store is closed"))
            return
        self._committing = True
        self._inflight = self._loop.create_task(self._write(batch))

    async def _write(self, batch: list[tuple[Changes, asyncio.Future[None]]]) -> None:
        started = time.perf_counter()
        error: BaseException | None = None
        written: list[Changes] = []
        try:
            units = [c for c, _ in batch]
            for attempt in range(1, _RETRIES + 1):
                try:
                    written = await self._write_batch(units)
                    break
                except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
                    # rolled back whole, nothing written: another node's batch won the lock
                    if attempt == _RETRIES:
                        raise
                    log.warning("group commit retried (%s), attempt %d", exc, attempt)
        except BaseException as exc:  # every unit of the batch fails, and later ones too
            error = exc
            self._failed = exc
            log.error("group commit of %d unit(s) failed: %s", len(batch), exc)
        else:
            self.batches += 1
            self.units += len(batch)
            self.conflicts += len(batch) - len(written)
            if self._watcher is not None and written:  # after the commit (postgres_notify)
                self._watcher.announce(written)
            if self.on_commit is not None:
                self.on_commit(len(batch), time.perf_counter() - started)
        finally:
            self._committing = False
            self._inflight = None
            resolve_batch(batch, error, written)
            if self._pending:
                self._flush()  # the units that arrived during the commit go out together now
        if error is not None and not isinstance(error, Exception):
            raise error  # CancelledError, KeyboardInterrupt: not swallowed

    async def _write_batch(self, units: list[Changes]) -> list[Changes]:
        """One transaction: lock and check the guards, write the units that pass; returns
        them (``postgres_guards``). A batch with nothing to guard and no rarer rows is one
        statement, its own transaction."""
        conn = self._writer
        if conn is None:
            raise StoreError("store is closed")
        touched = Touched(units)
        before, _ = extra_statements(units)
        if not touched.guarded and not before:
            _, after = extra_statements(units)
            if not after:
                await conn.execute(_COMMIT_SQL, *batch_args(units, shard=self.shard))
                return units
        if not before and self._one_trip:  # the usual batch: one round trip, unless a guard failed
            found = await self._one_call(conn, units, touched)
            if found is True:
                self.one_trip += 1
                return units
            if isinstance(found, tuple):  # refused: what its guards found decides who goes on
                seen, held = found
                again = check(units, seen, held, {}, self._stamp)
                if not again:
                    return again
                if await self._one_call(conn, again, Touched(again)) is True:
                    self.one_trip += 1
                    return again
        async with conn.transaction():
            for sql, rows in before:  # an import batch: before the guards and snapshots
                await conn.executemany(sql, rows)
            view: dict[tuple[int, int], int] = {}
            slots: dict[str, tuple[str, float]] = {}
            paid: dict[tuple[str, str], str | None] = {}
            if touched.keys:  # first, and alone: the next statement's snapshot must follow it
                await conn.execute(LOCK_KEYS_SQL, touched.keys)
            if touched.accounts or touched.cards or touched.keys:
                for kind, row_id, version, key, txn_id, at in await conn.fetch(
                    LOCK_ROWS_SQL, touched.accounts, touched.cards, touched.keys
                ):
                    if kind == 2:
                        slots[str(key)] = (str(txn_id), float(at))
                    else:
                        view[int(kind), int(row_id)] = int(version)
            if touched.bills:
                billers, refs = zip(*touched.bills, strict=True)
                for biller, ref, mark in await conn.fetch(BILLS_SQL, billers, refs):
                    paid[str(biller), str(ref)] = None if mark is None else str(mark)
            written = check(units, view, slots, paid, self._stamp)
            if written:
                await conn.execute(_COMMIT_SQL, *batch_args(written, view, self.shard))
                _, after = extra_statements(written)
                for sql, rows in after:
                    await conn.executemany(sql, rows)
        return written

    async def _one_call(
        self, conn: asyncpg.Connection, units: list[Changes], touched: Touched
    ) -> bool | tuple[Versions, dict[str, tuple[str, float]]] | None:
        """``units`` written by one call of the commit function: True if all were; the
        versions and idempotency slots its guards found if it refused them (nothing
        written); None if the function cannot take the batch."""
        spec = speculate(units, touched, self._stamp)
        if spec is None:
            return None
        last, guard_args = spec
        try:
            packed = pack_columns(batch_args(units, last, self.shard) + extra_args(units),
                                  BATCH_TYPES)  # fmt: skip
        except Unpackable:  # a text with a separator in it: the arrays way
            return None
        rows = await conn.fetch(CALL_SQL, *guard_args, *packed)
        if rows and rows[0][0] == -1:
            return True
        view: Versions = {}
        slots: dict[str, tuple[str, float]] = {}
        for kind, row_id, version, key, txn_id, at in rows:
            if kind == 2:
                slots[str(key)] = (str(txn_id), float(at))
            else:
                view[int(kind), int(row_id)] = int(version)
        return view, slots

    # -- async reads (the pool) --------------------------------------------------------------
    async def _row(self, sql: str, *args: object) -> asyncpg.Record | None:
        pool = self._pool
        if pool is None:
            raise StoreError("store is not open")
        try:
            return await pool.fetchrow(sql, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"read failed: {exc}") from exc

    async def _rows(self, sql: str, *args: object) -> list[asyncpg.Record]:
        pool = self._pool
        if pool is None:
            raise StoreError("store is not open")
        try:
            return await pool.fetch(sql, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"read failed: {exc}") from exc

    async def card_by_pan_hash(self, pan_hash: bytes) -> Card | None:
        r = await self._row(f"SELECT {CARD_READ} FROM cards WHERE pan_hash = $1", pan_hash)
        return None if r is None else _card(r)

    async def card_by_id(self, card_id: int) -> Card | None:
        r = await self._row(f"SELECT {CARD_READ} FROM cards WHERE card_id = $1", card_id)
        return None if r is None else _card(r)

    async def account(self, account_id: int) -> Account | None:
        r = await self._row(
            f"SELECT {ACCOUNT_READ} FROM accounts WHERE account_id = $1", account_id
        )
        return None if r is None else _account(r)

    async def rows_for_reload(
        self, account_ids: list[int], card_ids: list[int], usage_of: list[int], business_day: int
    ) -> tuple[list[Account], list[Card], dict[int, list[tuple[str, int, int]]]]:
        """The accounts, then the cards and the limit usage of ``usage_of`` (no older than
        the accounts): three statements for a whole notification's rows, where
        ``account``, ``card_by_id`` and ``card_limit_usage`` take one each per row."""
        accounts = [
            _account(r)
            for r in await self._rows(
                f"SELECT {ACCOUNT_READ} FROM accounts WHERE account_id = ANY($1)", account_ids
            )
        ] if account_ids else []  # fmt: skip
        cards = [
            _card(r)
            for r in await self._rows(
                f"SELECT {CARD_READ} FROM cards WHERE card_id = ANY($1)", card_ids
            )
        ] if card_ids else []  # fmt: skip
        usage: dict[int, list[tuple[str, int, int]]] = {i: [] for i in usage_of}
        if usage_of:
            for cid, k, a, n in await self._rows(
                "SELECT o.card_id, o.categories, o.amount - COALESCE(SUM(r.amount), 0), "
                "CASE WHEN COALESCE(SUM(r.amount), 0) >= o.amount THEN 0 ELSE 1 END "
                "FROM journal o LEFT JOIN journal r ON r.original_txn_id = o.txn_id "
                "AND r.response_code = '00' AND r.txn_type IN ('reversal', 'void') "
                "WHERE o.card_id = ANY($1) AND o.business_day = $2 AND o.response_code = '00' "
                "AND o.categories != '' GROUP BY o.txn_id",
                usage_of,
                business_day,
            ):
                usage[int(cid)].append((str(k), int(a), int(n)))
        return accounts, cards, usage

    async def account_by_number(self, number: str) -> Account | None:
        r = await self._row(f"SELECT {ACCOUNT_READ} FROM accounts WHERE number = $1", number)
        return None if r is None else _account(r)

    async def bill(self, biller_id: str, reference: str) -> Bill | None:
        r = await self._row(
            "SELECT biller_id, reference, amount_due, paid_txn FROM bills "
            "WHERE biller_id = $1 AND reference = $2",
            biller_id,
            reference,
        )
        if r is None:
            return None
        return Bill(str(r[0]), str(r[1]), int(r[2]), None if r[3] is None else str(r[3]))

    async def bill_paid_by(self, txn_id: str) -> Bill | None:
        r = await self._row(
            "SELECT biller_id, reference, amount_due, paid_txn FROM bills WHERE paid_txn = $1",
            txn_id,
        )
        return None if r is None else Bill(str(r[0]), str(r[1]), int(r[2]), str(r[3]))

    async def hold(self, txn_id: str) -> Hold | None:
        r = await self._row(
            "SELECT txn_id, account_id, amount, remaining, status FROM holds WHERE txn_id = $1",
            txn_id,
        )
        return None if r is None else Hold(str(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4]))

    async def otp(self, card_id: int) -> tuple[bytes, float] | None:
        r = await self._row("SELECT code_hash, expires_at FROM otps WHERE card_id = $1", card_id)
        return None if r is None else (bytes(r[0]), float(r[1]))

    async def otp_sends_since(
        self, card_id: int, merchant_id: str, since: float
    ) -> tuple[int, int]:
        r = await self._row(
            "SELECT (SELECT COUNT(*) FROM otp_sends WHERE card_id = $1 AND created_at >= $3), "
            "(SELECT COUNT(*) FROM otp_sends WHERE merchant_id = $2 AND created_at >= $3)",
            card_id,
            merchant_id,
            since,
        )
        assert r is not None
        return int(r[0]), int(r[1])

    async def idempotent(self, key: str) -> IdempotencyRow | None:
        r = await self._row(
            "SELECT key, fingerprint, txn_id, result, created_at FROM idempotency WHERE key = $1",
            key,
        )
        return None if r is None else IdempotencyRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]),
                                                     float(r[4]))  # fmt: skip

    async def txn_id_for_key(self, key: str) -> str | None:
        r = await self._row("SELECT txn_id FROM idempotency WHERE key = $1", key)
        return None if r is None else str(r[0])

    async def journal_entry(self, txn_id: str) -> JournalRow | None:
        r = await self._row(f"SELECT {JOURNAL_COLS} FROM journal WHERE txn_id = $1", txn_id)
        return None if r is None else _journal(r)

    async def journal_for_merchant(self, merchant_id: str, limit: int) -> list[JournalRow]:
        rows = await self._rows(
            f"SELECT {JOURNAL_COLS} FROM journal WHERE merchant_id = $1 AND merchant_id != '' "
            "AND refused = 0 ORDER BY txn_id DESC LIMIT $2",
            merchant_id,
            limit,
        )
        return [_journal(r) for r in rows]

    async def open_holds_placed_before(
        self, cutoff: float, after_txn_id: str, limit: int
    ) -> list[OpenHold]:
        rows = await self._rows(
            "SELECT h.txn_id, h.account_id, h.amount, h.remaining, j.created_at, "
            "j.business_day, j.categories, j.card_id, COALESCE(c.product, ''), j.channel, "
            "j.merchant_id, j.masked_pan, j.currency, j.counter_account_id "
            "FROM holds h JOIN journal j ON j.txn_id = h.txn_id "
            "LEFT JOIN cards c ON c.card_id = j.card_id "
            "WHERE h.status = 'open' AND h.txn_id > $1 AND j.created_at <= $2 "
            "ORDER BY h.txn_id LIMIT $3",
            after_txn_id,
            cutoff,
            limit,
        )
        return [OpenHold(*r) for r in rows]

    async def original(self, txn_id: str) -> OriginalSummary | None:
        j = await self.journal_entry(txn_id)
        if j is None:
            return None
        sums = await self._rows(followup_sums_sql("$1"), txn_id)
        return summarize_original(j, sums, await self._rows(undone_followups_sql("$1"), txn_id))

    # -- blocking reads (psycopg) --------------------------------------------------------------
    def _q(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """``sql`` with psycopg ``%s`` placeholders, on the blocking read connection."""
        with self._sync_lock:
            conn = self._sync
            if conn is None:
                raise StoreError("store is not open")
            try:
                return conn.execute(sql, args).fetchall()
            except psycopg.Error as exc:
                raise StoreError(f"read failed: {exc}") from exc

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Read-only SQL for tests, audits and the CLI, in SQLite's ``?`` spelling. The GL
        and settlement accounts' shard rows are folded first, so ``accounts.balance`` is
        whole (the next credits start new shard rows)."""
        self._fold_shards()
        return self._q(format_placeholders(sql), args)

    def is_empty(self) -> bool:
        """True for a database with no accounts: the caller seeds it. Nodes starting together
        on an empty database take turns: the one told True holds a session advisory lock on
        its admin connection until its inserts are flushed (``flush_admin``), and the others
        wait here, then find the accounts it wrote."""
        with self._admin_lock:
            conn = self._adminc
            if conn is None:
                raise StoreError("store is not open")
            if self._seeding:
                return True
            conn.execute("SELECT pg_advisory_lock(%s)", (SEED_LOCK,))
            empty = conn.execute("SELECT 1 FROM accounts LIMIT 1").fetchone() is None
            if empty:
                self._seeding = True  # released by flush_admin (or by closing)
            else:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SEED_LOCK,))
            conn.commit()
            return empty

    def max_journal_seq(self) -> int:
        # txn_id is TEXT (12 digits): the largest string is the largest number
        return int(self._q("SELECT COALESCE(MAX(txn_id), '0') FROM journal")[0][0])

    def reserve_txn_ids(self, count: int) -> int:
        """A block of ``count`` transaction numbers for this node (``settings.txn_seq``, under
        an advisory lock: two nodes reserving at once get consecutive blocks)."""
        with self._admin_lock:
            conn = self._adminc
            if conn is None:
                raise StoreError("store is not open")
            conn.commit()
            try:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (TXN_SEQ_LOCK,))
                row = conn.execute("SELECT value FROM settings WHERE name = 'txn_seq'").fetchone()
                top = conn.execute("SELECT COALESCE(MAX(txn_id), '0') FROM journal").fetchone()
                assert top is not None
                start = max(int(row[0]) if row else 0, int(top[0]))
                conn.execute(
                    "INSERT INTO settings (name, value) VALUES ('txn_seq', %s) ON CONFLICT "
                    "(name) DO UPDATE SET value = excluded.value",
                    (str(start + count),),
                )
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return start

    async def card_limit_usage(self, card_id: int, business_day: int) -> list[tuple[str, int, int]]:
        rows = await self._rows(
            "SELECT o.categories, o.amount - COALESCE(SUM(r.amount), 0), "
            "CASE WHEN COALESCE(SUM(r.amount), 0) >= o.amount THEN 0 ELSE 1 END "
            "FROM journal o LEFT JOIN journal r ON r.original_txn_id = o.txn_id "
            "AND r.response_code = '00' AND r.txn_type IN ('reversal', 'void') "
            "WHERE o.card_id = $1 AND o.business_day = $2 AND o.response_code = '00' "
            "AND o.categories != '' GROUP BY o.txn_id",
            card_id,
            business_day,
        )
        return [(str(k), int(a), int(n)) for k, a, n in rows]

    # -- administration ------------------------------------------------------------------------
    def _admin(self, sql: str, args: tuple[object, ...]) -> None:
        """Seeding and operator inserts: one open transaction until ``flush_admin``."""
        with self._admin_lock:
            conn = self._adminc
            if conn is None:
                raise StoreError("store is not open")
            conn.execute(sql, args)  # psycopg opens the transaction with the first statement

    def flush_admin(self) -> None:
        with self._admin_lock:
            conn = self._adminc
            if conn is None:
                raise StoreError("store is not open")
            conn.commit()
            if self._seeding:  # the seeding is durable: the nodes waiting in is_empty go on
                conn.execute("SELECT pg_advisory_unlock(%s)", (SEED_LOCK,))
                conn.commit()
                self._seeding = False

    def _admin_tx(self, sql: str, args: tuple[object, ...]) -> None:
        """One statement in a transaction of its own, committed now."""
        with self._admin_lock:
            conn = self._adminc
            if conn is None:
                raise StoreError("store is not open")
            conn.commit()  # nothing of an earlier, unflushed batch rides along silently
            try:
                conn.execute(sql, args)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def update_terminal_keys(self, terminal_id: str, tpk: str, tak: str) -> None:
        self._admin_tx(
            "UPDATE terminals SET tpk = %s, tak = %s WHERE terminal_id = %s",
            (tpk, tak, terminal_id),
        )

    def rewrite_alert_texts(
        self, texts: Sequence[tuple[int, str]], *, setting: tuple[str, str]
    ) -> bool:
        """Replace ``(alert_id, text)`` texts and record ``setting`` in one transaction (for
        secrets stored by an older release, ``switch.notify.reseal``). Such texts exist only
        in SQLite stores (this backend came after the codes were sealed), so here the call
        just records ``setting``; True: nothing of an old text is left to clean up. (Were a
        text rewritten, its old row version would stay in the table's pages until VACUUM.)"""
        with self._admin_lock:
            conn = self._adminc
            if conn is None:
                raise StoreError("store is not open")
            conn.commit()
            try:
                with conn.cursor() as cur:
                    cur.executemany(
                        "UPDATE alerts SET text = %s WHERE alert_id = %s",
                        [(text, alert_id) for alert_id, text in texts],
                    )
                    cur.execute(
                        "INSERT INTO settings (name, value) VALUES (%s, %s) ON CONFLICT (name) "
                        "DO UPDATE SET value = excluded.value",
                        setting,
                    )
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return True

    # -- AlertOutbox (delegated: PostgresOutbox has its own connection) ----------------------
    def _alert_outbox(self) -> PostgresOutbox:
        if self._outbox is None:
            raise StoreError("store is not open")
        return self._outbox

    def claim_due_alerts(self, now: float, limit: int) -> list[Alert]:
        return self._alert_outbox().claim_due_alerts(now, limit)

    def mark_alerts_sent(self, sent: Sequence[tuple[int, str]], now: float) -> None:
        self._alert_outbox().mark_alerts_sent(sent, now)

    def mark_alert_failed(
        self, alert_id: int, error: str, next_attempt_at: float, give_up: bool
    ) -> None:
        self._alert_outbox().mark_alert_failed(alert_id, error, next_attempt_at, give_up)
