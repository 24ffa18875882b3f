"""The card base import's own SQLite connection: batches of new or changed cards and accounts.

Why a class of its own (like ``SqliteOutbox``): ``switch import`` runs as a separate command,
with the state directory locked so no ``switch run`` can hold live copies of the rows it
writes, and needs none of ``SqliteStore``'s group commit. Each batch is one ``BEGIN
IMMEDIATE`` ... ``COMMIT`` on this connection, and carries the file's ``import_progress`` row
(migration 0005) in the same transaction: a batch is either entirely in the store with the
progress that says so, or not at all.

Reads are by key, ``IN`` lists of at most ``_IN_CHUNK`` values (well under SQLite's bound
parameter limit), so a batch of 10,000 records costs a few dozen statements, not 10,000.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

from switch.store.api import CardBaseRows, StoreError

_IN_CHUNK = 500

CARD_INSERT = (
    "INSERT INTO cards (card_id, pan_hash, pan_first6, pan_last4, account_id, product, expiry, "
    "service_code, pan_sequence, pvki, pvv, ibm_offset, pvk, cvk, mk_ac, status, holder) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
ACCOUNT_INSERT = (
    "INSERT INTO accounts (account_id, number, kind, holder, phone, currency, balance, held, "
    "may_go_negative) VALUES (?, ?, 'ccp', ?, ?, ?, ?, 0, 0)"
)
#: (status, expiry, holder, service_code, pan_sequence, pvki, pvv, ibm_offset, new_pin,
#: card_id): what a re-import may change. A replacement card (same PAN, new expiry, new PIN
#: data) starts with no wrong PINs counted when its PIN data changed (``new_pin`` = 1; compared
#: to 0, not taken as a truth value: PostgreSQL runs the statement too, and its ``CASE WHEN``
#: takes a boolean).
CARD_UPDATE = (
    "UPDATE cards SET status = ?, expiry = ?, holder = ?, service_code = ?, pan_sequence = ?, "
    "pvki = ?, pvv = ?, ibm_offset = ?, "
    "pin_tries = CASE WHEN CAST(? AS BIGINT) <> 0 THEN 0 ELSE pin_tries END WHERE card_id = ?"
)
ACCOUNT_UPDATE = "UPDATE accounts SET holder = ?, phone = ? WHERE account_id = ?"
PROGRESS_UPSERT = (
    "INSERT INTO import_progress (kind, file_sha256, file_name, next_offset, next_line, "
    "loaded, updated, rejected, done, started_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, file_sha256) DO UPDATE "
    "SET next_offset = excluded.next_offset, next_line = excluded.next_line, "
    "loaded = excluded.loaded, updated = excluded.updated, rejected = excluded.rejected, "
    "done = excluded.done, updated_at = excluded.updated_at"
)


#: The import's look-ups by key, as both backends read them (``stored_cards``,
#: ``stored_accounts`` map their rows).
CARDS_BY_HASH = (
    "SELECT pan_hash, card_id, account_id, status, expiry, pvki, pvv, ibm_offset FROM cards "
    "WHERE pan_hash"
)
ACCOUNTS_BY_NUMBER = (
    "SELECT number, account_id, kind, currency, holder, phone FROM accounts WHERE number"
)
NEXT_CARD_ID = "SELECT COALESCE(MAX(card_id), 0) + 1 FROM cards"
NEXT_ACCOUNT_ID = "SELECT COALESCE(MAX(account_id), 0) + 1 FROM accounts"


def progress_select(ph: str) -> str:
    """Where an import of a file stands, args ``(kind, file_sha256)``, in the driver's
    placeholder ``ph`` (``?`` or ``%s``): one statement for both backends' ``progress``."""
    return (
        "SELECT next_offset, next_line, loaded, updated, rejected, done, updated_at "  # noqa: S608
        f"FROM import_progress WHERE kind = {ph} AND file_sha256 = {ph}"
    )


def progress_from_row(row: Sequence[Any] | None) -> Progress | None:
    """A ``progress_select`` row (None: no such import yet) as a ``Progress``."""
    if row is None:
        return None
    return Progress(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]),
                    bool(row[5]), float(row[6]))  # fmt: skip


def progress_row(
    kind: str, file_sha256: str, file_name: str, p: Progress, now: float
) -> tuple[object, ...]:
    """``PROGRESS_UPSERT``'s parameters."""
    return (kind, file_sha256, file_name, p.next_offset, p.next_line, p.loaded, p.updated,
            p.rejected, int(p.done), now, now)  # fmt: skip


def write_cardbase_rows(conn: sqlite3.Connection, rows: CardBaseRows) -> None:
    """A running switch's import batch, inside the group commit's open transaction (the
    store's one writer): accounts first (a new card may name a new account), then cards."""
    if rows.new_accounts:
        conn.executemany(ACCOUNT_INSERT, rows.new_accounts)
    if rows.account_updates:
        conn.executemany(ACCOUNT_UPDATE, rows.account_updates)
    if rows.new_cards:
        conn.executemany(CARD_INSERT, rows.new_cards)
    if rows.card_updates:
        conn.executemany(CARD_UPDATE, rows.card_updates)
    if rows.progress is not None:
        conn.execute(PROGRESS_UPSERT, rows.progress)


def stored_cards(rows: Iterable[Sequence[Any]]) -> dict[bytes, StoredCard]:
    """``CARDS_BY_HASH`` rows by PAN hash."""
    return {
        bytes(h): StoredCard(int(c), int(a), str(s), str(e), int(k), str(v), str(o))
        for h, c, a, s, e, k, v, o in rows
    }


def stored_accounts(rows: Iterable[Sequence[Any]]) -> dict[str, StoredAccount]:
    """``ACCOUNTS_BY_NUMBER`` rows by number (the columns' own types, INTEGER and TEXT, come
    back as int and str from both drivers: no conversions)."""
    make = StoredAccount._make
    return {r[0]: make(r[1:]) for r in rows}


class StoredCard(NamedTuple):
    card_id: int
    account_id: int
    status: str
    expiry: str
    pvki: int
    pvv: str
    ibm_offset: str


class StoredAccount(NamedTuple):
    account_id: int
    kind: str
    currency: int
    holder: str
    phone: str


class Progress(NamedTuple):
    next_offset: int
    next_line: int
    loaded: int
    updated: int
    rejected: int
    done: bool
    updated_at: float


class SqliteCardBase:
    """Batched writes of an import into ``db_path`` (a store ``SqliteStore.open`` migrated)."""

    def __init__(self, db_path: Path, *, durable: bool = True, readonly: bool = False) -> None:
        self.path = db_path
        # One thread at a time, but not always the same (the live import's look-ups run on
        # the event loop's worker threads).
        if readonly:  # a running switch's look-ups (switch.cardbase.live): it writes itself
            self._conn = sqlite3.connect(
                f"file:{db_path}?mode=ro", uri=True, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            self._conn.execute("PRAGMA query_only=ON")
            self._conn.execute("PRAGMA busy_timeout=5000")
            # the import's reader looks up every card's account here: keep the accounts'
            # number index cached (with SQLite's default 2 MiB, 1 M accounts cost a page
            # read per look-up)
            self._conn.execute("PRAGMA cache_size=-262144")
            self._check_migrated(db_path)
            return
        self._conn = sqlite3.connect(
            db_path, isolation_level=None, cached_statements=256, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL, not FULL: in WAL mode a power cut may lose the last commits but never
        # leaves a torn one, and each batch carries its own progress row, so a rerun redoes
        # exactly the batches lost. The fsync then comes with each checkpoint, not each batch.
        self._conn.execute(f"PRAGMA synchronous={'NORMAL' if durable else 'OFF'}")
        # Checkpoint every ~1 GiB of WAL: an index page dirtied by many batches is copied
        # into the database once per checkpoint instead of once per few batches (measured
        # with 4 M cards: 77 s of COMMIT at 100 MiB, 53 s at 1 GiB).
        self._conn.execute("PRAGMA wal_autocheckpoint=250000")
        self._conn.execute("PRAGMA busy_timeout=5000")
        # Each batch probes the UNIQUE indexes at random places (PAN hashes): keep them cached.
        # 1 GiB, whatever the file's size: the PAN-hash index of 16 M cards (~0.9 GB) fits,
        # where 256 MiB held a quarter of it and most inserts read a page back (measured on
        # 1 M rows with the cache at a quarter of the index vs all of it: 14.5 vs 11.2 us of
        # CPU an insert). The import's own connection only: a running switch keeps 64 MiB.
        self._conn.execute("PRAGMA cache_size=-1048576")
        self._check_migrated(db_path)

    def _check_migrated(self, db_path: Path) -> None:
        cols = {str(r[1]) for r in self._conn.execute("PRAGMA table_info(import_progress)")}
        if not cols:
            raise StoreError(f"{db_path}: no import_progress table (store not migrated)")

    def close(self) -> None:
        self._conn.close()

    # -- transactions ------------------------------------------------------------------------
    def begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    # -- progress ------------------------------------------------------------------------------
    def progress(self, kind: str, file_sha256: str) -> Progress | None:
        row = self._conn.execute(progress_select("?"), (kind, file_sha256)).fetchone()
        return progress_from_row(row)

    def save_progress(
        self, kind: str, file_sha256: str, file_name: str, p: Progress, now: float
    ) -> None:
        """Inside the batch's transaction: where the next run must resume."""
        self._conn.execute(PROGRESS_UPSERT, progress_row(kind, file_sha256, file_name, p, now))

    # -- reads (inside the batch's transaction, so they see what it wrote) -------------------
    def _in(self, sql: str, keys: Sequence[object]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i : i + _IN_CHUNK]
            rows += self._conn.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    def cards_by_hash(self, pan_hashes: Sequence[bytes]) -> dict[bytes, StoredCard]:
        return stored_cards(self._in(CARDS_BY_HASH + " IN ({})", pan_hashes))

    def accounts_by_number(self, numbers: Sequence[str]) -> dict[str, StoredAccount]:
        return stored_accounts(self._in(ACCOUNTS_BY_NUMBER + " IN ({})", numbers))

    def account_phones(self, account_ids: Sequence[int]) -> dict[int, str]:
        return dict(
            self._in("SELECT account_id, phone FROM accounts WHERE account_id IN ({})", account_ids)
        )

    def next_card_id(self) -> int:
        return int(self._conn.execute(NEXT_CARD_ID).fetchone()[0])

    def next_account_id(self) -> int:
        return int(self._conn.execute(NEXT_ACCOUNT_ID).fetchone()[0])

    # -- writes ----------------------------------------------------------------------------------
    def insert_new_cards(self, rows: Sequence[tuple[object, ...]]) -> None:
        """Insert cards, skipping (not failing on) a row whose PAN hash is already there:
        ``card_ids_between`` then tells which rows went in."""
        _insert_rows(self._conn, CARD_INSERT, 17, rows, " ON CONFLICT (pan_hash) DO NOTHING")

    def card_ids_between(self, first: int, last: int) -> set[int]:
        rows = self._conn.execute(
            "SELECT card_id FROM cards WHERE card_id BETWEEN ? AND ?", (first, last)
        )
        return {int(r[0]) for r in rows}

    def update_cards(self, rows: Sequence[tuple[object, ...]]) -> None:
        """``CARD_UPDATE`` rows: the fields a re-import may change."""
        self._conn.executemany(CARD_UPDATE, rows)

    def insert_accounts(self, rows: Sequence[tuple[object, ...]]) -> None:
        _insert_rows(self._conn, ACCOUNT_INSERT, 6, rows)

    def update_accounts(self, rows: Sequence[tuple[str, str, int]]) -> None:
        """(holder, phone, account_id); never the balance: the ledger owns it once loaded."""
        self._conn.executemany(ACCOUNT_UPDATE, rows)


#: Rows per multi-row INSERT: 256 cards are 4,352 bound values, far below SQLite's 32,766.
_ROWS_PER_STATEMENT = 256


@functools.lru_cache(maxsize=64)
def _multi_row_sql(insert: str, width: int, n: int, tail: str) -> str:
    head, _, _ = insert.partition(" VALUES ")
    row = insert[insert.index(" VALUES ") + 8 :]
    assert row.count("?") == width
    return f"{head} VALUES {','.join([row] * n)}{tail}"


def _insert_rows(
    conn: sqlite3.Connection,
    insert: str,
    width: int,
    rows: Sequence[tuple[object, ...]],
    tail: str = "",
) -> None:
    """``insert`` (one row's ``INSERT ... VALUES (...)``) over ``rows``, 256 rows a statement.

    Not ``executemany``: sqlite3 gives the GIL back and takes it again around every row it
    steps, and the import's other thread (reading and checking the next batch) holds it
    most of the time, so each row of the writer waited for a switch interval. One statement
    of 256 rows runs its inserts with the GIL released. Measured at 1 M cards: see
    bench_import."""
    for i in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[i : i + _ROWS_PER_STATEMENT]
        conn.execute(_multi_row_sql(insert, width, len(chunk), tail), [*chain.from_iterable(chunk)])
