"""SQLite backend: the embedded default store (WAL, group commit, versioned migrations).

Group commit: ``commit()`` appends a unit to the pending batch and awaits a future. The
batch is written on the event-loop thread (one transaction, ``executemany`` per table: no
lock ping-pong between threads while rows are bound) and its COMMIT -- the fsync, with
``synchronous=FULL`` when durable -- runs on a dedicated thread with the GIL released. The
futures are resolved only after COMMIT returned, so an answer never leaves before its unit is
durable. While one COMMIT is in flight, new units accumulate and go out together in the next
transaction: the cost of an fsync is shared by every authorization that arrived meanwhile.

Reads use their own connection on the loop thread (WAL readers never block the writer);
administrative writes use a third connection behind a lock, and the SMS outbox (called from
the delivery worker's thread) a fourth, owned by ``SqliteOutbox``. If a batch fails, every
unit in it fails and the store refuses further commits (the core then answers 96): memory and
disk must not diverge.
"""

# ruff: noqa: S608 -- the f-strings only splice fixed column lists, never input
from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import Any, Final

from switch.core.domain import (
    Account,
    AccountKind,
    Bill,
    Card,
    CardStatus,
    Hold,
)
from switch.notify.outbox import Alert
from switch.store.api import (
    GUARD_ACCOUNT,
    GUARD_CARD,
    Changes,
    IdempotencyRow,
    JournalRow,
    OpenHold,
    OriginalSummary,
    StoreError,
    stamp_source,
)
from switch.store.files import prepare_sqlite_file
from switch.store.original_sql import (
    followup_sums_sql,
    summarize_original,
    undone_followups_sql,
)
from switch.store.reference_reads import ReferenceReads, ReferenceWrites
from switch.store.settle import GroupCommitQueue, resolve_batch
from switch.store.sqlite_cardbase import write_cardbase_rows
from switch.store.sqlite_outbox import SqliteOutbox

_CARD_COLS = (
    "card_id, pan_hash, pan_first6, pan_last4, account_id, product, expiry, service_code, "
    "pan_sequence, pvki, pvv, ibm_offset, pvk, cvk, mk_ac, status, pin_tries, otp_tries, "
    "activated_at"
)
_ACCOUNT_COLS = "account_id, number, kind, holder, phone, currency, balance, held, may_go_negative"
# reads carry the row's version (migration 0011, docs/architecture.md §7); inserts leave it 0
_CARD_READ = _CARD_COLS + ", version"
_ACCOUNT_READ = _ACCOUNT_COLS + ", version"
_JOURNAL_COLS = (
    "txn_id, created_at, business_day, txn_type, channel, response_code, auth_code, card_id, "
    "account_id, masked_pan, amount, fee, currency, categories, acquirer_id, terminal_id, stan, "
    "transmission, rrn, merchant_id, original_txn_id, counter_account_id, route, message, "
    "refused"
)


_CARD_AND_ACCOUNT: Final = (
    "SELECT "
    + ", ".join(f"c.{x.strip()}" for x in _CARD_READ.split(","))
    + ", "
    + ", ".join(f"a.{x.strip()}" for x in _ACCOUNT_READ.split(","))
    + " FROM cards c LEFT JOIN accounts a ON a.account_id = c.account_id WHERE c.pan_hash = ?"
)
#: ``PRAGMA mmap_size`` of the read connection (see ``SqliteStore.open``).
READ_MMAP_BYTES: Final = 2**31


def _migrations() -> list[tuple[int, str]]:
    files = resources.files("switch.store").joinpath("migrations")
    out = []
    for f in files.iterdir():
        name = f.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), f.read_text("utf-8")))
    return sorted(out)


_STATUS: Final = {s.value: s for s in CardStatus}
_KIND: Final = {k.value: k for k in AccountKind}


def _card(r: Sequence[Any]) -> Card:
    """The card of a ``_CARD_READ`` row (its first 20 columns). Positional: the columns come
    back typed by their affinities (INTEGER, TEXT, BLOB, REAL), so converting each one again
    by keyword cost ~5 us of a ~8 us construction, on every card a cold cache reads."""
    status = _STATUS.get(r[15]) or CardStatus(r[15])
    return Card(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
                r[13], r[14], status, r[16], r[17], r[18], r[19])  # fmt: skip


def _account(r: Sequence[Any]) -> Account:
    """The account of an ``_ACCOUNT_READ`` row (its first 10 columns), as ``_card``."""
    kind = _KIND.get(r[2]) or AccountKind(r[2])
    return Account(r[0], r[1], kind, r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9])


def _journal(r: tuple[Any, ...]) -> JournalRow:
    return JournalRow._make((*r[:-1], bool(r[-1])))


log = logging.getLogger("switch.store")


class SqliteStore(GroupCommitQueue, ReferenceReads, ReferenceWrites):
    """``Store`` on one SQLite file (see the module docstring for the commit protocol)."""

    _PH = "?"

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self._read: sqlite3.Connection | None = None
        self._write: sqlite3.Connection | None = None
        self._adminc: sqlite3.Connection | None = None
        self._admin_lock = threading.Lock()
        self._outbox: SqliteOutbox | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[Changes, asyncio.Future[None]]] = []
        self._flush_scheduled = False
        self._committing = False
        self._failed: BaseException | None = None
        self._stamp = stamp_source()  # versions of rows written without a guard
        #: Set by a single node that holds its state directory's exclusive lock: nobody else
        #: writes this file, so a unit's expected versions are checked against the batch's
        #: own chain only and the rows' versions are not read back (they are still written).
        self.exclusive = False
        self.conflicts = 0  # statistics: units refused by their guards
        self.batches = 0  # statistics: number of group commits and units committed
        self.units = 0
        #: told ``(units, seconds)`` of each durable group commit (the metrics' histograms)
        self.on_commit: Callable[[int, float], object] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # A large statement cache: the group commit's multi-row statements differ by row count.
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=1024
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'OFF'}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: hot index pages stay in memory
        return conn

    async def open(self) -> None:
        prepare_sqlite_file(self.path)  # 0600 before SQLite creates it (and its -wal/-shm)
        self._write = self._connect()
        self._migrate(self._write)
        self._read = self._connect()
        self._read.execute("PRAGMA query_only=ON")
        # Reads through a memory map: every commit empties a reader's page cache (WAL), so a
        # cold card's B-tree pages were copied in again by read() calls; mapped, they are
        # read in place (-6 us a cold card and account, bench_scale at 1 M cards). SQLite
        # caps the size at its build's maximum (2 GiB here); pages beyond are read as before.
        self._read.execute(f"PRAGMA mmap_size={READ_MMAP_BYTES}")
        self._adminc = self._connect()
        # Foreign keys are enforced where rows are created by hand (seeding, operators). The
        # group-commit connection leaves them off: the core only posts to accounts it has
        # loaded, and the per-row parent lookups were a measurable share of the write cost.
        self._adminc.execute("PRAGMA foreign_keys=ON")
        self._outbox = SqliteOutbox(self.path, durable=self.durable)
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
            "applied_at REAL NOT NULL)"
        )
        done = {v for (v,) in conn.execute("SELECT version FROM schema_version")}
        for version, sql in _migrations():
            if version in done:
                continue
            script = (
                f"BEGIN IMMEDIATE;\n{sql}\n;INSERT INTO schema_version VALUES "
                f"({version}, {time.time()!r});\nCOMMIT;"
            )
            try:
                conn.executescript(script)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        while self._pending or self._committing or self._flush_scheduled:
            await asyncio.sleep(0.001)  # let the last batches reach the disk
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._admin_lock:
            for conn in (self._read, self._write, self._adminc):
                if conn is not None:
                    conn.close()
            self._read = self._write = self._adminc = None
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
        conn = self._write
        if self._failed is not None or conn is None or self._executor is None:
            resolve_batch(batch, self._failed or StoreError("store is closed"))
            return
        # The rows are written here, on the loop's thread, and only the COMMIT (the fsync)
        # goes to the writer thread. Measured: writing on the writer thread as well was
        # slower, because every sqlite3 call there had to win the GIL back from the loop.
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                self._failed = exc
                resolve_batch(batch, exc)
                return
            # Another process over the same file held the write lock for the whole busy
            # timeout: nothing was written, so the batch waits its turn instead of failing.
            log.warning("store busy (another writer): batch of %d waits", len(batch))
            self._pending[:0] = batch
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_later(0.005, self._flush)
            return
        try:
            try:
                units = [c for c, _ in batch]
                written, versions = _check_guards(conn, units, self._stamp, self.exclusive)
                self._write_units(conn, written, versions)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException as exc:  # every unit of the batch fails, and later ones too
            self._failed = exc
            resolve_batch(batch, exc)
            return
        if len(written) < len(batch):
            self.conflicts += len(batch) - len(written)
        self._committing = True
        assert self._loop is not None
        done = self._loop.run_in_executor(self._executor, self._commit_now, conn)
        done.add_done_callback(lambda f: self._committed(batch, f, started, written))

    @staticmethod
    def _commit_now(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("COMMIT")  # the fsync happens here, with the GIL released
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _committed(
        self,
        batch: list[tuple[Changes, asyncio.Future[None]]],
        done: asyncio.Future[None],
        started: float,
        written: list[Changes],
    ) -> None:
        self._committing = False
        exc = None if done.cancelled() else done.exception()
        if done.cancelled():
            exc = StoreError("commit cancelled")
        if exc is not None:
            self._failed = exc
        else:
            self.batches += 1
            self.units += len(batch)
            if self.on_commit is not None:
                self.on_commit(len(batch), time.perf_counter() - started)
        resolve_batch(batch, exc, written)
        if self._pending:
            self._flush()  # the units that arrived during the fsync go out together now

    @staticmethod
    def _write_units(
        conn: sqlite3.Connection,
        units: list[Changes],
        versions: tuple[dict[int, int], dict[int, int]],
    ) -> None:
        """Every table's rows of the batch in one multi-row statement (per ``_CHUNK`` rows).

        Not ``executemany``: sqlite3 releases and re-takes the GIL around every row it steps,
        and under load each re-take can wait for another thread (the SMS worker, the commit
        thread) to let go of it; a few statements per batch instead of one per row.
        """
        for c in units:  # an import batch of a running switch: before the cards' snapshots
            if c.cardbase is not None:
                write_cardbase_rows(conn, c.cardbase)
        _rows(
            conn,
            f"INSERT INTO journal ({_JOURNAL_COLS}) VALUES",
            25,
            [c.journal for c in units if c.journal is not None],
        )
        _rows(
            conn,
            "INSERT INTO postings (txn_id, leg, account_id, amount) VALUES",
            4,
            [p for c in units for p in c.postings],
        )
        account_versions, card_versions = versions  # each row's version after the batch
        accounts: dict[int, tuple[int, int, int, int]] = {}
        for c in units:  # later snapshots win: they include the earlier units' effects
            for a in c.accounts:
                accounts[a[0]] = (*a, account_versions[a[0]])
        _rows(
            conn,
            "UPDATE accounts SET balance = v.column2, held = v.column3, version = v.column4 "
            "FROM (VALUES",
            4,
            list(accounts.values()),
            ") AS v WHERE accounts.account_id = v.column1",
        )
        deltas: dict[int, tuple[int, int]] = {}
        for c in units:
            for i, dbal, dheld in c.account_deltas:
                b, h = deltas.get(i, (0, 0))
                deltas[i] = (b + dbal, h + dheld)
        _rows(
            conn,
            "UPDATE accounts SET balance = balance + v.column2, held = held + v.column3 "
            "FROM (VALUES",
            3,
            [(i, b, h) for i, (b, h) in deltas.items()],
            ") AS v WHERE accounts.account_id = v.column1",
        )
        cards: dict[int, tuple[int, str, int, int, float | None, int]] = {}
        for c in units:
            for k in c.cards:
                cards[k[0]] = (*k, card_versions[k[0]])
        _rows(
            conn,
            "UPDATE cards SET status = v.column2, pin_tries = v.column3, otp_tries = v.column4, "
            "activated_at = v.column5, version = v.column6 FROM (VALUES",
            6,
            list(cards.values()),
            ") AS v WHERE cards.card_id = v.column1",
        )
        _rows(
            conn,
            "INSERT INTO holds (txn_id, account_id, amount, remaining, status) VALUES",
            5,
            [h for c in units for h in c.holds],
            " ON CONFLICT (txn_id) DO UPDATE SET remaining = excluded.remaining, "
            "status = excluded.status",
        )
        _rows(
            conn,
            "UPDATE bills SET paid_txn = v.column3 FROM (VALUES",
            3,
            [b for c in units for b in c.bills],
            ") AS v WHERE bills.biller_id = v.column1 AND bills.reference = v.column2",
        )
        _rows(
            conn,
            "INSERT INTO otps (card_id, code_hash, expires_at) VALUES",
            3,
            [o for c in units for o in c.otps],
            " ON CONFLICT (card_id) DO UPDATE SET code_hash = excluded.code_hash, "
            "expires_at = excluded.expires_at",
        )
        _rows(
            conn,
            "DELETE FROM otps WHERE card_id IN (VALUES",
            1,
            [(d,) for c in units for d in c.otp_deletes],
            ")",
        )
        _rows(
            conn,
            "INSERT INTO otp_sends (card_id, merchant_id, created_at) VALUES",
            3,
            [s for c in units for s in c.otp_sends],
        )
        # A key seen again after the idempotency window is a new request (ISO 8583 dates
        # repeat every year): it takes the slot over instead of failing.
        _rows(
            conn,
            "INSERT INTO idempotency (key, fingerprint, txn_id, result, created_at) VALUES",
            5,
            [c.idempotency for c in units if c.idempotency is not None],
            " ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, "
            "txn_id = excluded.txn_id, result = excluded.result, "
            "created_at = excluded.created_at",
        )
        _rows(
            conn,
            "INSERT INTO alerts (msisdn, text, txn_id, created_at, next_attempt_at, kind, "
            "masked_pan, amount, currency, place, available) VALUES",
            11,
            [
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
        )
        _rows(
            conn,
            "INSERT INTO operator_audit (created_at, operator_id, action, target, outcome, "
            "detail) VALUES",
            6,
            [a for c in units for a in c.audit],
        )
        _rows(
            conn,
            "INSERT INTO merchant_events (event_id, merchant_id, event_type, payment_id, body, "
            "created_at, next_attempt_at) VALUES",
            7,
            [(*e, e.created_at) for c in units for e in c.merchant_events],
        )
        _rows(
            conn,
            "INSERT INTO payment_orders (txn_id, payment_id, merchant_id, order_reference, "
            "metadata, created_at) VALUES",
            6,
            [o for c in units for o in c.payment_orders],
        )

    # -- reads -------------------------------------------------------------------------------
    def _q(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        conn = self._read
        if conn is None:
            raise StoreError("store is not open")
        return conn.execute(sql, args).fetchall()

    def is_empty(self) -> bool:
        return not self._q("SELECT 1 FROM accounts LIMIT 1")

    async def card_and_account(self, pan_hash: bytes) -> tuple[Card, Account | None] | None:
        """The card and its account in one statement: half the statements of a cold load
        (``Pipeline.card`` uses it when the store has it)."""
        rows = self._q(_CARD_AND_ACCOUNT, (pan_hash,))
        if not rows:
            return None
        r = rows[0]
        return _card(r), (None if r[20] is None else _account(r[20:]))

    async def card_by_pan_hash(self, pan_hash: bytes) -> Card | None:
        rows = self._q(f"SELECT {_CARD_READ} FROM cards WHERE pan_hash = ?", (pan_hash,))
        return _card(rows[0]) if rows else None

    async def card_by_id(self, card_id: int) -> Card | None:
        rows = self._q(f"SELECT {_CARD_READ} FROM cards WHERE card_id = ?", (card_id,))
        return _card(rows[0]) if rows else None

    async def account(self, account_id: int) -> Account | None:
        rows = self._q(f"SELECT {_ACCOUNT_READ} FROM accounts WHERE account_id = ?", (account_id,))
        return _account(rows[0]) if rows else None

    async def account_by_number(self, number: str) -> Account | None:
        rows = self._q(f"SELECT {_ACCOUNT_READ} FROM accounts WHERE number = ?", (number,))
        return _account(rows[0]) if rows else None

    async def bill(self, biller_id: str, reference: str) -> Bill | None:
        rows = self._q(
            "SELECT biller_id, reference, amount_due, paid_txn FROM bills "
            "WHERE biller_id = ? AND reference = ?",
            (biller_id, reference),
        )
        if not rows:
            return None
        b, r, a, p = rows[0]
        return Bill(str(b), str(r), int(a), None if p is None else str(p))

    async def bill_paid_by(self, txn_id: str) -> Bill | None:
        rows = self._q(
            "SELECT biller_id, reference, amount_due, paid_txn FROM bills WHERE paid_txn = ?",
            (txn_id,),
        )
        if not rows:
            return None
        b, r, a, paid = rows[0]
        return Bill(str(b), str(r), int(a), str(paid))

    async def hold(self, txn_id: str) -> Hold | None:
        rows = self._q(
            "SELECT txn_id, account_id, amount, remaining, status FROM holds WHERE txn_id = ?",
            (txn_id,),
        )
        return Hold(*rows[0]) if rows else None

    async def otp(self, card_id: int) -> tuple[bytes, float] | None:
        rows = self._q("SELECT code_hash, expires_at FROM otps WHERE card_id = ?", (card_id,))
        return (bytes(rows[0][0]), float(rows[0][1])) if rows else None

    async def otp_sends_since(
        self, card_id: int, merchant_id: str, since: float
    ) -> tuple[int, int]:
        rows = self._q(
            "SELECT (SELECT COUNT(*) FROM otp_sends WHERE card_id = ? AND created_at >= ?), "
            "(SELECT COUNT(*) FROM otp_sends WHERE merchant_id = ? AND created_at >= ?)",
            (card_id, since, merchant_id, since),
        )
        return int(rows[0][0]), int(rows[0][1])

    async def idempotent(self, key: str) -> IdempotencyRow | None:
        rows = self._q(
            "SELECT key, fingerprint, txn_id, result, created_at FROM idempotency WHERE key = ?",
            (key,),
        )
        return IdempotencyRow(*rows[0]) if rows else None

    async def txn_id_for_key(self, key: str) -> str | None:
        rows = self._q("SELECT txn_id FROM idempotency WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def journal_entry(self, txn_id: str) -> JournalRow | None:
        rows = self._q(f"SELECT {_JOURNAL_COLS} FROM journal WHERE txn_id = ?", (txn_id,))
        return _journal(rows[0]) if rows else None

    async def journal_for_merchant(self, merchant_id: str, limit: int) -> list[JournalRow]:
        rows = self._q(
            f"SELECT {_JOURNAL_COLS} FROM journal WHERE merchant_id = ? AND merchant_id != '' "
            "AND refused = 0 ORDER BY txn_id DESC LIMIT ?",
            (merchant_id, limit),
        )
        return [_journal(r) for r in rows]

    async def open_holds_placed_before(
        self, cutoff: float, after_txn_id: str, limit: int
    ) -> list[OpenHold]:
        rows = self._q(
            "SELECT h.txn_id, h.account_id, h.amount, h.remaining, j.created_at, "
            "j.business_day, j.categories, j.card_id, COALESCE(c.product, ''), j.channel, "
            "j.merchant_id, j.masked_pan, j.currency, j.counter_account_id "
            "FROM holds h JOIN journal j ON j.txn_id = h.txn_id "
            "LEFT JOIN cards c ON c.card_id = j.card_id "
            "WHERE h.status = 'open' AND h.txn_id > ? AND j.created_at <= ? "
            "ORDER BY h.txn_id LIMIT ?",
            (after_txn_id, cutoff, limit),
        )
        return [OpenHold(*r) for r in rows]

    async def original(self, txn_id: str) -> OriginalSummary | None:
        j = await self.journal_entry(txn_id)
        if j is None:
            return None
        sums = self._q(followup_sums_sql("?"), (txn_id,))
        return summarize_original(j, sums, self._q(undone_followups_sql("?"), (txn_id,)))

    def max_journal_seq(self) -> int:
        return int(self._q("SELECT COALESCE(MAX(txn_id), 0) FROM journal")[0][0])

    def reserve_txn_ids(self, count: int) -> int:
        conn = self._adminc
        if conn is None:
            raise StoreError("store is not open")
        with self._admin_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute("SELECT value FROM settings WHERE name = 'txn_seq'").fetchall()
                (top,) = conn.execute("SELECT COALESCE(MAX(txn_id), 0) FROM journal").fetchone()
                start = max(int(rows[0][0]) if rows else 0, int(top))
                conn.execute(
                    "INSERT INTO settings VALUES ('txn_seq', ?) ON CONFLICT (name) DO UPDATE "
                    "SET value = excluded.value",
                    (str(start + count),),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return start

    async def card_limit_usage(self, card_id: int, business_day: int) -> list[tuple[str, int, int]]:
        rows = self._q(
            "SELECT o.categories, o.amount - COALESCE(SUM(r.amount), 0), "
            "CASE WHEN COALESCE(SUM(r.amount), 0) >= o.amount THEN 0 ELSE 1 END "
            "FROM journal o LEFT JOIN journal r ON r.original_txn_id = o.txn_id "
            "AND r.response_code = '00' AND r.txn_type IN ('reversal', 'void') "
            "WHERE o.card_id = ? AND o.business_day = ? AND o.response_code = '00' "
            "AND o.categories != '' GROUP BY o.txn_id",
            (card_id, business_day),
        )
        return [(str(k), int(a), int(n)) for k, a, n in rows]

    # -- administration ------------------------------------------------------------------------
    def _admin(self, sql: str, args: tuple[object, ...]) -> None:
        """Seeding and operator inserts: one open transaction until ``flush_admin`` (call it
        before authorizations start: the group commit waits for this connection's lock)."""
        conn = self._adminc
        if conn is None:
            raise StoreError("store is not open")
        with self._admin_lock:
            if not conn.in_transaction:
                conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, args)

    def flush_admin(self) -> None:
        conn = self._adminc
        assert conn is not None
        with self._admin_lock:
            if conn.in_transaction:
                conn.execute("COMMIT")

    # -- AlertOutbox -----------------------------------------------------------------------------
    # The SQL lives in ``SqliteOutbox`` (its own connection), which the delivery worker also
    # uses alone in its own process; the store only delegates.
    def _alert_outbox(self) -> SqliteOutbox:
        if self._outbox is None:
            raise StoreError("store is not open")
        return self._outbox

    def claim_due_alerts(self, now: float, limit: int) -> list[Alert]:
        return self._alert_outbox().claim_due_alerts(now, limit)

    def _admin_tx(self, sql: str, args: tuple[object, ...]) -> None:
        self._admin_tx_many(sql, [args])

    def _admin_tx_many(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """One statement over ``rows`` in one transaction on the admin connection."""
        conn = self._adminc
        if conn is None:
            raise StoreError("store is not open")
        with self._admin_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def rewrite_alert_texts(
        self, texts: Sequence[tuple[int, str]], *, setting: tuple[str, str]
    ) -> bool:
        """Replace ``(alert_id, text)`` texts and record ``setting`` in one transaction, with
        no copy of the old texts left behind: ``secure_delete`` zeroes the space they held in
        each page, and a ``TRUNCATE`` checkpoint then writes the pages home and empties the
        WAL (which may still hold frames of the old texts). For secrets stored by an older
        release (``switch.notify.reseal``). False if a reader kept the checkpoint from
        completing (the old frames go at a later checkpoint)."""
        conn = self._adminc
        if conn is None:
            raise StoreError("store is not open")
        with self._admin_lock:
            (before,) = conn.execute("PRAGMA secure_delete").fetchone()
            conn.execute("PRAGMA secure_delete=ON")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "UPDATE alerts SET text = ? WHERE alert_id = ?",
                        [(text, alert_id) for alert_id, text in texts],
                    )
                    conn.execute(
                        "INSERT INTO settings VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                        "value = excluded.value",
                        setting,
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA secure_delete={int(before)}")
        return not busy

    def update_terminal_keys(self, terminal_id: str, tpk: str, tak: str) -> None:
        self._admin_tx(
            "UPDATE terminals SET tpk = ?, tak = ? WHERE terminal_id = ?", (tpk, tak, terminal_id)
        )

    def mark_alerts_sent(self, sent: Sequence[tuple[int, str]], now: float) -> None:
        self._alert_outbox().mark_alerts_sent(sent, now)

    def mark_alert_failed(
        self, alert_id: int, error: str, next_attempt_at: float, give_up: bool
    ) -> None:
        self._alert_outbox().mark_alert_failed(alert_id, error, next_attempt_at, give_up)

    # -- inspection helpers for tests and operators ----------------------------------------------
    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Read-only SQL for tests, audits and the CLI."""
        return self._q(sql, args)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the write lock."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _versions(conn: sqlite3.Connection, table: str, key: str, ids: set[int]) -> dict[int, int]:
    """The current version of each row of ``ids`` (inside the write transaction)."""
    out: dict[int, int] = {}
    rows = list(ids)
    for i in range(0, len(rows), _ID_CHUNK):
        chunk = rows[i : i + _ID_CHUNK]
        marks = ",".join("?" * len(chunk))
        for row_id, version in conn.execute(
            f"SELECT {key}, version FROM {table} WHERE {key} IN ({marks})", chunk
        ):
            out[int(row_id)] = int(version)
    return out


def _check_guards(
    conn: sqlite3.Connection,
    units: list[Changes],
    stamp: Callable[[], int],
    exclusive: bool = False,
) -> tuple[list[Changes], tuple[dict[int, int], dict[int, int]]]:
    """Which units of a batch may be written, and the version each written row ends with.

    Runs inside the batch's write transaction, so nobody else changes a row between the read
    of its version and the write (SQLite has one writer; PostgreSQL locks the rows with
    ``SELECT ... FOR UPDATE`` in the same place). Units are taken in order: one whose guards
    all hold is written and moves its rows to its new versions, which the next units of the
    batch are checked against (versions chain); one whose guard fails is left out whole. A
    unit without guards writes its ``accounts``/``cards`` rows unguarded, with versions made
    up here (every copy elsewhere is then stale); a unit with guards guards every such row.
    ``exclusive`` (a single node, no other writer): a row's version is taken to be what the
    first unit of the batch guarding it expects, so only the chain within the batch is
    checked, with no read (the rows are still written with their versions).
    """
    account_ids: set[int] = set()
    card_ids: set[int] = set()
    keys: set[str] = set()
    bills: set[tuple[str, str]] = set()
    for c in units:
        if not exclusive:
            for kind, row_id, _, _ in c.guards:
                (card_ids if kind else account_ids).add(row_id)
            if not c.guards:
                account_ids.update(a[0] for a in c.accounts)
                card_ids.update(k[0] for k in c.cards)
        if c.idempotency_expects is not None and c.idempotency is not None:
            keys.add(c.idempotency.key)
        for b in c.bill_guards:
            bills.add((b[0], b[1]))
    views: tuple[dict[int, int], dict[int, int]]
    if exclusive:
        views = ({}, {})
        for c in units:
            for kind, row_id, expected, _ in c.guards:
                views[kind].setdefault(row_id, expected)
    else:
        views = (
            _versions(conn, "accounts", "account_id", account_ids),
            _versions(conn, "cards", "card_id", card_ids),
        )
    slots: dict[str, tuple[str, float]] = {}
    for key in keys:
        for txn_id, created_at in conn.execute(
            "SELECT txn_id, created_at FROM idempotency WHERE key = ?", (key,)
        ):
            slots[key] = (str(txn_id), float(created_at))
    paid: dict[tuple[str, str], str | None] = {}
    for biller, ref in bills:
        for (mark,) in conn.execute(
            "SELECT paid_txn FROM bills WHERE biller_id = ? AND reference = ?", (biller, ref)
        ):
            paid[biller, ref] = None if mark is None else str(mark)
    written: list[Changes] = []
    for c in units:
        if c.guards:
            if not _guards_hold(c, views, slots, paid):
                continue
        else:  # written without a guard: a version nobody expects
            for a in c.accounts:
                views[GUARD_ACCOUNT][a[0]] = stamp()
            for k in c.cards:
                views[GUARD_CARD][k[0]] = stamp()
        written.append(c)
        if c.idempotency is not None and c.idempotency.key in keys:
            slots[c.idempotency.key] = (c.idempotency.txn_id, c.idempotency.created_at)
        for biller, ref, new_mark in c.bills:
            paid[biller, ref] = new_mark
    return written, views


def _guards_hold(
    c: Changes,
    views: tuple[dict[int, int], dict[int, int]],
    slots: dict[str, tuple[str, float]],
    paid: dict[tuple[str, str], str | None],
) -> bool:
    """Check ``c``'s guards against the batch's views, moving each row to its new version as
    it goes (a row the unit guards twice chains); on a failure every move is undone -- a row
    was moved only from the version it was expected at, so that is what it goes back to --
    and False returned."""
    guards = c.guards
    done = 0
    ok = True
    for kind, row_id, expected, new in guards:
        view = views[kind]
        if view.get(row_id) != expected:
            ok = False
            break
        if new != expected:
            view[row_id] = new
        done += 1
    if ok:
        expects = c.idempotency_expects
        if expects is not None and c.idempotency is not None:
            slot = slots.get(c.idempotency.key)
            if slot is not None and slot[1] >= expects.since and slot[0] != expects.txn_id:
                ok = False  # another node answered this key
        for biller, ref, expected_mark in c.bill_guards:
            if paid.get((biller, ref)) != expected_mark:
                ok = False
    if not ok:
        for kind, row_id, expected, new in reversed(guards[:done]):
            if new != expected:
                views[kind][row_id] = expected
    return ok


#: Ids per ``IN (...)`` of the guards' version reads (one statement for most batches)
_ID_CHUNK = 4096
#: Rows per multi-row statement: below SQLite's 32,766 bound parameters for the widest table
#: (25 journal columns), and few distinct statement texts for the statement cache.
_CHUNK = 256


@functools.lru_cache(maxsize=1024)
def _values_sql(head: str, width: int, n: int, tail: str) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return f"{head} {','.join([row] * n)}{tail}"


def _rows(
    conn: sqlite3.Connection,
    head: str,
    width: int,
    rows: Sequence[Sequence[object]],
    tail: str = "",
) -> None:
    """``head (?,..),(?,..)... tail`` over ``rows``, in order, ``_CHUNK`` rows a statement.
    Rows later in the list are applied after earlier ones (an upsert of the same key twice
    in one batch ends with the later row, as ``executemany`` did)."""
    for i in range(0, len(rows), _CHUNK):
        chunk = rows[i : i + _CHUNK]
        conn.execute(_values_sql(head, width, len(chunk), tail), [*chain.from_iterable(chunk)])
