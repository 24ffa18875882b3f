"""Operator tools in process: keys file, the audit row committed with its change, the search
time budget. (End to end against ``switch run``: ``tests/test_operator_run.py``.)"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from switch.core import demo
from switch.core.domain import CardStatus
from switch.core.service import SwitchCore
from switch.operator.keys import (
    OperatorKeyError,
    OperatorKeys,
    add_operator,
    operators_path,
    read_operators,
    remove_operator,
)
from switch.store.api import AuditRow, StoreError
from switch.store.sqlite_operator import JournalFilter, OperatorReads, SearchTooBroad

CARD = demo.CARDS[0]


def test_keys_file_keeps_salted_hashes_and_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = operators_path(tmp_path)
    keys = OperatorKeys(path)
    assert not keys.check("alice", "anything")  # no file: nobody
    alice = add_operator(path, "alice", now=1.0)
    assert path.stat().st_mode & 0o777 == 0o600
    assert alice not in path.read_text()
    assert keys.check("alice", alice)
    assert not keys.check("alice", alice[:-1] + ("A" if alice[-1] != "A" else "B"))
    assert not keys.check("bob", alice)  # an unknown id, even with a real key
    bob = add_operator(path, "bob", now=2.0)
    assert keys.check("bob", bob) and keys.check("alice", alice)  # re-read, no restart
    salts = {e.salt for e in read_operators(path).values()}
    assert len(salts) == 2
    with pytest.raises(OperatorKeyError, match="already exists"):
        add_operator(path, "alice")
    for bad in ("", "-x", "a b", "é", "x" * 65):
        with pytest.raises(OperatorKeyError, match=r"^name: "):
            add_operator(path, bad)
    remove_operator(path, "bob")
    assert not keys.check("bob", bob)
    with pytest.raises(OperatorKeyError, match="no operator"):
        remove_operator(path, "bob")
    path.write_text(json.dumps({"operators": [{"id": "alice"}]}))  # damaged: nobody, not anyone
    assert not keys.check("alice", alice)
    with pytest.raises(OperatorKeyError, match="not an operators file"):
        read_operators(path)


def test_a_card_change_and_its_audit_row_commit_together_or_not_at_all(state: Path) -> None:
    async def go() -> None:
        core = await SwitchCore.open(state, durable=False)
        try:
            h = core.pan_hash(CARD.pan)
            card = await core.live_card(h)
            assert card is not None
            row = AuditRow(5.0, "alice", "SetCardStatus", f"card {card.card_id}", "ok", "x")
            await core.set_card_status(h, CardStatus.BLOCKED, audit=row)
            got = core.store.query("SELECT operator_id, action, outcome FROM operator_audit")
            assert got == [("alice", "SetCardStatus", "ok")]
            # no audit table: the commit fails, and the card's change with it
            side = sqlite3.connect(state / "switch.db")
            side.execute("DROP TABLE operator_audit")
            side.commit()
            side.close()
            with pytest.raises(StoreError):
                await core.set_card_status(h, CardStatus.ACTIVE, audit=row)
            status = core.store.query("SELECT status FROM cards WHERE card_id = ?", (card.card_id,))
            assert status == [("blocked",)]
        finally:
            await core.close()

    asyncio.run(go())


def test_a_search_past_its_budget_is_stopped_not_left_running(state: Path) -> None:
    reads = OperatorReads(state / "switch.db", budget_s=0.0)  # every query is over budget
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"
    with pytest.raises(SearchTooBroad, match=r"^search: took over 0 s; narrow it"):
        reads._query(slow, ())
    fine = OperatorReads(state / "switch.db")
    assert asyncio.run(fine.search(JournalFilter(), before_txn_id=None, limit=5)) == []
    reads.close()
    fine.close()
