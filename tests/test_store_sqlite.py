"""The SQLite store on its own: migrations, group commit, the alert outbox, failure halting."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from switch.core.domain import Account, AccountKind
from switch.store.api import AlertRow, Changes, StoreError
from switch.store.sqlite import SqliteStore, _migrations


async def opened(path: Path, durable: bool = True) -> SqliteStore:
    s = SqliteStore(path, durable=durable)
    await s.open()
    return s


def test_migrations_apply_once_and_store_starts_empty(tmp_path: Path) -> None:
    async def go() -> None:
        s = await opened(tmp_path / "db")
        assert s.is_empty()
        s.insert_account(Account(1, "A", AccountKind.CCP, "x", "", 12, 100))
        s.flush_admin()
        await s.close()
        s = await opened(tmp_path / "db")
        assert not s.is_empty()
        shipped = [(v,) for v, _ in _migrations()]  # every shipped migration, each once
        assert shipped[:4] == [(1,), (2,), (3,), (4,)]
        assert s.query("SELECT version FROM schema_version") == shipped
        mode = s.query("PRAGMA journal_mode")
        assert mode == [("wal",)]
        await s.close()

    asyncio.run(go())


def test_group_commit_batches_concurrent_units(tmp_path: Path) -> None:
    async def go() -> None:
        s = await opened(tmp_path / "db")
        s.insert_account(Account(1, "A", AccountKind.CCP, "x", "", 12, 0))
        s.insert_account(Account(2, "B", AccountKind.GL, "y", "", 12, 0, 0, True))
        s.flush_admin()

        async def unit(i: int) -> None:
            ch = Changes()
            ch.postings = [(f"t{i}", 0, 1, -i), (f"t{i}", 1, 2, i)]
            ch.accounts = [(1, -i, 0), (2, i, 0)]
            await s.commit(ch)

        await asyncio.gather(*(unit(i) for i in range(1, 501)))
        assert s.units == 500 and s.batches < 500  # many units shared a COMMIT
        assert s.query("SELECT COUNT(*), SUM(amount) FROM postings") == [(1000, 0)]
        await s.close()

    asyncio.run(go())


def test_a_failed_batch_fails_its_callers_and_halts(tmp_path: Path) -> None:
    async def go() -> None:
        s = await opened(tmp_path / "db")
        other = sqlite3.connect(tmp_path / "db")
        other.execute("DROP TABLE alerts")
        other.commit()
        other.close()
        ch = Changes()
        ch.alerts = [AlertRow("+213550000001", "hello", None, 1.0)]
        with pytest.raises(StoreError):
            await s.commit(ch)
        with pytest.raises(StoreError, match="halted"):
            await s.commit(Changes())
        await s.close()

    asyncio.run(go())


def test_alert_outbox_claim_sent_failed(tmp_path: Path) -> None:
    async def go() -> None:
        s = await opened(tmp_path / "db", durable=False)
        ch = Changes()
        ch.alerts = [AlertRow(f"+21355000000{i}", f"text {i}", None, 10.0 + i) for i in range(3)]
        await s.commit(ch)
        due = s.claim_due_alerts(now=11.5, limit=10)
        assert [a.text for a in due] == ["text 0", "text 1"]
        s.mark_alerts_sent([(due[0].alert_id, "carrier-1")], 12.0)
        s.mark_alert_failed(due[1].alert_id, "timeout", next_attempt_at=100.0, give_up=False)
        assert [a.text for a in s.claim_due_alerts(now=50.0, limit=10)] == ["text 2"]
        again = s.claim_due_alerts(now=100.0, limit=10)
        # longest due first: text 2 is due since it was written, text 1 only since its retry
        assert [(a.text, a.attempts) for a in again] == [("text 2", 0), ("text 1", 1)]
        s.mark_alert_failed(again[1].alert_id, "rejected", 200.0, give_up=True)
        assert [a.text for a in s.claim_due_alerts(now=1e9, limit=10)] == ["text 2"]
        await s.close()

    asyncio.run(go())


def test_sqlite_store_satisfies_the_store_protocol(tmp_path: Path) -> None:
    from switch.notify.outbox import AlertOutbox
    from switch.store.api import Store

    store: Store = SqliteStore(tmp_path / "db")  # checked by mypy (strict) too
    outbox: AlertOutbox = store
    assert isinstance(store, SqliteStore) and outbox is store


def test_one_batch_writes_many_rows_and_later_rows_win(tmp_path: Path) -> None:
    """The group commit writes each table in multi-row statements (chunked): a batch larger
    than one chunk lands whole, and an upsert of the same key twice in one batch keeps the
    later row, as one statement per row did."""
    from switch.store import sqlite as sqlite_store

    async def go() -> None:
        s = await opened(tmp_path / "db", durable=False)
        s.insert_account(Account(1, "A", AccountKind.CCP, "x", "", 12, 0))
        s.insert_account(Account(2, "B", AccountKind.GL, "y", "", 12, 0, 0, True))
        s.flush_admin()
        n = sqlite_store._CHUNK * 2 + 3
        units = []
        for i in range(1, n + 1):
            ch = Changes()
            ch.postings = [(f"t{i}", 0, 1, -i), (f"t{i}", 1, 2, i)]
            ch.accounts = [(1, -i * (i + 1) // 2, 0), (2, i * (i + 1) // 2, 0)]
            ch.holds = [("h1", 1, 500, 500 - i, "open" if i < n else "closed")]
            units.append(s.commit(ch))
        await asyncio.gather(*units)
        assert s.units / s.batches > sqlite_store._CHUNK  # batches spanned several chunks
        assert s.query("SELECT COUNT(*), SUM(amount) FROM postings") == [(2 * n, 0)]
        total = n * (n + 1) // 2
        assert s.query("SELECT account_id, balance FROM accounts ORDER BY account_id") == [
            (1, -total),
            (2, total),
        ]
        assert s.query("SELECT txn_id, remaining, status FROM holds") == [("h1", 500 - n, "closed")]
        await s.close()

    asyncio.run(go())
