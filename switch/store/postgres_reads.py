"""The PostgreSQL store's read connections: a few asyncpg connections, handed out in turn.

Why not ``asyncpg.Pool``: the hot path reads one row at a time (a card by PAN hash, its
account, its usage of the day) and the pool's bookkeeping around each read -- a shielded
acquire task, a reset query on release (one more round trip), an inactivity timer armed
and cancelled per release -- cost about as much client CPU as the read itself, on the event
loop every authorization shares. Here a read takes a free connection (or waits in FIFO order
for one), runs its statement (asyncpg prepares and caches it per connection) and gives the
connection back: nothing else. The reads leave no session state behind, so no reset is due.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import asyncpg


class ReadConnections:
    """``size`` connections to ``url``; ``fetchrow``/``fetch`` on whichever is free."""

    def __init__(
        self, url: str, size: int, settings: dict[str, str], *, timeout: float | None = None
    ) -> None:
        self.url = url
        self.timeout = timeout  # per statement (asyncpg's command_timeout)
        self.size = size
        self.settings = settings
        self._all: list[asyncpg.Connection] = []
        self._free: deque[asyncpg.Connection] = deque()
        self._waiters: deque[asyncio.Future[asyncpg.Connection]] = deque()
        self._replacing: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        for _ in range(self.size):
            conn = await asyncpg.connect(
                self.url, server_settings=self.settings, command_timeout=self.timeout
            )
            self._all.append(conn)
            self._free.append(conn)

    async def close(self) -> None:
        for task in list(self._replacing):
            task.cancel()
        conns, self._all = self._all, []
        self._free.clear()
        for conn in conns:
            await conn.close()

    async def _acquire(self) -> asyncpg.Connection:
        if self._free:
            return self._free.popleft()
        if not self._all:
            raise asyncpg.InterfaceError("read connections are closed")
        waiter: asyncio.Future[asyncpg.Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # handed over just as we were cancelled
            raise

    def _release(self, conn: asyncpg.Connection) -> None:
        if conn.is_closed():  # lost (e.g. a server restart): replaced, not reused
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._free.append(conn)

    def _discard(self, conn: asyncpg.Connection) -> None:
        """Drop ``conn`` (closed, or interrupted mid-query by a cancellation, when its state is
        not known) and connect a replacement in the background."""
        if conn in self._all:
            self._all.remove(conn)
        conn.terminate()
        self._replacing.add(asyncio.get_running_loop().create_task(self._replace()))

    async def _replace(self) -> None:
        task = asyncio.current_task()
        try:
            conn = await asyncpg.connect(
                self.url, server_settings=self.settings, command_timeout=self.timeout
            )
        except (OSError, asyncpg.PostgresError) as exc:
            if not self._all:  # nothing left to read with: the waiters fail, not hang
                while self._waiters:
                    waiter = self._waiters.popleft()
                    if not waiter.done():
                        waiter.set_exception(asyncpg.InterfaceError(f"reconnect failed: {exc}"))
            return
        finally:
            if task is not None:
                self._replacing.discard(task)
        self._all.append(conn)
        self._release(conn)

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        conn = await self._acquire()
        try:
            row = await conn.fetchrow(sql, *args)
        except asyncio.CancelledError:
            self._discard(conn)
            raise
        except BaseException:
            self._release(conn)  # a failed statement leaves the connection usable
            raise
        self._release(conn)
        return row

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await self._acquire()
        try:
            rows: list[Any] = await conn.fetch(sql, *args)
        except asyncio.CancelledError:
            self._discard(conn)
            raise
        except BaseException:
            self._release(conn)
            raise
        self._release(conn)
        return rows
