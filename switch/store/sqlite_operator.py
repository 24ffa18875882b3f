"""Operator reads on the SQLite store: journal look-ups and searches, card and account rows.

Why a connection of its own, used from a worker thread: the store's read connection serves
the event loop, and an operator's broad search over a large journal must not stall the ATMs'
answers. This connection is read-only (``mode=ro``, ``query_only``); WAL lets it read while
the group commit writes. A query that runs past its time budget is interrupted (SQLite's
progress handler) and reported as ``SearchTooBroad`` instead of holding a thread for minutes.

Searches use the journal indexes of migrations 0008/0009 (card, terminal + STAN, RRN, time)
and read newest first by ``txn_id``; a page ends where the next one starts (``txn_id <
token``), so pages stay stable while new transactions arrive. A STAN alone has no index of
its own (one more random index on the hot path was not worth it): it is read newest first
from the journal, within the time budget.
"""

# ruff: noqa: S608 -- the f-strings only splice fixed column lists and fixed conditions
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switch.store.api import JournalRow, StoreError
from switch.store.sqlite import _JOURNAL_COLS, _journal

#: Columns whose index (migrations 0008/0009) leaves out the empty value: SQLite uses such an index
#: only when the query itself says the value is not empty.
_PARTIAL = frozenset({"terminal_id", "rrn"})


class SearchTooBroad(StoreError):
    """The search ran past its time budget: it needs a more selective filter."""


@dataclass(frozen=True, slots=True)
class JournalFilter:
    """What a search matches; every set field must match. ``card_id`` comes from a card id
    or from a PAN's keyed hash (the journal holds no PAN)."""

    terminal_id: str | None = None
    stan: str | None = None
    rrn: str | None = None
    card_id: int | None = None
    from_time: float | None = None  # inclusive
    to_time: float | None = None  # exclusive
    response_code: str | None = None

    def where(self) -> tuple[list[str], list[object]]:
        conds: list[str] = []
        args: list[object] = []
        for column, value in (
            ("card_id", self.card_id),
            ("terminal_id", self.terminal_id),
            ("stan", self.stan),
            ("rrn", self.rrn),
            ("response_code", self.response_code),
        ):
            if value is not None:
                conds.append(f"{column} = ?")
                args.append(value)
                if column in _PARTIAL:  # lets the planner use the partial index
                    conds.append(f"{column} != ''")
        if self.from_time is not None:
            conds.append("created_at >= ?")
            args.append(self.from_time)
        if self.to_time is not None:
            conds.append("created_at < ?")
            args.append(self.to_time)
        return conds, args


@dataclass(frozen=True, slots=True)
class CardRow:
    """What the operator sees of a card beyond the live record: its holder and account."""

    holder: str
    account_number: str


class OperatorReads:
    """Read-only queries for the operator service, off the event loop."""

    def __init__(self, path: Path, *, budget_s: float = 5.0) -> None:
        self.path = Path(path)
        self.budget_s = budget_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one query at a time on the connection

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                isolation_level=None,
            )  # fmt: skip
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
        return self._conn

    def _query(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connection()
            deadline = time.monotonic() + self.budget_s
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if "interrupted" in str(exc):
                    raise SearchTooBroad(
                        f"search: took over {self.budget_s:g} s; narrow it (a card, a "
                        "terminal, an RRN or a time range)"
                    ) from None
                raise StoreError(f"operator read failed: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreError(f"operator read failed: {exc}") from exc
            finally:
                conn.set_progress_handler(None, 0)

    async def _run(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._query, sql, args)

    async def journal_entry(self, txn_id: str) -> JournalRow | None:
        rows = await self._run(f"SELECT {_JOURNAL_COLS} FROM journal WHERE txn_id = ?", (txn_id,))
        return _journal(rows[0]) if rows else None

    async def search(
        self, f: JournalFilter, *, before_txn_id: str | None, limit: int
    ) -> list[JournalRow]:
        """Up to ``limit`` matching rows, newest first, older than ``before_txn_id``."""
        conds, args = f.where()
        if before_txn_id is not None:
            conds.append("txn_id < ?")
            args.append(before_txn_id)
        where = " AND ".join(conds) or "1"
        rows = await self._run(
            f"SELECT {_JOURNAL_COLS} FROM journal WHERE {where} ORDER BY txn_id DESC LIMIT ?",
            (*args, limit),
        )
        return [_journal(r) for r in rows]

    async def card_row(self, card_id: int) -> CardRow | None:
        rows = await self._run(
            "SELECT COALESCE(NULLIF(c.holder, ''), a.holder), a.number FROM cards c "
            "JOIN accounts a ON a.account_id = c.account_id WHERE c.card_id = ?",
            (card_id,),
        )
        return CardRow(str(rows[0][0]), str(rows[0][1])) if rows else None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
