"""``MerchantOutbox`` and the callback configuration on their own PostgreSQL connection.

The counterpart of ``sqlite_outbox`` for ``switch run --store postgresql://...``: a blocking
psycopg connection of its own (the worker calls it from its executor thread), autocommit for
single statements, an explicit transaction for a claim or a batch of marks, durable
(``synchronous_commit`` on) before it returns. Claims skip rows another worker has locked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from switch.merchant_notify.sql_outbox import SqlMerchantOutbox
from switch.store import redacted
from switch.store.api import StoreError
from switch.store.postgres import format_placeholders

T = TypeVar("T")


class PostgresMerchantOutbox(SqlMerchantOutbox):
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, durable: bool = True) -> None:
        name = redacted(url)
        try:
            conn = psycopg.connect(
                url, autocommit=True, options=f"-c synchronous_commit={'on' if durable else 'off'}"
            )
        except psycopg.Error as exc:
            raise StoreError(f"merchant outbox {name}: cannot connect ({exc})") from None
        super().__init__(conn, name)

    def _sql(self, sql: str) -> str:
        return format_placeholders(sql)

    def _transaction(self, conn: Any, body: Callable[[Any], T]) -> T:
        with conn.transaction():
            return body(conn)
