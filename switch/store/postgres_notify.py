"""Telling the other nodes which accounts and cards a group commit wrote (PostgreSQL
``NOTIFY``), so they reload their live copies before deciding on them again.

Why: each node decides on its own live copies (``switch.core.live_cache``); after another
node wrote a row, the next unit decided on the stale copy is refused by its guard at commit,
its rows reloaded and the request decided again (docs/architecture.md §7). With a card's
requests spread over two nodes that was ~43% of gRPC sales decided twice. A notification
lets the other nodes reload the rows between two requests instead: a read, not a refused
unit, a reload and a second decision.

How: once a batch committed, its node sends ``pg_notify('switch_rows', payload)`` on its
listening connection, in a transaction of its own (``RowWatcher.announce``; batches that
committed meanwhile go together), so the others hear of a batch only once it committed.
Not inside the batch's transaction: PostgreSQL serialises the commits of all transactions
that NOTIFY with a database-wide lock held to the end of the commit, WAL flush included
(measured: 0.14-0.16 sessions waiting on ``Lock:object`` in the commit function with two
nodes); a transaction that only notifies writes no WAL to flush. A payload is
``node|a id:version,...|c id:version,...``, cut into several below PostgreSQL's 8,000-byte
limit. ``node`` is a random id per store: a node ignores its own batches. Each node listens
on a connection of its own (``RowWatcher``) and hands the rows to a callback on its loop.

Not the authority: the guards are. A notification lost (the listening connection dropped, a
node started after the commit) or late only leaves a copy stale, which the guard refuses
as before; a reload never makes a unit pass that the store would refuse.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from switch.store.api import GUARD_ACCOUNT, GUARD_CARD, Changes

log = logging.getLogger("switch.store")

CHANNEL = "switch_rows"
NOTIFY_SQL = "SELECT pg_notify('switch_rows', p) FROM unnest($1::text[]) AS p"  # CHANNEL
#: below PostgreSQL's 8,000-byte payload limit, with room for the node id
MAX_PAYLOAD = 7_000
#: ``SWITCH_PG_NOTIFY=0``: no listener (the benchmark's baseline; the commits still notify)
#: (a node without its listener sends nothing either: the baseline is "as before" whole)
LISTEN = os.environ.get("SWITCH_PG_NOTIFY", "1") != "0"

#: told ``(accounts, cards)``: row id -> the version another node's batch wrote
OnRows = Callable[[dict[int, int], dict[int, int]], None]


def node_id() -> str:
    """A random id for one store's batches (hex, no separator)."""
    return secrets.token_hex(6)


def payloads(node: str, units: Iterable[Changes]) -> list[str]:
    """The notifications for ``units`` (already written): each guarded account and card
    with the version the batch last wrote to it; rows only read are left out."""
    accounts: dict[int, int] = {}
    cards: dict[int, int] = {}
    for c in units:
        for kind, row_id, expected, writes in c.guards:
            if writes == expected:
                continue
            if kind == GUARD_ACCOUNT:
                accounts[row_id] = writes
            elif kind == GUARD_CARD:
                cards[row_id] = writes
    if not accounts and not cards:
        return []
    out: list[str] = []
    a_part: list[str] = []
    c_part: list[str] = []
    size = 0

    def cut() -> None:
        nonlocal size
        out.append(f"{node}|{','.join(a_part)}|{','.join(c_part)}")
        a_part.clear()
        c_part.clear()
        size = 0

    for part, rows in ((a_part, accounts), (c_part, cards)):
        for row_id, version in rows.items():
            item = f"{row_id}:{version}"
            if size + len(item) + 1 > MAX_PAYLOAD:
                cut()
            part.append(item)
            size += len(item) + 1
    if a_part or c_part:
        cut()
    return out


def parse(payload: str) -> tuple[str, dict[int, int], dict[int, int]] | None:
    """``(node, accounts, cards)`` of a payload; None if it is not one of ours."""
    parts = payload.split("|")
    if len(parts) != 3:
        return None
    try:
        rows = [
            dict((int(i), int(v)) for i, v in (x.split(":") for x in p.split(",") if x))
            for p in parts[1:]
        ]
    except ValueError:
        return None
    return parts[0], rows[0], rows[1]


class RowWatcher:
    """A connection of its own that LISTENs on ``CHANNEL`` and hands other nodes' rows to
    ``on_rows`` (on the event loop, between two callbacks of anything else)."""

    def __init__(self, node: str, on_rows: OnRows) -> None:
        self.node = node
        self.own = node + "|"
        self.on_rows = on_rows
        self.heard = 0  # statistics: other nodes' notifications received
        self.connects = 0  # statistics: listening connections opened (reconnects + 1)
        self.sent = 0  # statistics: notifications sent
        self._conn: asyncpg.Connection | None = None
        self._target: tuple[str, dict[str, str]] | None = None
        self._again: asyncio.Task[None] | None = None
        self._outgoing: list[str] = []  # notifications of batches committed, not yet sent
        self._sender: asyncio.Task[None] | None = None

    async def open(self, url: str, settings: dict[str, str]) -> None:
        self._target = (url, settings)
        await self._connect()

    async def _connect(self) -> None:
        assert self._target is not None
        url, settings = self._target
        conn = await asyncpg.connect(url, server_settings=settings)
        await conn.add_listener(CHANNEL, self._heard)
        conn.add_termination_listener(self._lost)
        self._conn = conn
        self.connects += 1

    def _lost(self, conn: Any) -> None:
        """The listening connection went (server restart, a terminated session): listen
        again, once a second until it works or the watcher is closed. What was committed
        meanwhile is not heard of: those copies are settled by their guards."""
        if conn is not self._conn or self._target is None:
            return  # closed on purpose
        self._conn = None
        log.warning("listening for other nodes' rows: connection lost, reconnecting")
        self._again = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while self._target is not None:
            try:
                await self._connect()
                return
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("listening for other nodes' rows: %s (retrying)", exc)
            await asyncio.sleep(1.0)

    def announce(self, units: Iterable[Changes]) -> None:
        """Tell the other nodes the rows ``units`` wrote (committed), soon: one sender task
        sends what is outgoing on the listening connection (one query at a time on it)."""
        notes = payloads(self.node, units)
        if not notes or self._target is None:
            return
        self._outgoing += notes
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        try:
            while self._outgoing and self._conn is not None:
                notes, self._outgoing = self._outgoing, []
                try:
                    await self._conn.execute(NOTIFY_SQL, notes)
                    self.sent += len(notes)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("announcing rows to other nodes: %s (their guards decide)", exc)
            self._outgoing.clear()  # no connection: lost, as while it is down
        finally:
            self._sender = None

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        text = str(payload)
        if text.startswith(self.own):  # this node's batch: its copies are the newest
            return
        got = parse(text)
        if got is None or got[0] == self.node:
            return
        self.heard += 1
        try:
            self.on_rows(got[1], got[2])
        except Exception:  # a reload that failed is a later conflict, never a lost listener
            log.exception("rows written by another node: reload failed")

    async def close(self) -> None:
        self._target = None
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        if self._again is not None:
            self._again.cancel()
            self._again = None
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
