"""Card-present track 2 checks (``switch.core.card_checks``) against a real core: the SQLite
store, the in-process HSM (CY verifies every CVV / iCVV) and the demo cards, whose track 2
is built by ``switch.core.testing.track2`` from the documented test keys; one case goes end
to end through the ISO 8583 listener."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from switch import cli
from switch.atm import AtmClient, financial, parse_balances
from switch.config import ConfigError, SwitchConfig, load_config, parse_config
from switch.core import card_checks, demo
from switch.core import testing as t
from switch.core.context import Decline
from switch.core.domain import Card, CardStatus
from switch.core.model import AuthRequest, AuthResult, ResponseCode
from switch.core.service import SwitchCore
from switch.iso8583.server import ListenerConfig, start_iso_server

RC = ResponseCode
CARD = demo.CARDS[0]  # active, 150,000 DZD, PIN 1234, service code 201 (chip)
ATM = demo.TERMINALS[0]
FEE = 3_000  # 30 DZD on our own ATM
Body = Callable[[SwitchCore], Awaitable[None]]


def config(*, fallback: bool) -> SwitchConfig:
    shipped = load_config()
    products = {
        code: replace(p, allow_chip_fallback=fallback) for code, p in shipped.products.items()
    }
    return SwitchConfig(products=products, timezone=shipped.timezone)


def run(state: Path, body: Body, *, fallback: bool = False) -> None:
    t.run_core(state, body, durable=False, config=config(fallback=fallback))


async def auth(core: SwitchCore, req: AuthRequest, code: ResponseCode) -> AuthResult:
    r = await core.authorize(req)
    assert r.response_code is code, r
    return r


def chip() -> AuthRequest:
    """A 5,000 DZD withdrawal at our ATM, card read by its chip."""
    return t.card_read(t.withdrawal(), chip=True)


def stripe() -> AuthRequest:
    """The same, card read by its magnetic stripe."""
    return t.card_read(t.withdrawal(), chip=False)


def again(req: AuthRequest, **changes: object) -> AuthRequest:
    """``req`` changed, as a new request (new STAN: not a retransmission of the first)."""
    return replace(req, stan=t.next_stan(), **changes)  # type: ignore[arg-type]


def icvv() -> str:
    return t.track2(CARD, chip=True)[-3:]


def stripe_cvv() -> str:
    return t.track2(CARD, chip=False)[-3:]


def pin_tries(core: SwitchCore) -> int:
    return int(core.store.query("SELECT pin_tries FROM cards WHERE card_id = 1")[0][0])


def nothing_posted(core: SwitchCore, r: AuthResult) -> None:
    assert r.transaction_id is not None
    q = "SELECT COUNT(*) FROM postings WHERE txn_id = ?"
    assert core.store.query(q, (r.transaction_id,)) == [(0,)]
    row = core.store.query(
        "SELECT response_code, message FROM journal WHERE txn_id = ?", (r.transaction_id,)
    )
    assert row == [(r.response_code.value, r.message)]  # journaled with its reason


def balanced(core: SwitchCore) -> None:
    rows = core.store.query("SELECT txn_id, SUM(amount) FROM postings GROUP BY txn_id")
    assert all(s == 0 for _, s in rows), rows
    total = core.store.query("SELECT SUM(balance) FROM accounts")[0][0]
    assert total == sum(c.balance for c in demo.CARDS)


def test_the_two_cvvs_differ_so_the_checks_can_tell_them_apart() -> None:
    assert icvv() != stripe_cvv()
    assert t.track2(CARD, chip=True)[:24] == t.track2(CARD, chip=False)[:24]


def test_chip_read_with_the_icvv_is_approved(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        r = await auth(core, chip(), RC.APPROVED)
        assert r.available_balance == CARD.balance - 500_000 - FEE
        assert r.issuer_script is not None  # the ARQC was verified too
        balanced(core)

    run(state, body)


def test_wrong_cvv_declined_without_a_pin_try_and_without_posting(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        bad = icvv()[:2] + str((int(icvv()[2]) + 1) % 10)
        req = t.card_read(t.withdrawal(pin="9999"), chip=True, cvv=bad)  # wrong PIN as well
        r = await auth(core, req, RC.DO_NOT_HONOUR)
        assert r.message == "card verification value mismatch: iCVV (chip track 2 equivalent)"
        assert pin_tries(core) == 0  # the PIN was never looked at
        nothing_posted(core, r)
        # the right iCVV with a wrong PIN goes on to the PIN check, which spends a try
        await auth(core, t.card_read(t.withdrawal(pin="9999"), chip=True), RC.INCORRECT_PIN)
        assert pin_tries(core) == 1
        ok = await auth(core, chip(), RC.APPROVED)
        assert ok.available_balance == CARD.balance - 500_000 - FEE
        balanced(core)

    run(state, body)


def test_chip_read_refuses_the_magnetic_stripe_cvv(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        req = t.card_read(t.withdrawal(), chip=True, cvv=stripe_cvv())
        r = await auth(core, req, RC.DO_NOT_HONOUR)
        assert "iCVV" in r.message
        nothing_posted(core, r)
        # the chip gets the ARPC of the decline (ARC 05), so it sees the issuer's decision
        assert req.emv_data is not None and r.issuer_script is not None
        arpc = t.expected_arpc(CARD.pan, req.emv_data, b"05")
        assert r.issuer_script == b"\x91\x0a" + arpc + b"05"
        # a chip read whose cryptogram is wrong is refused before the PIN too
        good = t.card_read(t.withdrawal(pin="9999"), chip=True)
        assert good.emv_data is not None
        forged = again(good, emv_data=good.emv_data[:-1] + bytes([good.emv_data[-1] ^ 0xFF]))
        r = await auth(core, forged, RC.DO_NOT_HONOUR)
        assert r.message == "ARQC verification failed"
        assert pin_tries(core) == 0

    run(state, body)


def test_stripe_read_needs_the_stripe_cvv_not_the_icvv(state: Path) -> None:
    """With fallback allowed by the product, a stripe read is checked against the CVV of the
    card's real service code: a stripe written from the chip's data (iCVV) is refused."""

    async def body(core: SwitchCore) -> None:
        copied = t.card_read(t.withdrawal(), chip=False, cvv=icvv())
        r = await auth(core, copied, RC.DO_NOT_HONOUR)
        assert r.message == "card verification value mismatch: CVV (magnetic stripe)"
        nothing_posted(core, r)
        assert pin_tries(core) == 0
        ok = await auth(core, stripe(), RC.APPROVED)
        assert ok.available_balance == CARD.balance - 500_000 - FEE
        balanced(core)

    run(state, body, fallback=True)


def test_chip_card_fallback_to_the_stripe_is_declined_by_the_product(state: Path) -> None:
    assert load_config().product("EDAHABIA_CLASSIC").allow_chip_fallback is False

    async def body(core: SwitchCore) -> None:
        r = await auth(core, stripe(), RC.NOT_PERMITTED_TO_CARDHOLDER)
        assert "fallback not allowed" in r.message
        nothing_posted(core, r)
        # whatever field 22 says short of a chip read (here: none), it is not a chip read
        r = await auth(core, replace(stripe(), entry_mode=None), RC.NOT_PERMITTED_TO_CARDHOLDER)
        assert pin_tries(core) == 0
        await auth(core, chip(), RC.APPROVED)  # the same card read by its chip
        balanced(core)

    run(state, body)


def test_service_code_differing_from_the_card_record_is_declined(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        # A stripe re-encoded as a magnetic-stripe-only card (101), with a CVV that is even
        # correct for that service code: the card's record says 201.
        req = t.card_read(t.withdrawal(), chip=False, service_code="101")
        r = await auth(core, req, RC.DO_NOT_HONOUR)
        assert r.message == "service code does not match the card's record (suspected counterfeit)"
        nothing_posted(core, r)
        # the chip's track 2 equivalent is held to the same record
        req = t.card_read(t.withdrawal(), chip=True, service_code="221")
        r = await auth(core, req, RC.DO_NOT_HONOUR)
        assert "service code" in r.message
        # field 22/35 disagreeing with a stated service code is malformed
        await auth(core, replace(chip(), service_code="101"), RC.FORMAT_ERROR)
        assert pin_tries(core) == 0
        balanced(core)

    run(state, body, fallback=True)


def test_malformed_track2_is_a_format_error(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        good = chip()
        assert good.track2 is not None
        short = again(good, track2=good.track2[:-2])  # the CVV cut off
        r = await auth(core, short, RC.FORMAT_ERROR)
        assert r.message.startswith("track 2:")
        await auth(core, again(good, track2=good.track2.replace("=", "X")), RC.FORMAT_ERROR)
        other_pan = again(good, track2=demo.CARDS[1].pan + good.track2[16:])
        await auth(core, other_pan, RC.FORMAT_ERROR)
        await auth(core, again(good, emv_data=None), RC.FORMAT_ERROR)  # chip read, no 55
        expiry = again(good, track2=good.track2.replace("=3012", "=2912"))
        await auth(core, expiry, RC.EXPIRED_CARD)
        assert pin_tries(core) == 0
        assert core.store.query("SELECT COUNT(*) FROM postings") == [(0,)]

    run(state, body)


def test_requests_without_track2_keep_todays_behaviour(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        spent = 0
        keyed = await auth(core, t.withdrawal(entry_mode="021"), RC.APPROVED)  # like switch atm
        spent += 500_000 + FEE
        assert keyed.available_balance == CARD.balance - spent
        emv_only = replace(
            t.withdrawal(), entry_mode="051", emv_data=t.emv_request_data(CARD.pan, 500_000)
        )
        await auth(core, emv_only, RC.APPROVED)
        spent += 500_000 + FEE
        ecom = await auth(core, t.ecommerce(), RC.APPROVED)
        spent += 250_000
        assert ecom.available_balance == CARD.balance - spent
        await auth(core, t.withdrawal(pin="9999"), RC.INCORRECT_PIN)
        balanced(core)

    run(state, body)


def test_chip_card_rules_in_isolation_for_a_stripe_only_card() -> None:
    """A magnetic-stripe-only card (service code 101) read by stripe is no fallback."""
    card = Card(
        1, b"", CARD.pan[:6], CARD.pan[-4:], 1, "EDAHABIA_CLASSIC", CARD.expiry, "101", "00",
        1, "0000", "", "", "", "", CardStatus.ACTIVE,
    )  # fmt: skip
    product = load_config().product("EDAHABIA_CLASSIC")
    req = t.card_read(t.withdrawal(), chip=False, service_code="101")
    card_checks.check_track2_rules(req, card, product)  # no exception: not a fallback
    with pytest.raises(Decline) as exc:
        card_checks.check_track2_rules(stripe(), card, product)  # its track says 201
    assert exc.value.code is RC.DO_NOT_HONOUR
    assert card_checks.is_chip_card("601") and not card_checks.is_chip_card("101")
    assert repr(card_checks.parse_track2(t.track2(CARD, chip=True))) == "Track2(<redacted>)"


def test_allow_chip_fallback_is_read_from_the_product_table() -> None:
    sched = {
        "effective_from": dt.date(2024, 1, 1),
        "limits": {
            name: {"daily_amount": 1, "daily_count": 1}
            for name in (
                "atm_cash",
                "card_payment",
                "counter_cash",
                "ecommerce",
                "bill_payment",
                "fuel",
                "transfer",
            )
        },
    }
    on = parse_config(
        {"product": [{"code": "P", "allow_chip_fallback": True, "schedule": [sched]}]}
    )
    assert on.product("P").allow_chip_fallback is True
    off = parse_config({"product": [{"code": "P", "schedule": [sched]}]})
    assert off.product("P").allow_chip_fallback is False
    with pytest.raises(ConfigError, match=r"product\[0\]\.allow_chip_fallback"):
        parse_config({"product": [{"code": "P", "allow_chip_fallback": "no", "schedule": [sched]}]})


def test_iso_0200_with_field_35_end_to_end(state: Path) -> None:
    """Real 0200s over TCP from the ATM simulator's builder: a chip read (22 = 051, 35 = track
    2 equivalent with the iCVV, 55 = ARQC, no field 2) approved; the same with the stripe's
    CVV in the track declined 05; a stripe read of the chip card (fallback) declined 57."""

    async def go() -> None:
        core = await SwitchCore.open(state, durable=False)
        listener = await start_iso_server(core, ListenerConfig(port=0))
        c = AtmClient("ascii87", listener.config.framing)
        try:
            await c.connect("127.0.0.1", listener.port)
            good = financial("010000", CARD.pan, CARD.pin, 500_000, ATM.terminal_id, read="chip")
            assert 2 not in good.fields and good.fields[22] == "051" and 55 in good.fields
            assert good.fields[35] == t.track2(CARD, chip=True)
            answer = await c.request(good)
            assert answer.fields[39] == "00"
            balance = parse_balances(answer.text(54))["available"]
            assert balance == CARD.balance - 500_000 - FEE
            bad = financial("010000", CARD.pan, CARD.pin, 500_000, ATM.terminal_id, read="chip")
            bad.fields[35] = t.track2(CARD, chip=True, cvv=stripe_cvv())
            assert (await c.request(bad)).fields[39] == "05"
            fallback = financial("310000", CARD.pan, CARD.pin, 0, ATM.terminal_id, read="stripe")
            assert fallback.fields[22] == "901" and 55 not in fallback.fields
            assert (await c.request(fallback)).fields[39] == "57"
            rows = core.store.query("SELECT response_code, message FROM journal ORDER BY txn_id")
            assert [r[0] for r in rows] == ["00", "05", "57"]
            assert "iCVV" in str(rows[1][1]) and "fallback" in str(rows[2][1])
            assert CARD.pan not in str(rows) and str(good.fields[35]) not in str(rows)
            assert pin_tries(core) == 0
            balanced(core)
        finally:
            await c.close()
            await listener.close(grace=1)
            await core.close()

    asyncio.run(asyncio.wait_for(go(), 30))


def test_atm_cli_card_read_needs_a_demo_card(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["atm", "withdraw", "--amount", "5000", "--read", "chip", "--port", "1"]
    assert cli.main([*args, "--card", "6280589999999999", "--pin", "1234"]) == 2
    assert "needs a demo card" in capsys.readouterr().err
