"""Property: under random interleavings of authorizations, transfers, reversals, captures,
voids and refunds, every transaction's postings sum to zero, money is neither created nor
lost, the stored balances equal opening balance + postings, and no card account's available
balance ever goes below zero."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switch.core import demo
from switch.core import testing as t
from switch.core.model import AuthRequest, AuthResult, Channel, TxnType
from switch.core.service import SwitchCore

CARDS = [demo.CARDS[0], demo.CARDS[1]]  # 150,000 DZD and 5,000 DZD

op = st.one_of(
    st.tuples(st.just("withdraw"), st.integers(0, 1), st.integers(1_000, 40_000)),
    st.tuples(st.just("purchase"), st.integers(0, 1), st.integers(1, 30_000)),
    st.tuples(st.just("preauth"), st.integers(0, 1), st.integers(1, 30_000)),
    st.tuples(st.just("transfer"), st.integers(0, 1), st.integers(1, 50_000)),
    st.tuples(st.just("reverse"), st.integers(0, 1000), st.integers(0, 40_000)),
    st.tuples(st.just("refund"), st.integers(0, 1000), st.integers(1, 30_000)),
    st.tuples(st.just("complete"), st.integers(0, 1000), st.integers(1, 30_000)),
    st.tuples(st.just("void"), st.integers(0, 1000), st.just(0)),
    st.tuples(st.just("retransmit"), st.integers(0, 1000), st.just(0)),
)


def build(
    kind: str, a: int, b: int, history: list[tuple[AuthRequest, AuthResult]]
) -> AuthRequest | None:
    if kind in ("withdraw", "purchase", "preauth", "transfer"):
        c = CARDS[a]
        amount = b * 100
        if kind == "withdraw":
            return t.withdrawal(pan=c.pan, pin=c.pin, amount=amount)
        if kind == "transfer":  # to the other card's account: reversals may meet spent money
            to = CARDS[1 - a].account
            w = t.withdrawal(pan=c.pan, pin=c.pin, amount=amount)
            return replace(w, txn_type=TxnType.TRANSFER, destination_account=to)
        tt = TxnType.PURCHASE if kind == "purchase" else TxnType.PREAUTH
        return t.ecommerce(tt, pan=c.pan, amount=amount)
    if not history:
        return None
    if kind == "retransmit":
        return history[a % len(history)][0]
    wanted = {
        "reverse": None,
        "refund": {TxnType.PURCHASE, TxnType.COMPLETION, TxnType.PREAUTH},
        "complete": {TxnType.PREAUTH},
        "void": {TxnType.PREAUTH, TxnType.PURCHASE},
    }[kind]
    # mostly approved originals of the right kind, sometimes anything (declines, unknowns)
    pool = [h for h in history if h[1].approved and (wanted is None or h[0].txn_type in wanted)]
    if kind == "complete":  # prefer holds nothing has touched yet, or captures are rare
        touched = {r.original.transaction_id for r, _ in history if r.original is not None}
        pool = [h for h in pool if h[1].transaction_id not in touched] or pool
    if not pool or a % 10 == 0:
        pool = history
    req, res = pool[a % len(pool)]
    if kind == "reverse":
        if req.channel is Channel.ATM and req.txn_type is TxnType.CASH_WITHDRAWAL:
            return t.reversal_of(req, amount=b * 100)
        if res.transaction_id is None:
            return None
        return replace(t.follow_up(TxnType.REVERSAL, res.transaction_id, b * 100), pan=req.pan)
    if res.transaction_id is None:
        return None
    tt = {"refund": TxnType.REFUND, "complete": TxnType.COMPLETION, "void": TxnType.VOID}[kind]
    # captures and refunds of 1..100 % of the original (plus the odd over-amount)
    share = (res.approved_amount or req.amount) * (b % 110 + 1) // 100
    return t.follow_up(tt, res.transaction_id, max(share, 1))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(st.lists(op, min_size=1, max_size=8), min_size=1, max_size=6))
def test_ledger_always_balances(template: Path, batches: list[list[tuple[str, int, int]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "s"
        shutil.copytree(template, state)
        asyncio.run(asyncio.wait_for(scenario(state, batches), 60))


async def scenario(state: Path, batches: list[list[tuple[str, int, int]]]) -> None:
    core = await SwitchCore.open(state)
    try:
        history: list[tuple[AuthRequest, AuthResult]] = []
        for batch in batches:
            reqs = [r for r in (build(k, a, b, history) for k, a, b in batch) if r is not None]
            results = await asyncio.gather(*(core.authorize(r) for r in reqs))
            for req, res in zip(reqs, results, strict=True):
                assert res.response_code.value != "96", res
                if res.available_balance is not None and res.approved:
                    assert res.available_balance >= 0
                history.append((req, res))
            check(core)
    finally:
        await core.close()


def check(core: SwitchCore) -> None:
    q = core.store.query
    assert q("SELECT txn_id FROM postings GROUP BY txn_id HAVING SUM(amount) != 0") == []
    opening = sum(c.balance for c in demo.CARDS)
    assert q("SELECT SUM(balance) FROM accounts") == [(opening,)]
    for c in CARDS:
        ((bal, held),) = q("SELECT balance, held FROM accounts WHERE number = ?", (c.account,))
        posted = q(
            "SELECT COALESCE(SUM(p.amount), 0) FROM postings p JOIN accounts a "
            "ON a.account_id = p.account_id WHERE a.number = ?",
            (c.account,),
        )[0][0]
        assert bal == c.balance + posted
        assert bal - held >= 0
        open_holds = q(
            "SELECT COALESCE(SUM(h.remaining), 0) FROM holds h JOIN accounts a "
            "ON a.account_id = h.account_id WHERE a.number = ? AND h.status = 'open'",
            (c.account,),
        )[0][0]
        assert held == open_holds
        # apart from transfers, a card account can only lose money: refunds and reversals
        # never give back more than the payments and withdrawals took
        (non_transfer,) = q(
            "SELECT COALESCE(SUM(p.amount), 0) FROM postings p JOIN accounts a "
            "ON a.account_id = p.account_id JOIN journal j ON j.txn_id = p.txn_id "
            "LEFT JOIN journal o ON o.txn_id = j.original_txn_id WHERE a.number = ? "
            "AND j.txn_type != 'transfer' AND NOT (j.txn_type IN ('reversal', 'void') "
            "AND o.txn_type IS NOT NULL AND o.txn_type = 'transfer')",
            (c.account,),
        )[0]
        assert non_transfer <= 0
    # every approved, posting-bearing journal entry has balanced postings, and vice versa
    orphans = q(
        "SELECT p.txn_id FROM postings p LEFT JOIN journal j ON j.txn_id = p.txn_id "
        "WHERE j.response_code IS NULL OR j.response_code != '00'"
    )
    assert orphans == []
