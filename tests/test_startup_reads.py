"""Start-up reads no table that grows with the card base or the history in full (issue 12 §2:
16 M cards, `switch run` ready in seconds).

Every SELECT ``SwitchCore.open`` runs on a real store is captured (SQLite's trace callback on
the store's connections) and its query plan asked of SQLite: none may SCAN the cards,
accounts, journal, idempotency or other per-transaction tables (a ``LIMIT 1`` probe aside),
and no card is read at all: cards and cardholders' accounts load on first use.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from switch.core.service import SwitchCore
from switch.store import sqlite as store_sqlite

# The only tables start-up may read whole: the configuration (a few thousand rows at most).
SMALL_TABLES = frozenset({"schema_version", "settings", "terminals", "merchants", "billers",
                          "bin_routes"})  # fmt: skip


def _start_up_selects(state: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    connect = store_sqlite.SqliteStore._connect

    def traced(self: store_sqlite.SqliteStore) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_trace_callback(seen.append)
        return conn

    monkeypatch.setattr(store_sqlite.SqliteStore, "_connect", traced)

    async def start() -> None:
        await (await SwitchCore.open(state, durable=False)).close()

    asyncio.run(start())
    return [s for s in seen if s.lstrip().upper().startswith("SELECT")]


def test_start_up_scans_no_big_table_and_reads_no_card(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    selects = _start_up_selects(state, monkeypatch)
    assert any("FROM journal" in s for s in selects)  # today's limit usage is read
    assert any("FROM idempotency" in s for s in selects)  # and the recent keys
    conn = sqlite3.connect(state / "switch.db")
    try:
        for sql in selects:
            assert "FROM cards" not in sql, sql
            if sql.rstrip().upper().endswith("LIMIT 1"):
                continue  # stops at the first row
            for *_, step in conn.execute(f"EXPLAIN QUERY PLAN {sql}"):
                words = str(step).split()
                if words[0] == "SCAN":  # (an alias counts as big: only these names are fine)
                    assert words[1] in SMALL_TABLES, (sql, step)
    finally:
        conn.close()
