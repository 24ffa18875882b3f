"""Every response code of docs/architecture.md §3 that the core produces, against the real
SQLite store and the real in-process HSM with the demo data (PIN blocks, CVV2s and ARQCs
computed from the documented test keys)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from switch.core import demo
from switch.core import testing as t
from switch.core.model import AuthRequest, AuthResult, Channel, ResponseCode, TxnType
from switch.core.service import SwitchCore
from tests.ibm_card import add_ibm_offset_card

RC = ResponseCode
Body = Callable[[SwitchCore], Awaitable[None]]


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("core-template")

    async def seed() -> None:
        core = await SwitchCore.open(path)
        await core.close()

    asyncio.run(seed())
    return path


@pytest.fixture
def run_core(template: Path, tmp_path: Path) -> Callable[[Body], None]:
    state = tmp_path / "state"
    shutil.copytree(template, state)

    def runner(body: Body) -> None:
        async def go() -> None:
            core = await SwitchCore.open(state)
            try:
                await asyncio.wait_for(body(core), 30)
            finally:
                await core.close()

        asyncio.run(go())

    return runner


async def auth(core: SwitchCore, req: AuthRequest, code: ResponseCode) -> AuthResult:
    r = await core.authorize(req)
    assert r.response_code is code, r
    return r


def test_00_withdrawal_posts_amount_and_fee(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        r = await auth(core, t.withdrawal(amount=500_000), RC.APPROVED)
        assert r.available_balance == demo.CARDS[0].balance - 500_000 - 3_000
        assert r.approved_amount == 500_000 and r.auth_code and r.transaction_id
        rows = core.store.query(
            "SELECT account_id, amount FROM postings WHERE txn_id = ? ORDER BY amount",
            (r.transaction_id,),
        )
        assert [a for _, a in rows] == [-503_000, 3_000, 500_000]
        # the other bank's ATM: fee 35 DZD
        r2 = await auth(core, t.withdrawal(amount=100_000, terminal=t.OTHER_ATM), RC.APPROVED)
        assert r2.available_balance == r.available_balance - 100_000 - 3_500
        alerts = core.store.claim_due_alerts(now=1e12, limit=10)
        assert len(alerts) == 2 and alerts[0].msisdn == demo.CARDS[0].phone
        assert "5 030,00" in alerts[0].text and "Alger Grande Poste" in alerts[0].text
        assert "0017" in alerts[0].text and demo.CARDS[0].pan not in alerts[0].text

    run_core(body)


def test_00_balance_inquiry(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        r = await auth(core, t.balance_inquiry(), RC.APPROVED)
        assert r.available_balance == demo.CARDS[0].balance
        assert core.store.query("SELECT COUNT(*) FROM postings") == [(0,)]

    run_core(body)


def test_05_bad_cvv2_and_bad_arqc(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        await auth(
            core,
            t.ecommerce(cvv2="000" if demo.cvv2(t.CARD.pan, "3012") != "000" else "111"),
            RC.DO_NOT_HONOUR,
        )
        emv = bytearray(t.emv_request_data(t.CARD.pan, 300_000))
        emv[-1] ^= 1  # corrupt the ARQC
        req = replace(t.withdrawal(amount=300_000), channel=Channel.POS, txn_type=TxnType.PURCHASE,
                      terminal_id=t.POS.terminal_id, pin_block=None, emv_data=bytes(emv),
                      merchant_id=t.FUEL.merchant_id)  # fmt: skip
        await auth(core, req, RC.DO_NOT_HONOUR)

    run_core(body)


def test_arqc_verified_and_arpc_returned(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        emv = t.emv_request_data(t.CARD.pan, 300_000)
        req = replace(t.withdrawal(amount=300_000), channel=Channel.POS, txn_type=TxnType.PURCHASE,
                      terminal_id=t.POS.terminal_id, pin_block=None, emv_data=emv,
                      merchant_id=t.FUEL.merchant_id)  # fmt: skip
        r = await auth(core, req, RC.APPROVED)
        arpc = t.expected_arpc(t.CARD.pan, emv, b"00")
        assert r.issuer_script == bytes([0x91, 10]) + arpc + b"00"
        # a decline after a good ARQC carries the decline's ARC (51 here)
        emv2 = t.emv_request_data(t.POOR_CARD.pan, 900_000, atc=7)
        req2 = replace(req, pan=t.POOR_CARD.pan, amount=900_000, emv_data=emv2, stan=t.next_stan())
        r2 = await auth(core, req2, RC.INSUFFICIENT_FUNDS)
        assert (
            r2.issuer_script
            == bytes([0x91, 10]) + t.expected_arpc(t.POOR_CARD.pan, emv2, b"51") + b"51"
        )

    run_core(body)


def test_12_invalid_transaction(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        # cash withdrawal through the e-commerce channel
        await auth(
            core, replace(t.ecommerce(), txn_type=TxnType.CASH_WITHDRAWAL), RC.INVALID_TRANSACTION
        )
        # refund of an unknown payment
        await auth(core, t.follow_up(TxnType.REFUND, "999999999999", 100), RC.INVALID_TRANSACTION)
        # bill of an unknown biller
        req = replace(
            t.ecommerce(), txn_type=TxnType.BILL_PAYMENT, biller_id="NOPE", bill_reference="1"
        )
        await auth(core, req, RC.INVALID_TRANSACTION)

    run_core(body)


def test_13_invalid_amount(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        await auth(core, t.withdrawal(amount=50_000), RC.INVALID_AMOUNT)  # below 1,000 DZD
        await auth(core, t.withdrawal(amount=-5), RC.INVALID_AMOUNT)
        await auth(core, t.withdrawal(amount=0), RC.INVALID_AMOUNT)
        await auth(core, t.withdrawal(currency=978), RC.INVALID_AMOUNT)

    run_core(body)


def test_14_invalid_card_number(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        await auth(core, t.withdrawal(pan="6280580000000018"), RC.INVALID_CARD_NUMBER)  # Luhn
        await auth(core, t.withdrawal(pan="6280581111111116"), RC.INVALID_CARD_NUMBER)  # unknown
        await auth(core, t.withdrawal(pan="4000000000000002"), RC.INVALID_CARD_NUMBER)  # no route

    run_core(body)


def test_30_format_error(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        r = await auth(core, t.withdrawal(pin_block=None), RC.FORMAT_ERROR)
        assert "pin_block" in r.message
        await auth(core, t.withdrawal(pin_block=b"123"), RC.FORMAT_ERROR)
        await auth(core, t.withdrawal(stan=""), RC.FORMAT_ERROR)
        await auth(core, t.ecommerce(cvv2=None), RC.FORMAT_ERROR)

    run_core(body)


@pytest.mark.parametrize(
    ("index", "code"),
    [(3, RC.LOST_CARD), (4, RC.STOLEN_CARD), (5, RC.EXPIRED_CARD), (6, RC.RESTRICTED_CARD),
     (2, RC.RESTRICTED_CARD)],
)  # fmt: skip
def test_card_status_codes(run_core: Callable[[Body], None], index: int, code: RC) -> None:
    c = demo.CARDS[index]

    async def body(core: SwitchCore) -> None:
        await auth(core, t.withdrawal(pan=c.pan, pin=c.pin), code)

    run_core(body)


def test_activation_makes_a_delivered_card_usable_and_sends_sms(
    run_core: Callable[[Body], None],
) -> None:
    c = demo.CARDS[2]

    async def body(core: SwitchCore) -> None:
        await auth(core, t.withdrawal(pan=c.pan, pin=c.pin), RC.RESTRICTED_CARD)
        await core.activate_card(c.pan, "Bureau de poste Didouche")
        await auth(core, t.withdrawal(pan=c.pan, pin=c.pin), RC.APPROVED)
        texts = [str(x) for (x,) in core.store.query("SELECT text FROM alerts ORDER BY alert_id")]
        assert "activ" in texts[0]

    run_core(body)


def test_51_insufficient_funds(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        p = t.POOR_CARD
        await auth(core, t.withdrawal(pan=p.pan, pin=p.pin, amount=500_000), RC.INSUFFICIENT_FUNDS)
        # the fee counts: 4,970 DZD + 30 DZD is exactly the balance
        await auth(core, t.withdrawal(pan=p.pan, pin=p.pin, amount=497_000), RC.APPROVED)

    run_core(body)


def test_54_expiry_in_request_must_match(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        await auth(core, t.ecommerce(expiry="2201"), RC.EXPIRED_CARD)

    run_core(body)


def test_55_and_75_pin_tries(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        await auth(core, t.withdrawal(pin="0000"), RC.INCORRECT_PIN)
        await auth(core, t.withdrawal(), RC.APPROVED)  # a correct PIN resets the counter
        await auth(core, t.withdrawal(pin="0000"), RC.INCORRECT_PIN)
        await auth(core, t.withdrawal(pin="0000"), RC.INCORRECT_PIN)
        await auth(core, t.withdrawal(pin="0000"), RC.PIN_TRIES_EXCEEDED)
        await auth(core, t.withdrawal(), RC.PIN_TRIES_EXCEEDED)  # even the right PIN now
        assert core.store.query("SELECT pin_tries FROM cards WHERE card_id = 1") == [(3,)]
        await core.reset_pin_tries(t.CARD.pan)
        await auth(core, t.withdrawal(), RC.APPROVED)

    run_core(body)


def test_57_not_permitted(template: Path, tmp_path: Path) -> None:
    from switch.config import load_config

    cfg = load_config()
    prod = cfg.products["EDAHABIA_CLASSIC"]
    no_transfers = replace(cfg, products={prod.code: replace(prod, allow_transfers=False)})
    state = tmp_path / "s"
    shutil.copytree(template, state)

    async def go() -> None:
        core = await SwitchCore.open(state, config=no_transfers)
        try:
            req = replace(t.withdrawal(), txn_type=TxnType.TRANSFER,
                          destination_account=demo.CARDS[1].account)  # fmt: skip
            await auth(core, req, RC.NOT_PERMITTED_TO_CARDHOLDER)
        finally:
            await core.close()

    asyncio.run(go())


def test_61_and_65_limits(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        rich = t.RICH_CARD
        # ATM: 50,000 DZD a day; 2 x 20,000 pass, a third 20,000 does not
        for _ in range(2):
            await auth(
                core, t.withdrawal(pan=rich.pan, pin=rich.pin, amount=2_000_000), RC.APPROVED
            )
        await auth(
            core,
            t.withdrawal(pan=rich.pan, pin=rich.pin, amount=2_000_000),
            RC.EXCEEDS_AMOUNT_LIMIT,
        )
        await auth(core, t.withdrawal(pan=rich.pan, pin=rich.pin, amount=1_000_000), RC.APPROVED)
        # fuel: 5 payments a day
        for _ in range(5):
            req = replace(t.withdrawal(pan=rich.pan, pin=rich.pin, amount=100_000, terminal=t.POS),
                          txn_type=TxnType.PURCHASE, channel=Channel.POS, mcc="5541",
                          merchant_id=t.FUEL.merchant_id)  # fmt: skip
            await auth(core, req, RC.APPROVED)
        await auth(core, replace(req, stan=t.next_stan()), RC.EXCEEDS_COUNT_LIMIT)
        # per-transaction cap (e-commerce 50,000 DZD)
        await auth(core, t.ecommerce(pan=rich.pan, amount=6_000_000), RC.EXCEEDS_AMOUNT_LIMIT)

    run_core(body)


def test_91_remote_issuer_not_connected_and_connected(run_core: Callable[[Body], None]) -> None:
    class Remote:
        def __init__(self) -> None:
            self.seen: list[AuthRequest] = []

        async def authorize(self, req: AuthRequest) -> AuthResult:
            self.seen.append(req)
            return AuthResult(RC.APPROVED, "ok", auth_code="R12345", available_balance=42)

    async def body(core: SwitchCore) -> None:
        req = t.withdrawal(pan=demo.REMOTE_CARD_PAN)
        route = core.route(demo.REMOTE_CARD_PAN)
        assert route is not None and not route.on_us and route.destination == demo.REMOTE_ISSUER
        r = await auth(core, req, RC.ISSUER_UNAVAILABLE)
        assert demo.REMOTE_ISSUER in r.message
        remote = Remote()
        core.register_remote_issuer(demo.REMOTE_ISSUER, remote)
        r2 = await auth(core, replace(req, stan=t.next_stan()), RC.APPROVED)
        assert r2.auth_code == "R12345" and len(remote.seen) == 1
        assert core.store.query("SELECT COUNT(*) FROM postings") == [(0,)]

    run_core(body)


def test_94_duplicate_and_replay(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        req = t.withdrawal()
        first = await auth(core, req, RC.APPROVED)
        again = await auth(core, req, RC.APPROVED)
        assert again.replayed and again.transaction_id == first.transaction_id
        assert again.available_balance == first.available_balance
        # same STAN and date, different amount: a clash, not a retransmission
        await auth(core, replace(req, amount=200_000), RC.DUPLICATE_TRANSMISSION)
        n = core.store.query("SELECT COUNT(DISTINCT txn_id) FROM postings")
        assert n == [(1,)]

    run_core(body)


def test_96_when_the_store_cannot_commit(run_core: Callable[[Body], None]) -> None:
    async def body(core: SwitchCore) -> None:
        await auth(core, t.withdrawal(), RC.APPROVED)
        # another process breaks the database under the switch: the next batch fails
        other = sqlite3.connect(core.store.path)
        other.execute("ALTER TABLE postings RENAME TO postings_gone")
        other.commit()
        other.close()
        await auth(core, t.withdrawal(), RC.SYSTEM_MALFUNCTION)
        assert core.halted
        await auth(core, t.withdrawal(), RC.SYSTEM_MALFUNCTION)

    run_core(body)


def test_ibm_offset_cards_verify_through_the_hsm(template: Path, tmp_path: Path) -> None:
    import switch_native

    from switch.core.domain import luhn_complete
    from switch.core.pipeline import DECIMALISATION_TABLE, ibm_validation_data

    state = tmp_path / "s"
    shutil.copytree(template, state)
    pan = luhn_complete("628058777000001")

    async def go() -> None:
        offset = switch_native.ibm3624_offset_generate(
            bytes.fromhex(demo.PVK_CLEAR), "2468", ibm_validation_data(pan), DECIMALISATION_TABLE, 4
        )
        await add_ibm_offset_card(state, pan, offset, "0009000000-01", 1_000_000)
        core = await SwitchCore.open(state)
        try:
            await auth(core, t.withdrawal(pan=pan, pin="2468", amount=100_000), RC.APPROVED)
            await auth(core, t.withdrawal(pan=pan, pin="2469", amount=100_000), RC.INCORRECT_PIN)
        finally:
            await core.close()

    asyncio.run(go())


def test_a_store_without_demo_data_starts_empty_and_routes_nothing(tmp_path: Path) -> None:
    async def go() -> None:
        core = await SwitchCore.open(tmp_path / "bare", seed_demo=False)
        try:
            assert core.terminal("GAB00001") is None
            await auth(core, t.withdrawal(), RC.INVALID_CARD_NUMBER)  # no BIN route at all
            gl = core.store.query("SELECT number FROM accounts ORDER BY account_id")
            assert [g for (g,) in gl] == ["GL-FEES", "GL-INTERBANK-ATM", "GL-INTERBANK-POS"]
        finally:
            await core.close()
        again = await SwitchCore.open(tmp_path / "bare", seed_demo=False)  # idempotent
        await again.close()

    asyncio.run(go())


def test_one_process_per_state_dir(template: Path, tmp_path: Path) -> None:
    from switch.core.service import CoreError

    state = tmp_path / "s"
    shutil.copytree(template, state)

    async def go() -> None:
        first = await SwitchCore.open(state)
        try:
            with pytest.raises(CoreError, match="in use"):
                await SwitchCore.open(state)
        finally:
            await first.close()
        second = await SwitchCore.open(state)  # released on close
        await second.close()

    asyncio.run(go())
