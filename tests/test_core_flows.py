"""Multi-step flows: pre-authorization + completion, refunds, voids, reversals (full,
partial, unknown original, before the original finished), bill payments, transfers, OTP,
restart persistence. Real SQLite store and real in-process HSM with the demo data."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from switch.core import demo
from switch.core import testing as t
from switch.core.model import AuthResult, OriginalRef, ResponseCode, TxnType
from switch.core.service import SwitchCore
from switch.notify.sealing import AlertSeal

RC = ResponseCode
pytestmark = pytest.mark.usefixtures("store_backend")
Body = Callable[[SwitchCore], Awaitable[None]]
BAL = demo.CARDS[0].balance


def run(state: Path, body: Body) -> None:
    t.run_core(state, body)


ok = t.authorize_expecting


def balanced(core: SwitchCore) -> None:
    rows = core.store.query("SELECT txn_id, SUM(amount) FROM postings GROUP BY txn_id")
    assert all(s == 0 for _, s in rows), rows
    total = core.store.query("SELECT SUM(balance) FROM accounts")[0][0]
    opening = sum(c.balance for c in demo.CARDS)
    assert total == opening


def test_preauth_hold_completion_and_refund(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        pre = await ok(core, t.ecommerce(TxnType.PREAUTH, amount=1_000_000))
        assert pre.available_balance == BAL - 1_000_000 and pre.ledger_balance == BAL
        assert pre.transaction_id is not None
        await ok(
            core, t.follow_up(TxnType.COMPLETION, pre.transaction_id, 1_200_000), RC.INVALID_AMOUNT
        )
        cap = await ok(core, t.follow_up(TxnType.COMPLETION, pre.transaction_id, 800_000))
        assert cap.available_balance == BAL - 800_000 and cap.ledger_balance == BAL - 800_000
        await ok(
            core, t.follow_up(TxnType.COMPLETION, pre.transaction_id, 100), RC.INVALID_TRANSACTION
        )
        await ok(core, t.follow_up(TxnType.REFUND, pre.transaction_id, 900_000), RC.INVALID_AMOUNT)
        ref = await ok(core, t.follow_up(TxnType.REFUND, pre.transaction_id, 300_000))
        assert ref.available_balance == BAL - 500_000
        pays = await core.payments(t.ECOM.merchant_id)
        assert [p.txn_type for p in pays if p.response_code == "00"] == [
            "refund",
            "completion",
            "preauth",
        ]
        got = await core.payment(t.ECOM.merchant_id, pre.transaction_id)
        assert got is not None and got.masked_pan == "628058******0017"
        assert await core.payment(t.FUEL.merchant_id, pre.transaction_id) is None
        balanced(core)

    run(state, body)


def test_void_of_preauth_and_of_sale(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        pre = await ok(core, t.ecommerce(TxnType.PREAUTH, amount=700_000))
        assert pre.transaction_id
        v = await ok(core, t.follow_up(TxnType.VOID, pre.transaction_id, 0))
        assert v.available_balance == BAL
        await ok(
            core, t.follow_up(TxnType.COMPLETION, pre.transaction_id, 1), RC.INVALID_TRANSACTION
        )
        sale = await ok(core, t.ecommerce(amount=400_000))
        assert sale.transaction_id
        v2 = await ok(core, t.follow_up(TxnType.VOID, sale.transaction_id, 0))
        assert v2.available_balance == BAL and v2.approved_amount == 400_000
        await ok(core, t.follow_up(TxnType.VOID, sale.transaction_id, 0), RC.INVALID_TRANSACTION)
        balanced(core)

    run(state, body)


def test_full_and_partial_reversal_release_exactly_what_was_taken(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        w = t.withdrawal(amount=1_000_000)
        await ok(core, w)
        # ATM dispensed only 6,000 DZD: partial reversal of 4,000, the fee stays
        r = await ok(core, t.reversal_of(w, replacement_amount=600_000))
        assert r.approved_amount == 400_000
        assert r.available_balance == BAL - 600_000 - 3_000
        # the rest reversed: amount and fee back... the fee only on a first full reversal
        r2 = await ok(core, t.reversal_of(w))
        assert r2.approved_amount == 600_000 and r2.available_balance == BAL - 3_000
        r3 = await ok(core, t.reversal_of(w))  # nothing left
        assert r3.approved_amount == 0
        w2 = t.withdrawal(amount=200_000)
        await ok(core, w2)
        full = await ok(core, t.reversal_of(w2))
        assert full.available_balance == BAL - 3_000
        # a retransmitted reversal is replayed, not applied twice
        rev = t.reversal_of(w2)
        a = await ok(core, rev)
        b = await ok(core, rev)
        assert b.replayed and a.transaction_id == b.transaction_id
        balanced(core)

    run(state, body)


def test_reversal_for_unknown_original_is_acknowledged_and_recorded(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        fake = t.withdrawal(stan="999999")
        r = await ok(core, t.reversal_of(fake))
        assert r.approved_amount == 0
        rows = core.store.query("SELECT txn_type, response_code FROM journal")
        assert rows == [("reversal", "00")]

    run(state, body)


def test_reversal_racing_its_original_waits_for_it(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        w = t.withdrawal(amount=300_000)
        a, b = await asyncio.gather(core.authorize(w), core.authorize(t.reversal_of(w)))
        assert a.approved and b.approved and b.approved_amount == 300_000
        assert b.available_balance == BAL

    run(state, body)


def test_concurrent_retransmissions_get_one_posting(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        w = t.withdrawal(amount=300_000)
        results = await asyncio.gather(*(core.authorize(w) for _ in range(10)))
        assert all(r.approved for r in results)
        assert sum(not r.replayed for r in results) == 1
        assert {r.transaction_id for r in results} == {results[0].transaction_id}
        assert core.store.query("SELECT COUNT(DISTINCT txn_id) FROM postings") == [(1,)]

    run(state, body)


def test_replay_survives_restart(state: Path) -> None:
    req = t.withdrawal(amount=300_000)
    first: list[AuthResult] = []

    async def one(core: SwitchCore) -> None:
        first.append(await ok(core, req))

    async def two(core: SwitchCore) -> None:
        again = await ok(core, req)
        assert again.replayed and again.transaction_id == first[0].transaction_id
        # limits were rebuilt from the ledger: 300 + 30 x ... the ATM envelope is partly used
        p = core._p  # white-box: the rebuilt counters
        used = p.limits.usage(1, 0, p.limits.current_day or 0)
        assert used == (300_000, 1)
        assert core.store.query("SELECT COUNT(DISTINCT txn_id) FROM postings") == [(1,)]

    run(state, one)
    run(state, two)


def test_bill_payment(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        base = replace(t.ecommerce(), txn_type=TxnType.BILL_PAYMENT, biller_id="SONELGAZ")
        await ok(
            core,
            replace(base, bill_reference="12", amount=345_000, idempotency_key="x1"),
            RC.FORMAT_ERROR,
        )
        await ok(
            core,
            replace(base, bill_reference="000000000009", amount=345_000, idempotency_key="x2"),
            RC.INVALID_TRANSACTION,
        )
        await ok(
            core,
            replace(base, bill_reference="000000000001", amount=300_000, idempotency_key="x3"),
            RC.INVALID_AMOUNT,
        )
        r = await ok(
            core, replace(base, bill_reference="000000000001", amount=345_000, idempotency_key="b1")
        )
        assert r.available_balance == BAL - 345_000
        await ok(
            core,
            replace(base, bill_reference="000000000001", amount=345_000, idempotency_key="b2"),
            RC.INVALID_TRANSACTION,
        )
        assert core.store.query("SELECT paid_txn FROM bills WHERE reference = '000000000001'") == [
            (r.transaction_id,)
        ]
        balanced(core)

    run(state, body)


def test_transfer_between_ccp_accounts(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        dest = demo.CARDS[1]
        req = replace(
            t.withdrawal(amount=1_000_000),
            txn_type=TxnType.TRANSFER,
            destination_account=dest.account,
        )
        r = await ok(core, req)
        assert r.available_balance == BAL - 1_000_000
        bal = core.store.query("SELECT balance FROM accounts WHERE number = ?", (dest.account,))
        assert bal == [(dest.balance + 1_000_000,)]
        await ok(
            core,
            replace(req, stan=t.next_stan(), destination_account="nope"),
            RC.INVALID_TRANSACTION,
        )
        balanced(core)

    run(state, body)


def test_otp_has_its_own_try_counter(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        ch = await core.start_otp(t.CARD.pan, "Boutique Djazair", 250_000)
        assert ch.masked_phone.startswith("+213") and "0000001" not in ch.masked_phone
        assert core.store.query("SELECT COUNT(*) FROM alerts") == [(1,)]
        for _ in range(2):
            await ok(core, t.ecommerce(otp="000000"), RC.INCORRECT_PIN)
        await ok(core, t.ecommerce(otp="000000"), RC.PIN_TRIES_EXCEEDED)
        # the PIN counter is untouched: the card still works at the ATM
        await ok(core, t.withdrawal())

    run(state, body)


def test_otp_accepted(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        await core.start_otp(t.CARD.pan, "Boutique Djazair", 250_000)
        [(msisdn, sealed)] = core.store.query("SELECT msisdn, text FROM alerts")
        # the code is sealed at rest: open it with the state dir's key, as the SMS worker does
        code = AlertSeal.for_state_dir(state).open(msisdn, sealed).secrets[0]
        await ok(core, t.ecommerce(otp=code))
        await ok(core, t.ecommerce(otp=code), RC.INCORRECT_PIN)  # single use

    run(state, body)


def test_merchant_authentication_and_terminal_lookup(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        m = t.ECOM
        assert core.authenticate_merchant(m.merchant_id, m.api_key) is not None
        assert core.authenticate_merchant(m.merchant_id, m.api_key + "x") is None
        assert core.authenticate_merchant("nope", m.api_key) is None
        term = core.terminal("GAB00001")
        assert term is not None and term.tpk.startswith("U") and term.pin_block_format == "01"
        assert t.ATM.tpk_clear not in term.tpk

    run(state, body)


def test_reversal_by_field_90_of_another_acquirer_terminal_is_not_matched(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        w = t.withdrawal(amount=300_000)
        await ok(core, w)
        wrong = replace(
            t.reversal_of(w), original=OriginalRef(stan=w.stan, transmission="0101000000")
        )
        r = await ok(core, wrong)
        assert r.approved_amount == 0  # unknown original: recorded, nothing released

    run(state, body)


def test_idempotency_window_expires_and_keys_are_reusable(state: Path) -> None:
    clock = t.ManualClock(1_790_000_000.0)

    async def body(core: SwitchCore) -> None:
        req = t.withdrawal(amount=200_000)
        first = await ok(core, req)
        # past two idempotency windows by the core's clock (a shared store -- PostgreSQL --
        # decides from the stored row's time, not from the in-memory sets alone)
        clock.advance(2 * 86400 + 1)
        await ok(core, t.withdrawal(amount=100_000))  # rotates current -> previous
        clock.advance(2 * 86400 + 1)
        await ok(core, t.withdrawal(amount=100_000))  # the first key is forgotten now
        again = await ok(core, req)  # a year later, the same STAN and date: a new request
        assert not again.replayed and again.transaction_id != first.transaction_id
        rows = core.store.query("SELECT txn_id FROM idempotency WHERE key LIKE 'iso:fin:%'")
        assert (again.transaction_id,) in rows and (first.transaction_id,) not in rows

    t.run_core(state, body, clock=clock)


def test_counter_cash_has_its_own_envelope_and_no_atm_fee(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        rich = t.RICH_CARD
        # 100,000 DZD at the post-office counter: above the ATM's 50,000 a day, within 200,000
        r = await ok(
            core, t.withdrawal(pan=rich.pan, pin=rich.pin, amount=10_000_000, terminal=t.COUNTER)
        )
        assert r.available_balance == rich.balance - 10_000_000
        await ok(
            core, t.withdrawal(pan=rich.pan, pin=rich.pin, amount=10_000_000, terminal=t.COUNTER)
        )
        await ok(
            core,
            t.withdrawal(pan=rich.pan, pin=rich.pin, amount=100_000, terminal=t.COUNTER),
            RC.EXCEEDS_AMOUNT_LIMIT,
        )
        await ok(core, t.withdrawal(pan=rich.pan, pin=rich.pin, amount=5_000_000))  # ATM still open

    run(state, body)


def test_limit_counters_are_rebuilt_net_of_reversals_at_restart(state: Path) -> None:
    rich = t.RICH_CARD
    w1 = t.withdrawal(pan=rich.pan, pin=rich.pin, amount=2_000_000)
    w2 = t.withdrawal(pan=rich.pan, pin=rich.pin, amount=2_000_000)
    w3 = t.withdrawal(pan=rich.pan, pin=rich.pin, amount=500_000)

    async def before(core: SwitchCore) -> None:
        for w in (w1, w2, w3):
            await ok(core, w)
        await ok(core, t.reversal_of(w2))  # full: amount and count come back
        await ok(core, t.reversal_of(w3, replacement_amount=200_000))  # partial: 3,000 back

    async def after(core: SwitchCore) -> None:
        p = core._p  # white-box: the counters rebuilt from the journal
        day = p.limits.current_day or 0
        assert p.limits.usage(8, 0, day) == (2_000_000 + 200_000, 2)
        # and they are enforced: 50,000 - 22,000 = 28,000 DZD left today
        await ok(
            core,
            t.withdrawal(pan=rich.pan, pin=rich.pin, amount=2_900_000),
            RC.EXCEEDS_AMOUNT_LIMIT,
        )
        await ok(core, t.withdrawal(pan=rich.pan, pin=rich.pin, amount=2_800_000))

    run(state, before)
    run(state, after)


def test_payment_shows_what_happened_to_it_since(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        pre = await ok(core, t.ecommerce(TxnType.PREAUTH, amount=1_000_000))
        assert pre.transaction_id
        await ok(core, t.follow_up(TxnType.COMPLETION, pre.transaction_id, 600_000))
        await ok(core, t.follow_up(TxnType.REFUND, pre.transaction_id, 100_000))
        got = await core.payment(t.ECOM.merchant_id, pre.transaction_id)
        assert got is not None
        assert (got.amount, got.captured, got.refunded, got.reversed) == (
            1_000_000,
            600_000,
            100_000,
            0,
        )

    run(state, body)


def test_terminal_key_change_takes_effect_and_persists(state: Path) -> None:
    new_clear = "0123456789ABCDEFFEDCBA9876543210"

    async def body(core: SwitchCore) -> None:
        from switch.hsm.client import KeyType
        from switch.hsm.inprocess import InProcessHsm
        from switch.hsm.lmk import Lmk

        seeder = InProcessHsm(Lmk.load(state / "lmk.json"), authorised=True)
        tpk = (await seeder.form_key_from_clear_components(KeyType.TPK, [new_clear])).key_under_lmk
        await core.set_terminal_keys("GAB00001", tpk=tpk)
        r = await ok(core, t.withdrawal(), RC.INCORRECT_PIN)  # old key: garbage PIN block now
        assert "terminal key" in r.message
        assert core.store.query("SELECT pin_tries FROM cards WHERE card_id = 1") == [(0,)]
        await ok(core, t.withdrawal(pin_block=t.pin_block(t.CARD.pan, t.CARD.pin, new_clear)))

    async def after(core: SwitchCore) -> None:
        await ok(core, t.withdrawal(pin_block=t.pin_block(t.CARD.pan, t.CARD.pin, new_clear)))

    run(state, body)
    run(state, after)


def test_a_caller_cancelled_during_the_commit_does_not_cause_a_double_posting(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        req = t.ecommerce(amount=300_000, key="deadline-1")
        task = asyncio.create_task(core.authorize(req))
        while not core.store._pending and not core.store._committing:  # white-box: in commit
            await asyncio.sleep(0)
        task.cancel()  # e.g. the gRPC client's deadline expired
        with pytest.raises(asyncio.CancelledError):
            await task
        retry = await ok(core, req)  # the client retries with the same idempotency key
        assert retry.replayed
        assert core.store.query("SELECT COUNT(DISTINCT txn_id) FROM postings") == [(1,)]
        assert retry.available_balance == BAL - 300_000

    run(state, body)


def test_voided_bill_payment_reopens_the_bill_even_after_restart(state: Path) -> None:
    paid: list[str] = []
    base = replace(
        t.ecommerce(), txn_type=TxnType.BILL_PAYMENT, biller_id="ADE", bill_reference="0000000001"
    )

    async def pay(core: SwitchCore) -> None:
        r = await ok(core, replace(base, amount=98_000, idempotency_key="bill-a"))
        assert r.transaction_id
        paid.append(r.transaction_id)

    async def void_and_repay(core: SwitchCore) -> None:
        await ok(core, t.follow_up(TxnType.VOID, paid[0], 0))
        q = "SELECT paid_txn FROM bills WHERE reference = '0000000001'"
        assert core.store.query(q) == [(None,)]
        again = await ok(core, replace(base, amount=98_000, idempotency_key="bill-b"))
        assert core.store.query(q) == [(again.transaction_id,)]
        balanced(core)

    run(state, pay)
    run(state, void_and_repay)


def test_a_transfer_cannot_be_reversed_once_the_beneficiary_spent_it(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        poor = t.POOR_CARD  # 5,000 DZD
        tr = replace(
            t.withdrawal(amount=1_000_000),
            txn_type=TxnType.TRANSFER,
            destination_account=poor.account,
        )
        await ok(core, tr)
        # the beneficiary takes out 14,000 DZD (+ fee) of the 15,000 they now have
        await ok(core, t.withdrawal(pan=poor.pan, pin=poor.pin, amount=1_400_000))
        await ok(core, t.reversal_of(tr), RC.INSUFFICIENT_FUNDS)
        bal = core.store.query(
            "SELECT balance - held FROM accounts WHERE number = ?", (poor.account,)
        )
        assert bal[0][0] >= 0
        balanced(core)

    run(state, body)


def test_refunds_and_completion_reversals_never_give_back_more_than_was_captured(
    state: Path,
) -> None:
    ids: dict[str, str] = {}

    async def capture_and_refund(core: SwitchCore) -> None:
        pre = await ok(core, t.ecommerce(TxnType.PREAUTH, amount=1_000_000))
        assert pre.transaction_id
        cap = await ok(core, t.follow_up(TxnType.COMPLETION, pre.transaction_id, 600_000))
        assert cap.transaction_id
        ids.update(pre=pre.transaction_id, cap=cap.transaction_id)
        # a refund against the capture is a refund of the payment
        r = await ok(core, t.follow_up(TxnType.REFUND, cap.transaction_id, 200_000))
        assert r.available_balance == BAL - 400_000

    async def reverse_after_restart(core: SwitchCore) -> None:
        # reversing the capture gives back only what is still captured: 6,000 - 2,000
        rev = await ok(core, t.follow_up(TxnType.REVERSAL, ids["cap"], 0))
        assert rev.approved_amount == 400_000 and rev.available_balance == BAL
        await ok(core, t.follow_up(TxnType.REFUND, ids["pre"], 1), RC.INVALID_AMOUNT)
        got = await core.payment(t.ECOM.merchant_id, ids["pre"])
        assert got is not None and (got.captured, got.refunded) == (200_000, 200_000)
        balanced(core)

    run(state, capture_and_refund)
    run(state, reverse_after_restart)
