"""Operator reads (``switch.store.sqlite_operator.OperatorReads``) on the PostgreSQL store.

Same queries, same answers, same refusal of a search that runs too long -- only the
connection differs: a blocking psycopg connection of its own, used from a worker thread (so a
broad search never stalls the event loop), read-only (``default_transaction_read_only``), and
the time budget is PostgreSQL's ``statement_timeout``: a query past it is cancelled by the
server and reported as ``SearchTooBroad``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from switch.store import redacted
from switch.store.api import StoreError
from switch.store.postgres import format_placeholders
from switch.store.sqlite_operator import OperatorReads, SearchTooBroad


class PostgresOperatorReads(OperatorReads):
    """``OperatorReads`` over the database at ``url``."""

    def __init__(self, url: str, *, budget_s: float = 5.0) -> None:
        super().__init__(Path(redacted(url)), budget_s=budget_s)  # the path: messages only
        self.url = url
        self._pg: psycopg.Connection[tuple[Any, ...]] | None = None

    def _pg_connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._pg is None:
            ms = max(1, int(self.budget_s * 1000))
            self._pg = psycopg.connect(
                self.url,
                autocommit=True,
                options=f"-c statement_timeout={ms} -c default_transaction_read_only=on",
            )
        return self._pg

    def _query(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        # the shared queries say "WHERE 1" for a search with no filter (SQLite's true)
        text = format_placeholders(sql).replace(" WHERE 1 ORDER", " WHERE TRUE ORDER")
        with self._lock:
            try:
                return self._pg_connection().execute(text, args).fetchall()
            except psycopg.errors.QueryCanceled:
                raise SearchTooBroad(
                    f"search: took over {self.budget_s:g} s; narrow it (a card, a "
                    "terminal, an RRN or a time range)"
                ) from None
            except psycopg.Error as exc:
                if self._pg is not None and self._pg.closed:
                    self._pg = None  # reconnect on the next query
                raise StoreError(f"operator read failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._pg is not None:
                self._pg.close()
                self._pg = None
