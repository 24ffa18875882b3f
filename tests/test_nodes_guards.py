"""Several nodes over one store (issue 13, docs/architecture.md §7): two ``SwitchCore``
instances in one process, each with its own pipeline, caches and limits engine, open the same
store in shared mode and serve the same card at the same moment.

Each core decides on its own live copy, so the other's units find rows that moved under them:
the store's guards refuse those (``Conflict``), the core reloads and decides again. What must
hold whatever the interleaving: no overdraft, the daily limit never exceeded, the PIN try
counter exact, every approval a caller saw journaled and posted exactly once, postings
balanced. Run on SQLite (one file, WAL) and PostgreSQL (``store_backend``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from switch.core import demo
from switch.core.model import AuthRequest, AuthResult, ResponseCode
from switch.core.service import CoreError, SwitchCore
from switch.core.testing import CARD, POOR_CARD, RICH_CARD, ManualClock, withdrawal
from switch.store.api import GUARD_ACCOUNT, Changes, Conflict

pytestmark = pytest.mark.usefixtures("store_backend")

RC = ResponseCode
NOW = 1_796_000_000.0  # a fixed instant (2026-11-30), never the wall clock
FEE = 3_000  # 30 DZD on our own ATM (products.toml)


def two_nodes(state: Path, body: Callable[[SwitchCore, SwitchCore], Awaitable[None]]) -> None:
    """``body`` on two cores sharing ``state``'s store, both closed afterwards."""

    async def go() -> None:
        clock = ManualClock(NOW)
        a = await SwitchCore.open(state, durable=False, clock=clock, shared=True)
        try:
            b = await SwitchCore.open(state, durable=False, clock=clock, shared=True)
            try:
                await asyncio.wait_for(body(a, b), 60)
            finally:
                await b.close()
        finally:
            await a.close()

    asyncio.run(go())


async def hammer(a: SwitchCore, b: SwitchCore, reqs: list[AuthRequest]) -> list[AuthResult]:
    """Every request at once, alternately on each node."""
    return list(
        await asyncio.gather(*((a if i % 2 else b).authorize(r) for i, r in enumerate(reqs)))
    )


def codes(results: list[AuthResult]) -> Counter[str]:
    return Counter(r.response_code.value for r in results)


def account_balance(core: SwitchCore, number: str) -> tuple[int, int]:
    ((balance, held),) = core.store.query(
        "SELECT balance, held FROM accounts WHERE number = ?", (number,)
    )
    return int(balance), int(held)


def assert_ledger(core: SwitchCore, approved: list[AuthResult]) -> None:
    """Each approval a caller saw is one approved journal row with its postings, once; every
    posting balances; the money in the ledger is what the demo seeded."""
    q = core.store.query
    ids = [r.transaction_id for r in approved]
    assert len(set(ids)) == len(ids)
    for txn_id in ids:
        rows = q("SELECT response_code FROM journal WHERE txn_id = ?", (txn_id,))
        assert rows == [("00",)], txn_id
        legs = q("SELECT SUM(amount), COUNT(*) FROM postings WHERE txn_id = ?", (txn_id,))
        assert [(int(s), int(n)) for s, n in legs] == [(0, 3)], txn_id
    assert q("SELECT txn_id FROM postings GROUP BY txn_id HAVING SUM(amount) != 0") == []
    (total,) = q("SELECT SUM(balance) FROM accounts")[0]
    assert int(total) == sum(c.balance for c in demo.CARDS)
    journal_ids = {t for (t,) in q("SELECT txn_id FROM journal")}
    assert len(journal_ids) == len(q("SELECT txn_id FROM journal"))


def test_no_overdraft_across_nodes(state: Path) -> None:
    """5,000 DZD, 20 withdrawals of 1,000 DZD (+30 fee) from both nodes at once: exactly 4."""

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        reqs = [withdrawal(POOR_CARD.pan, 100_000, POOR_CARD.pin) for _ in range(20)]
        results = await hammer(a, b, reqs)
        assert codes(results) == {"00": 4, "51": 16}, codes(results)
        approved = [r for r in results if r.approved]
        balance, held = account_balance(a, POOR_CARD.account)
        assert (balance, held) == (POOR_CARD.balance - 4 * (100_000 + FEE), 0)
        assert_ledger(a, approved)
        # both nodes' copies caught up: the next one is declined on either
        for node in (a, b):
            r = await node.authorize(withdrawal(POOR_CARD.pan, 100_000, POOR_CARD.pin))
            assert r.response_code is RC.INSUFFICIENT_FUNDS

    two_nodes(state, body)


def test_daily_limit_across_nodes(state: Path) -> None:
    """50,000 DZD of ATM cash a day: 16 withdrawals of 10,000 DZD from both nodes -> 5."""

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        reqs = [withdrawal(RICH_CARD.pan, 1_000_000, RICH_CARD.pin) for _ in range(16)]
        results = await hammer(a, b, reqs)
        assert codes(results) == {"00": 5, "61": 11}, codes(results)
        assert_ledger(a, [r for r in results if r.approved])
        balance, _ = account_balance(b, RICH_CARD.account)
        assert balance == RICH_CARD.balance - 5 * (1_000_000 + FEE)
        for node in (a, b):  # the limit holds on both nodes afterwards
            r = await node.authorize(withdrawal(RICH_CARD.pan, 100_000, RICH_CARD.pin))
            assert r.response_code is RC.EXCEEDS_AMOUNT_LIMIT

    two_nodes(state, body)


def test_pin_tries_exact_across_nodes(state: Path) -> None:
    """10 wrong PINs from both nodes at once: the counter ends at exactly 3 (the product's
    tries), three answers counted one (55, 55, then 75 "capture card"), the rest 75; then
    the right PIN is refused on both nodes."""

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        reqs = [withdrawal(CARD.pan, 500_000, "9999") for _ in range(10)]
        results = await hammer(a, b, reqs)
        assert codes(results) == {"55": 2, "75": 8}, codes(results)
        captured = [r for r in results if "capture card" in r.message]
        assert len(captured) == 1, [r.message for r in results]
        rows = a.store.query("SELECT pin_tries FROM cards WHERE pan_last4 = ?", (CARD.pan[-4:],))
        assert [int(n) for (n,) in rows] == [3]
        for node in (a, b):
            r = await node.authorize(withdrawal(CARD.pan, 500_000, CARD.pin))
            assert r.response_code is RC.PIN_TRIES_EXCEEDED

    two_nodes(state, body)


def test_retransmission_to_the_other_node_is_replayed(state: Path) -> None:
    """An ATM's repeat sent to the other node (failover) gets the first answer, posted once."""

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        req = withdrawal(CARD.pan, 500_000, CARD.pin)
        first, again = await asyncio.gather(a.authorize(req), b.authorize(req))
        assert first.approved and again.approved
        assert first.transaction_id == again.transaction_id
        assert again.replayed != first.replayed  # one decided, the other replayed it
        later = await b.authorize(req)
        assert later.replayed and later.transaction_id == first.transaction_id
        assert_ledger(a, [first])
        balance, _ = account_balance(a, CARD.account)
        assert balance == CARD.balance - 500_000 - FEE

    two_nodes(state, body)


def test_mixed_load_keeps_every_rule(state: Path) -> None:
    """Withdrawals on three cards, balance inquiries and reversals of half the approvals,
    interleaved on both nodes: balances equal the journal's effect, nothing half-written."""

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        cards = (CARD, POOR_CARD, RICH_CARD)
        reqs = [withdrawal(c.pan, 200_000, c.pin) for _ in range(8) for c in cards]
        results = await hammer(a, b, reqs)
        approved = [(q, r) for q, r in zip(reqs, results, strict=True) if r.approved]
        assert approved
        from switch.core.testing import reversal_of

        reversals = [reversal_of(q) for q, _ in approved[::2]]
        rev = await hammer(b, a, reversals)
        assert all(r.approved for r in rev), codes(rev)
        q = a.store.query
        for c in cards:
            balance, held = account_balance(a, c.account)
            (net,) = q(
                "SELECT COALESCE(SUM(p.amount), 0) FROM postings p JOIN accounts x "
                "ON x.account_id = p.account_id WHERE x.number = ?",
                (c.account,),
            )[0]
            assert balance == c.balance + int(net) and held == 0
        assert q("SELECT txn_id FROM postings GROUP BY txn_id HAVING SUM(amount) != 0") == []
        (total,) = q("SELECT SUM(balance) FROM accounts")[0]
        assert int(total) == sum(c.balance for c in demo.CARDS)

    two_nodes(state, body)


def test_stale_guard_refuses_the_whole_unit(state: Path) -> None:
    """The store writes nothing of a unit whose guard names a version the row no longer has."""

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        ((account_id, version),) = a.store.query(
            "SELECT account_id, version FROM accounts WHERE number = ?", (CARD.account,)
        )
        ch = Changes(
            accounts=[(int(account_id), 1, 0)],
            guards=[(GUARD_ACCOUNT, int(account_id), int(version) + 1, 42)],
        )
        with pytest.raises(Conflict):
            await a.store.commit(ch)
        assert account_balance(a, CARD.account) == (CARD.balance, 0)
        ok = Changes(
            accounts=[(int(account_id), CARD.balance, 0)],
            guards=[(GUARD_ACCOUNT, int(account_id), int(version), 42)],
        )
        await b.store.commit(ok)
        rows = a.store.query("SELECT version FROM accounts WHERE account_id = ?", (account_id,))
        assert [int(v) for (v,) in rows] == [42]

    two_nodes(state, body)


def test_single_node_lock_refuses_a_shared_node(state: Path) -> None:
    """A single-node switch owns its state directory: a shared node is refused beside it."""

    async def go() -> None:
        one = await SwitchCore.open(state, durable=False, clock=ManualClock(NOW))
        try:
            with pytest.raises(CoreError, match="in use"):
                await SwitchCore.open(state, durable=False, shared=True)
        finally:
            await one.close()

    asyncio.run(go())


def test_hold_expires_once_across_nodes(state: Path) -> None:
    """Two nodes expire the same old holds at once: each hold is released exactly once (one
    expiry row, ``held`` back to 0, the balance untouched), whichever node does it."""

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        from switch.core.model import TxnType
        from switch.core.testing import ecommerce

        ids = []
        for amount in (100_000, 200_000, 300_000):
            r = await a.authorize(ecommerce(TxnType.PREAUTH, amount=amount))
            assert r.approved, r
            ids.append(r.transaction_id)
        await b.authorize(ecommerce(TxnType.PREAUTH, amount=1))  # b's copy of the account
        assert account_balance(a, CARD.account) == (CARD.balance, 600_001)
        later = NOW + 8 * 86400  # past the 168 h validity
        released = await asyncio.gather(a.expire_holds(now=later), b.expire_holds(now=later))
        assert sum(released) == 4, released
        for txn_id in ids:
            rows = a.store.query(
                "SELECT COUNT(*) FROM journal WHERE original_txn_id = ? "
                "AND message LIKE 'hold expired%'",
                (txn_id,),
            )
            assert [int(n) for (n,) in rows] == [1], txn_id
        assert account_balance(a, CARD.account) == (CARD.balance, 0)
        assert sum(await asyncio.gather(a.expire_holds(now=later), b.expire_holds(now=later))) == 0

    two_nodes(state, body)


def test_completion_and_expiry_race_one_wins(state: Path) -> None:
    """A capture on one node and the hold's expiry on the other at the same moment: exactly
    one of them applies (captured and posted, or released), never both."""

    async def body(a: SwitchCore, b: SwitchCore) -> None:
        from switch.core.model import TxnType
        from switch.core.testing import ecommerce, follow_up

        r = await a.authorize(ecommerce(TxnType.PREAUTH, amount=500_000))
        assert r.approved and r.transaction_id is not None
        later = NOW + 8 * 86400
        capture, released = await asyncio.gather(
            a.authorize(follow_up(TxnType.COMPLETION, r.transaction_id, 500_000)),
            b.expire_holds(now=later),
        )
        balance, held = account_balance(a, CARD.account)
        assert held == 0
        if capture.approved:
            assert released == 0 and balance == CARD.balance - 500_000
        else:
            assert released == 1 and balance == CARD.balance
        rows = a.store.query("SELECT status FROM holds WHERE txn_id = ?", (r.transaction_id,))
        assert [s for (s,) in rows] == (["captured"] if capture.approved else ["expired"])

    two_nodes(state, body)
