"""Gateway orders: the record behind ``register.do`` and its durable table (migration 0013).

Why a connection of its own (as ``switch.store.sqlite_outbox``): an order is not part of the
core's authorization unit -- the payment is, in the journal -- so its rows go through a small
writer here instead of the core's group commit. Each call is one short statement in
autocommit on a single worker thread, so the event loop never waits on it -- except an order
change that the merchant is notified of (a final decline): the order row and its
``merchant_events`` row (the outbox MNOTIFY's worker polls, in the same database) are one
transaction, so neither is durable without the other. On SQLite, WAL
lets it run beside the group commit and ``busy_timeout`` makes it wait for a commit in
flight instead of failing; ``synchronous=FULL`` (unless ``durable=False``) keeps an order
that was answered. On PostgreSQL (a store with a ``url``) the same SQL runs on a psycopg
connection of its own, ``?`` placeholders rewritten as the PG store does.

Order ids are random (20 characters of [A-Za-z0-9], as SATIM's ``mdOrder``): they appear in
the payment page's URL and must reveal nothing of the gateway's volume.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import sqlite3
import string
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from switch.store.api import MerchantEventRow, StoreError

ORDER_ID_ALPHABET = string.ascii_letters + string.digits
ORDER_ID_LENGTH = 20
BUSY_TIMEOUT_MS = 5000


class OrderStatus(enum.IntEnum):
    """SATIM/BPC ``OrderStatus`` values (the ones this gateway reaches)."""

    REGISTERED = 0  # registered, not paid
    PREAUTHORIZED = 1  # amount held (registerPreAuth.do), awaiting deposit.do
    DEPOSITED = 2  # paid
    REVERSED = 3  # cancelled by reverse.do
    REFUNDED = 4  # refund.do (partially or wholly)
    DECLINED = 6  # declined, tries exhausted, session expired or cancelled


class OrderKind(enum.StrEnum):
    SALE = "sale"  # register.do: paid at once
    PREAUTH = "preauth"  # registerPreAuth.do: a hold, deposit.do captures it


@dataclass(slots=True)
class Order:
    """One row of ``gateway_orders`` (column order = field order)."""

    order_id: str
    merchant_id: str
    order_number: str
    kind: OrderKind
    amount: int
    currency: int
    return_url: str
    fail_url: str
    description: str
    language: str
    json_params: str
    status: OrderStatus
    tries: int
    created_at: float
    expires_at: float
    updated_at: float
    payment_id: str = ""
    masked_pan: str = ""
    expiration: str = ""
    response_code: str = ""
    action_code: int = -1
    approval_code: str = ""
    deposit_amount: int = 0
    refunded_amount: int = 0
    ops: int = 0

    @property
    def final(self) -> bool:
        """No more payment attempts on the page: paid, held, cancelled or declined."""
        return self.status is not OrderStatus.REGISTERED


_COLUMNS = tuple(f.name for f in fields(Order))
_COLS = ", ".join(_COLUMNS)
_MARKS = ", ".join("?" for _ in _COLUMNS)
_UPDATE = ", ".join(f"{c} = ?" for c in _COLUMNS[1:])
#: the same columns as the core's unit writes (``switch.store.sqlite``); due at creation
_EVENT_INSERT = (
    "INSERT INTO merchant_events (event_id, merchant_id, event_type, payment_id, body, "
    "created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def new_order_id() -> str:
    return "".join(secrets.choice(ORDER_ID_ALPHABET) for _ in range(ORDER_ID_LENGTH))


def is_order_id(text: str) -> bool:
    return len(text) == ORDER_ID_LENGTH and all(c in ORDER_ID_ALPHABET for c in text)


class DuplicateOrder(StoreError):
    """The merchant already registered this ``orderNumber`` (SATIM ErrorCode 1)."""


def _order(r: tuple[Any, ...]) -> Order:
    values = list(r)
    values[3] = OrderKind(values[3])
    values[11] = OrderStatus(int(values[11]))
    return Order(*values)


def _row(o: Order) -> tuple[Any, ...]:
    values = list(astuple(o))
    values[3] = o.kind.value
    values[11] = int(o.status)
    return tuple(values)


class _Cursor(Protocol):
    def fetchall(self) -> list[Any]: ...
    @property
    def description(self) -> Any: ...  # None for a statement that returns no rows


class _Connection(Protocol):
    def execute(self, sql: str, args: tuple[Any, ...]) -> _Cursor: ...
    def close(self) -> None: ...


class _Integrity(StoreError):
    """A unique constraint refused the row (either backend); the text names the index."""


class OrderStore:
    """``gateway_orders`` in the switch's store (already migrated by it)."""

    def __init__(
        self,
        connect: Callable[[], _Connection],
        *,
        sql: Callable[[str], str] = lambda s: s,
        begin: str = "BEGIN",
        integrity: tuple[type[Exception], ...] = (sqlite3.IntegrityError,),
        errors: tuple[type[Exception], ...] = (sqlite3.Error,),
    ) -> None:
        self._connect = connect
        self._sql = sql
        self._begin = begin
        self._integrity = integrity
        self._errors = errors
        self._conn: _Connection | None = None
        # one thread: the connection is used by one thread at a time, statements in order
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-orders")

    @classmethod
    def sqlite(cls, db_path: Path, *, durable: bool = True) -> OrderStore:
        def connect() -> _Connection:
            conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            return conn

        # IMMEDIATE: the write lock is taken at BEGIN, so a busy database waits there
        # (busy_timeout) instead of failing the transaction half-way
        return cls(connect, begin="BEGIN IMMEDIATE")

    @classmethod
    def for_store(cls, store: Any) -> OrderStore:
        """Beside the core's store: its SQLite file, or its PostgreSQL database (``url``)."""
        url = getattr(store, "url", None)
        if url is None:
            return cls.sqlite(Path(store.path), durable=bool(store.durable))
        import psycopg

        from switch.store.postgres import format_placeholders

        sync = "on" if store.durable else "off"

        def connect() -> _Connection:
            conn: _Connection = psycopg.connect(
                url, autocommit=True, options=f"-c synchronous_commit={sync}"
            )
            return conn

        return cls(
            connect,
            sql=format_placeholders,
            integrity=(psycopg.errors.UniqueViolation,),
            errors=(psycopg.Error,),
        )

    async def _run(
        self, sql: str, args: tuple[Any, ...], *, also: Sequence[tuple[str, tuple[Any, ...]]] = ()
    ) -> list[tuple[Any, ...]]:
        """``sql`` alone (autocommit), or with the statements of ``also`` after it in one
        transaction: all of them commit or none does."""
        statements = [(self._sql(sql), args), *((self._sql(q), a) for q, a in also)]

        def go() -> list[tuple[Any, ...]]:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            if len(statements) == 1:
                text, values = statements[0]
                cur = conn.execute(text, values)
                rows = cur.fetchall() if cur.description is not None else []  # SELECT, RETURNING
                return [tuple(r) for r in rows]
            conn.execute(self._begin, ())
            try:
                for text, values in statements:
                    conn.execute(text, values)
                conn.execute("COMMIT", ())
            except BaseException:
                try:
                    conn.execute("ROLLBACK", ())
                except self._errors:  # the connection is gone: the server rolled back
                    self._drop_connection()
                raise
            return []

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, go)
        except self._integrity as e:
            raise _Integrity(str(e)) from None
        except self._errors as e:
            raise StoreError(f"gateway orders: {e}") from None

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except self._errors:
                pass

    async def insert(self, order: Order) -> None:
        """Raises ``DuplicateOrder`` when the merchant's order number is taken."""
        try:
            await self._run(
                f"INSERT INTO gateway_orders ({_COLS}) VALUES ({_MARKS})",  # noqa: S608
                _row(order),
            )
        except _Integrity as e:
            if "order_number" in str(e):  # the unique index gateway_orders_number
                raise DuplicateOrder(f"orderNumber: {order.order_number!r} already used") from None
            raise StoreError(f"gateway orders: {e}") from None  # an order id collision

    async def save(self, order: Order, events: Sequence[MerchantEventRow] = ()) -> None:
        """Writes every field of ``order`` (the gateway holds one order's lock meanwhile) and,
        in the same transaction, the merchant notifications ``events`` of that change: the
        order's new state and its notification are durable together or not at all."""
        row = _row(order)
        await self._run(
            f"UPDATE gateway_orders SET {_UPDATE} WHERE order_id = ?",  # noqa: S608
            (*row[1:], row[0]),
            also=[(_EVENT_INSERT, (*e, e.created_at)) for e in events],
        )

    async def get(self, order_id: str) -> Order | None:
        rows = await self._run(
            f"SELECT {_COLS} FROM gateway_orders WHERE order_id = ?",  # noqa: S608
            (order_id,),
        )
        return _order(rows[0]) if rows else None

    async def open_orders(self) -> list[tuple[float, str]]:
        """(expires_at, order_id) of every order still waiting for payment: what the expiry
        sweeper must watch after a start (one scan, at start only)."""
        rows = await self._run(
            "SELECT expires_at, order_id FROM gateway_orders WHERE status = ?",
            (int(OrderStatus.REGISTERED),),
        )
        return [(float(e), str(o)) for e, o in rows]

    async def by_number(self, merchant_id: str, order_number: str) -> Order | None:
        rows = await self._run(
            f"SELECT {_COLS} FROM gateway_orders WHERE merchant_id = ? AND order_number = ?",  # noqa: S608
            (merchant_id, order_number),
        )
        return _order(rows[0]) if rows else None

    async def execute(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One statement (``?`` placeholders) on this connection, autocommit; its rows if it
        returns any. The login lockout's counters (``switch.gateway.lockout``) use it."""
        return await self._run(sql, args)

    def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._executor.submit(shut).result()
        self._executor.shutdown(wait=True)
