"""A running switch's import batch (``Changes.cardbase``) on PostgreSQL.

The rows come in the layouts ``switch.cardbase`` builds for ``sqlite_cardbase``'s statements
(``CARD_INSERT``, ``ACCOUNT_INSERT``, ``CARD_UPDATE``, ``ACCOUNT_UPDATE``, ``PROGRESS_UPSERT``);
these are the same statements, written once there, with their placeholders numbered as
PostgreSQL's ``$n`` (``numbered``); the look-ups and their row mappers are shared alike. They run
inside the group commit's transaction, before the batch's own snapshots (as in SQLite):
accounts first (a new card may name a new account), then cards, then the file's progress.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

import psycopg

from switch.store import sqlite_cardbase
from switch.store.api import CardBaseRows, StoreError, stamp_source
from switch.store.sqlite_cardbase import (
    ACCOUNTS_BY_NUMBER,
    CARDS_BY_HASH,
    NEXT_ACCOUNT_ID,
    NEXT_CARD_ID,
    Progress,
    SqliteCardBase,
    StoredAccount,
    StoredCard,
    progress_from_row,
    progress_row,
    progress_select,
    stored_accounts,
    stored_cards,
)


def numbered(sql: str) -> str:
    """``sql`` with its ``?`` placeholders numbered as PostgreSQL's ``$1``, ``$2``, ..."""
    n = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(n)}", sql)


CARD_INSERT = numbered(sqlite_cardbase.CARD_INSERT)
ACCOUNT_INSERT = numbered(sqlite_cardbase.ACCOUNT_INSERT)
CARD_UPDATE = numbered(sqlite_cardbase.CARD_UPDATE)
ACCOUNT_UPDATE = numbered(sqlite_cardbase.ACCOUNT_UPDATE)
PROGRESS_UPSERT = numbered(sqlite_cardbase.PROGRESS_UPSERT)


def cardbase_statements(
    rows: CardBaseRows,
) -> list[tuple[str, Sequence[Sequence[object]]]]:
    """``(statement, rows)`` pairs for ``executemany``, in the order they must run."""
    out: list[tuple[str, Sequence[Sequence[object]]]] = []
    for sql, batch in (
        (ACCOUNT_INSERT, rows.new_accounts),
        (ACCOUNT_UPDATE, rows.account_updates),
        (CARD_INSERT, rows.new_cards),
        (CARD_UPDATE, rows.card_updates),
    ):
        if batch:
            out.append((sql, batch))
    if rows.progress is not None:
        out.append((PROGRESS_UPSERT, [rows.progress]))
    return out


def _fmt(sql: str) -> str:
    """``$n`` placeholders (in order) as psycopg's ``%s``."""
    return re.sub(r"\$\d+(::\w+)?", lambda m: "%s" + (m[1] or ""), sql)


#: Offline updates give the rows a fresh version (migration 0011): a node holding a live copy
#: of the row then conflicts on its next write and reloads it (docs/architecture.md §7).
CARD_UPDATE_VERSIONED = _fmt(CARD_UPDATE).replace(" WHERE card_id", ", version = %s WHERE card_id")
ACCOUNT_UPDATE_VERSIONED = _fmt(ACCOUNT_UPDATE).replace(
    " WHERE account_id", ", version = %s WHERE account_id"
)


class PostgresCardBase(SqliteCardBase):
    """``switch import`` into a PostgreSQL store (``SqliteCardBase``'s interface, which the
    importer codes against): one psycopg connection, each batch one transaction with its
    progress row, inserts and updates through ``executemany`` (pipelined by psycopg), look-ups
    by ``= ANY(array)``. Durability: ``synchronous_commit`` on (off with ``durable=False``);
    as in SQLite a batch lost to a crash is redone by the rerun, from its progress row."""

    def __init__(self, url: str, *, durable: bool = True) -> None:  # no SQLite connection
        try:
            self._pg: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
                url, options=f"-c synchronous_commit={'on' if durable else 'off'}"
            )
        except psycopg.Error as exc:
            raise StoreError(f"store: cannot connect to PostgreSQL ({exc})") from None
        self._stamp = stamp_source()
        row = self._pg.execute("SELECT to_regclass('import_progress')").fetchone()
        self._pg.rollback()
        if row is None or row[0] is None:
            self._pg.close()
            raise StoreError("store: no import_progress table (store not migrated)")

    def close(self) -> None:
        self._pg.close()

    def begin(self) -> None:
        self._pg.rollback()  # psycopg opens the transaction with the first statement

    def commit(self) -> None:
        self._pg.commit()

    def rollback(self) -> None:
        self._pg.rollback()

    def progress(self, kind: str, file_sha256: str) -> Progress | None:
        row = self._pg.execute(progress_select("%s"), (kind, file_sha256)).fetchone()
        self._pg.rollback()  # a read outside a batch leaves no transaction open
        return progress_from_row(row)

    def save_progress(
        self, kind: str, file_sha256: str, file_name: str, p: Progress, now: float
    ) -> None:
        self._pg.execute(_fmt(PROGRESS_UPSERT), progress_row(kind, file_sha256, file_name, p, now))

    def cards_by_hash(self, pan_hashes: Sequence[bytes]) -> dict[bytes, StoredCard]:
        return stored_cards(self._pg.execute(CARDS_BY_HASH + " = ANY(%s)", (list(pan_hashes),)))

    def accounts_by_number(self, numbers: Sequence[str]) -> dict[str, StoredAccount]:
        return stored_accounts(
            self._pg.execute(ACCOUNTS_BY_NUMBER + " = ANY(%s)", (list(numbers),))
        )

    def next_card_id(self) -> int:
        row = self._pg.execute(NEXT_CARD_ID).fetchone()
        assert row is not None
        return int(row[0])

    def next_account_id(self) -> int:
        row = self._pg.execute(NEXT_ACCOUNT_ID).fetchone()
        assert row is not None
        return int(row[0])

    def insert_new_cards(self, rows: Sequence[tuple[object, ...]]) -> None:
        with self._pg.cursor() as cur:
            cur.executemany(_fmt(CARD_INSERT) + " ON CONFLICT (pan_hash) DO NOTHING", rows)

    def card_ids_between(self, first: int, last: int) -> set[int]:
        rows = self._pg.execute(
            "SELECT card_id FROM cards WHERE card_id BETWEEN %s AND %s", (first, last)
        ).fetchall()
        return {int(r[0]) for r in rows}

    def update_cards(self, rows: Sequence[tuple[object, ...]]) -> None:
        with self._pg.cursor() as cur:
            cur.executemany(CARD_UPDATE_VERSIONED, [(*r[:-1], self._stamp(), r[-1]) for r in rows])

    def insert_accounts(self, rows: Sequence[tuple[object, ...]]) -> None:
        with self._pg.cursor() as cur:
            cur.executemany(_fmt(ACCOUNT_INSERT), rows)

    def update_accounts(self, rows: Sequence[tuple[str, str, int]]) -> None:
        with self._pg.cursor() as cur:
            cur.executemany(
                ACCOUNT_UPDATE_VERSIONED, [(h, p, self._stamp(), i) for h, p, i in rows]
            )
