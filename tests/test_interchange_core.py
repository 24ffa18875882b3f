"""The core as issuer for interchange acquirers: a request from a terminal we have no record
of, whose acquirer (field 32) is registered with a zone PIN key, has its PIN verified under
that ZPK (EC / EA in the HSM) with the same tries and bad-block rules as our own terminals,
and posts a balanced journal against the interbank GL accounts.

Real parts: the demo-seeded SQLite store in a temp dir and the in-process HSM on its LMK;
PIN blocks are encrypted under the clear test ZPK the acquirer would hold."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import switch_native

from switch.core import demo
from switch.core import testing as t
from switch.core.domain import luhn_complete
from switch.core.interchange import AcquirerConfig
from switch.core.ledger_accounts import GL_FEES, GL_INTERBANK_ATM, GL_INTERBANK_POS
from switch.core.model import DZD, AuthRequest, AuthResult, Channel, ResponseCode, TxnType
from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from tests.ibm_card import add_ibm_offset_card

RC = ResponseCode
CARD = demo.CARDS[0]  # 150,000 DZD, PIN 1234
NETWORK = "000077"  # a registered interchange acquirer
UNKNOWN_ACQUIRER = "000055"
FOREIGN_ATM = "XATM0042"  # one of its ATMs: no record of it here
ZPK_CLEAR = "3D3D3D3D3D3D3D3D4A4A4A4A4A4A4A4A"  # test zone PIN key shared with NETWORK
OTHER_CLEAR = "1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A"
OTHER_ATM_FEE = 3_500  # 35 DZD on another bank's ATM
OWN_ATM_FEE = 3_000

Body = Callable[[SwitchCore], Awaitable[None]]


async def zone_key(state: Path, clear: str) -> str:
    """The key ceremony: the shared clear ZPK component loaded under this issuer's LMK."""
    ceremony = InProcessHsm(Lmk.load(state / "lmk.json"), authorised=True)
    return (await ceremony.form_key_from_clear_components(KeyType.ZPK, [clear])).key_under_lmk


def run(state: Path, body: Body, *, pin_block_format: str = "01") -> None:
    async def go() -> None:
        zpk = await zone_key(state, ZPK_CLEAR)
        core = await SwitchCore.open(state)
        core.register_acquirer(AcquirerConfig(NETWORK, zpk, "", pin_block_format, "Network"))
        try:
            await asyncio.wait_for(body(core), 30)
        finally:
            await core.close()

    asyncio.run(go())


def foreign(
    txn_type: TxnType = TxnType.CASH_WITHDRAWAL,
    amount: int = 500_000,
    pin: str = CARD.pin,
    *,
    pan: str = CARD.pan,
    key: str = ZPK_CLEAR,
    fmt: int = 0,
    **kw: object,
) -> AuthRequest:
    """A request as the acquirer forwards it: its own terminal id, PIN block under the ZPK."""
    block = switch_native.pin_block_encrypt(bytes.fromhex(key), fmt, pin, pan)
    base = AuthRequest(
        txn_type, Channel.ATM, pan, amount, DZD, NETWORK, FOREIGN_ATM, t.next_stan(),
        "1129120000", pin_block=block,
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


async def auth(core: SwitchCore, req: AuthRequest, code: ResponseCode) -> AuthResult:
    r = await core.authorize(req)
    assert r.response_code is code, r
    return r


def gl(core: SwitchCore, number: str) -> int:
    return int(
        core.store.query("SELECT account_id FROM accounts WHERE number = ?", (number,))[0][0]
    )


def legs(core: SwitchCore, txn_id: str | None) -> dict[int, int]:
    rows = core.store.query("SELECT account_id, amount FROM postings WHERE txn_id = ?", (txn_id,))
    return {int(a): int(v) for a, v in rows}


def pin_tries(core: SwitchCore, pan: str = CARD.pan) -> int:
    sql = "SELECT pin_tries FROM cards WHERE pan_last4 = ? AND pan_first6 = ?"
    return int(core.store.query(sql, (pan[-4:], pan[:6]))[0][0])


def assert_balanced(core: SwitchCore) -> None:
    rows = core.store.query("SELECT txn_id, SUM(amount) FROM postings GROUP BY txn_id")
    assert rows and all(s == 0 for _, s in rows), rows
    total = core.store.query("SELECT SUM(balance) FROM accounts")[0][0]
    assert total == sum(c.balance for c in demo.CARDS)


def test_foreign_atm_withdrawal_is_verified_under_the_acquirer_zpk_and_posted(
    state: Path,
) -> None:
    async def body(core: SwitchCore) -> None:
        r = await auth(core, foreign(amount=500_000), RC.APPROVED)
        assert r.available_balance == CARD.balance - 500_000 - OTHER_ATM_FEE
        card_account = core.store.query(
            "SELECT account_id FROM cards WHERE pan_last4 = ?", (CARD.pan[-4:],)
        )[0][0]
        assert legs(core, r.transaction_id) == {
            card_account: -(500_000 + OTHER_ATM_FEE),
            gl(core, GL_INTERBANK_ATM): 500_000,  # the cash the other bank's ATM paid out
            gl(core, GL_FEES): OTHER_ATM_FEE,
        }
        row = await core.store.journal_entry(r.transaction_id or "")
        assert row is not None
        assert (row.acquirer_id, row.terminal_id, row.response_code) == (NETWORK, FOREIGN_ATM, "00")
        assert row.counter_account_id == gl(core, GL_INTERBANK_ATM)
        assert row.masked_pan != CARD.pan and CARD.pan[:6] in row.masked_pan
        inquiry = await auth(core, foreign(TxnType.BALANCE_INQUIRY, 0), RC.APPROVED)
        assert inquiry.available_balance == r.available_balance
        assert legs(core, inquiry.transaction_id) == {}
        assert_balanced(core)

    run(state, body)


def test_wrong_pins_spend_the_same_tries_as_at_our_terminals(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        await auth(core, foreign(pin="9999"), RC.INCORRECT_PIN)
        assert pin_tries(core) == 1
        await auth(core, foreign(pin="9998"), RC.INCORRECT_PIN)
        r = await auth(core, foreign(pin="9997"), RC.PIN_TRIES_EXCEEDED)  # the 3rd: capture
        assert "capture" in r.message
        assert pin_tries(core) == 3
        await auth(core, foreign(), RC.PIN_TRIES_EXCEEDED)  # even the right PIN now
        await core.reset_pin_tries(CARD.pan)
        await auth(core, foreign(amount=100_000), RC.APPROVED)
        assert pin_tries(core) == 0

    run(state, body)


def test_a_pin_under_another_key_fails_and_a_garbled_block_spends_no_try(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        # a PIN block under a key the acquirer does not share with us: a PIN failure
        await auth(core, foreign(key=OTHER_CLEAR), RC.INCORRECT_PIN)
        tries = pin_tries(core)
        # a block that is no ISO format 0 block at all under the ZPK (PIN length 15)
        garbled = switch_native.des_encrypt_ecb(
            bytes.fromhex(ZPK_CLEAR), bytes.fromhex("0F1234FFFFFFFFFF")
        )
        r = await auth(core, foreign(pin_block=garbled), RC.INCORRECT_PIN)
        assert r.message == "PIN block not valid under the acquirer zone key"
        assert pin_tries(core) == tries  # keys out of sync are not the cardholder's fault

    run(state, body)


def test_an_unregistered_acquirer_is_declined_as_before(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        r = await auth(core, foreign(acquirer_id=UNKNOWN_ACQUIRER), RC.INVALID_TRANSACTION)
        assert r.message == "terminal_id: unknown terminal, no PIN key"
        assert pin_tries(core) == 0

    run(state, body)


def test_a_foreign_terminal_with_one_of_our_terminal_ids_is_not_ours(state: Path) -> None:
    """Terminal ids are unique per acquirer: NETWORK's ``GAB00001`` is not our ATM."""

    async def body(core: SwitchCore) -> None:
        ours = t.ATM.terminal_id
        r = await auth(core, foreign(terminal_id=ours, amount=200_000), RC.APPROVED)
        assert legs(core, r.transaction_id)[gl(core, GL_INTERBANK_ATM)] == 200_000
        assert legs(core, r.transaction_id)[gl(core, GL_FEES)] == OTHER_ATM_FEE
        # a block under our ATM's TPK, claimed by NETWORK: verified under the ZPK, refused
        under_tpk = t.pin_block(CARD.pan, CARD.pin)
        await auth(core, foreign(terminal_id=ours, pin_block=under_tpk), RC.INCORRECT_PIN)
        # our own ATM is untouched by the registration: its TPK, the own-ATM fee
        own = await auth(core, t.withdrawal(amount=100_000), RC.APPROVED)
        assert legs(core, own.transaction_id)[gl(core, GL_FEES)] == OWN_ATM_FEE
        assert_balanced(core)

    run(state, body)


def test_a_foreign_pos_purchase_credits_the_interbank_pos_account(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        req = foreign(TxnType.PURCHASE, 250_000, channel=Channel.POS, mcc="5411")
        r = await auth(core, req, RC.APPROVED)
        assert legs(core, r.transaction_id)[gl(core, GL_INTERBANK_POS)] == 250_000
        assert r.available_balance == CARD.balance - 250_000  # no fee on a payment
        assert_balanced(core)

    run(state, body)


def test_retransmission_and_reversal_from_a_foreign_atm(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        req = foreign(amount=300_000)
        first = await auth(core, req, RC.APPROVED)
        again = await auth(core, req, RC.APPROVED)
        assert again.replayed and again.transaction_id == first.transaction_id
        posted = core.store.query("SELECT COUNT(DISTINCT txn_id) FROM postings")[0][0]
        assert posted == 1
        rev = await auth(core, t.reversal_of(req), RC.APPROVED)
        assert rev.available_balance == CARD.balance  # the amount and its fee come back
        assert_balanced(core)

    run(state, body)


def test_the_acquirer_pin_block_format_is_used(state: Path) -> None:
    """An acquirer configured with ISO format 3 blocks (payShield 47)."""

    async def body(core: SwitchCore) -> None:
        await auth(core, foreign(fmt=3, amount=100_000), RC.APPROVED)
        await auth(core, foreign(fmt=3, pin="4321"), RC.INCORRECT_PIN)

    run(state, body, pin_block_format="47")


def test_ibm_offset_cards_verify_under_the_zpk_with_ea(state: Path) -> None:
    from switch.core.pipeline import DECIMALISATION_TABLE, ibm_validation_data

    pan = luhn_complete("628058777000002")

    async def add_card() -> None:
        offset = switch_native.ibm3624_offset_generate(
            bytes.fromhex(demo.PVK_CLEAR), "2468", ibm_validation_data(pan), DECIMALISATION_TABLE, 4
        )
        await add_ibm_offset_card(state, pan, offset, "0009000000-02", 900_000)

    asyncio.run(add_card())

    async def body(core: SwitchCore) -> None:
        await auth(core, foreign(pan=pan, pin="2468", amount=100_000), RC.APPROVED)
        await auth(core, foreign(pan=pan, pin="2469", amount=100_000), RC.INCORRECT_PIN)

    run(state, body)
