"""MAC on the inbound interchange link: a request from another acquirer's terminal is checked
under the zone MAC key (ZAK) of the acquirer in field 32, and its answer signed with it; an
acquirer configured with a ZAK must sign (30 otherwise), a wrong MAC is 63 and nothing is
posted. Our own terminals keep their TAK.

Real parts: the demo-seeded SQLite store in a temp dir, the in-process HSM, the ISO 8583
listener on a free port, and the ATM simulator's client as the acquirer, signing with the
clear test ZAK (ISO 9797-1 algorithm 3, as the acquirer's own HSM would)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import switch_native

from switch.atm import AtmClient, financial, mac_ok, new_stan, parse_balances, sign
from switch.atm import transmission_now as now7
from switch.core import demo
from switch.core.interchange import AcquirerConfig
from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.iso8583.message import Message
from switch.iso8583.server import IsoListener, ListenerConfig, start_iso_server

CARD = demo.CARDS[0]  # 150,000 DZD, PIN 1234
ATM = demo.TERMINALS[0]  # our GAB00001, with a TAK
SIGNING = "000077"  # an acquirer with a ZAK: it must sign
UNSIGNED = "000088"  # an acquirer with a ZPK only
FOREIGN_ATM = "XATM0042"
ZPK_CLEAR = "3D3D3D3D3D3D3D3D4A4A4A4A4A4A4A4A"
ZAK_CLEAR = "4C4C4C4C4C4C4C4C5B5B5B5B5B5B5B5B"
FEE = 3_500  # another bank's ATM

Body = Callable[[SwitchCore, AtmClient], Awaitable[None]]


def serve(state: Path, body: Body) -> None:
    async def go() -> None:
        ceremony = InProcessHsm(Lmk.load(state / "lmk.json"), authorised=True)
        zpk = await ceremony.form_key_from_clear_components(KeyType.ZPK, [ZPK_CLEAR])
        zak = await ceremony.form_key_from_clear_components(KeyType.ZAK, [ZAK_CLEAR])
        core = await SwitchCore.open(state)
        core.register_acquirer(AcquirerConfig(SIGNING, zpk.key_under_lmk, zak.key_under_lmk))
        core.register_acquirer(AcquirerConfig(UNSIGNED, zpk.key_under_lmk))
        listener: IsoListener = await start_iso_server(core, ListenerConfig(port=0))
        client = AtmClient()
        try:
            await client.connect("127.0.0.1", listener.port)
            await asyncio.wait_for(body(core, client), 30)
        finally:
            await client.close()
            await listener.close(grace=1)
            await core.close()

    asyncio.run(go())


def foreign(
    proc: str = "010000",
    amount: int = 500_000,
    acquirer: str = SIGNING,
    terminal: str = FOREIGN_ATM,
    pin: str = CARD.pin,
    mcc: str = "6011",
) -> Message:
    """A 0200 as the acquirer forwards it: its ATM's id, the PIN block under the ZPK."""
    now = dt.datetime.now(dt.UTC)
    block = switch_native.pin_block_encrypt(bytes.fromhex(ZPK_CLEAR), 0, pin, CARD.pan)
    return Message(
        "0200",
        {
            2: CARD.pan, 3: proc, 4: f"{amount:012d}", 7: now7(), 11: new_stan(),
            12: now.strftime("%H%M%S"), 13: now.strftime("%m%d"), 18: mcc, 22: "021",
            32: acquirer, 41: terminal, 43: "Partner ATM / Oran".ljust(40), 49: "012", 52: block,
        },
    )  # fmt: skip


def zak_signed(msg: Message, client: AtmClient) -> Message:
    return sign(msg, ZAK_CLEAR, client.codec)


async def available(client: AtmClient) -> int:
    answer = await client.request(zak_signed(foreign("310000", 0), client))
    assert answer.fields[39] == "00", answer
    return parse_balances(answer.text(54))["available"]


def journal_rows(core: SwitchCore) -> int:
    return int(core.store.query("SELECT COUNT(*) FROM journal")[0][0])


def test_a_signed_request_is_checked_under_the_zak_and_the_answer_signed(state: Path) -> None:
    async def body(core: SwitchCore, c: AtmClient) -> None:
        req = zak_signed(foreign(), c)
        answer = await c.request(req)
        assert answer.fields[39] == "00", answer
        assert mac_ok(answer, ZAK_CLEAR, c.codec)
        assert not mac_ok(answer, ATM.tak_clear, c.codec)
        assert await available(c) == CARD.balance - 500_000 - FEE
        # its reversal carries field 90: the MAC is in field 128, both ways
        rev = Message(
            "0420",
            {
                2: CARD.pan, 3: "010000", 4: f"{500_000:012d}", 7: now7(), 11: new_stan(),
                32: SIGNING, 41: FOREIGN_ATM, 49: "012",
                90: f"0200{req.text(11)}{req.text(7)}{SIGNING:0>11}{'0' * 11}",
            },
        )  # fmt: skip
        rev_answer = await c.request(zak_signed(rev, c))
        assert 128 in rev_answer.fields and rev_answer.fields[39] == "00", rev_answer
        assert mac_ok(rev_answer, ZAK_CLEAR, c.codec)
        assert await available(c) == CARD.balance

    serve(state, body)


def test_unsigned_forged_or_wrongly_keyed_requests_are_refused(state: Path) -> None:
    async def body(core: SwitchCore, c: AtmClient) -> None:
        before = journal_rows(core)
        unsigned = await c.request(foreign())
        assert unsigned.fields[39] == "30"  # an acquirer with a ZAK must sign
        forged = zak_signed(foreign(amount=100_000), c)
        forged.fields[4] = f"{4_000_000:012d}"  # changed after signing
        assert (await c.request(forged)).fields[39] == "63"
        under_tak = sign(foreign(), ATM.tak_clear, c.codec)  # not the zone key
        assert (await c.request(under_tak)).fields[39] == "63"
        # the same terminal id as our ATM, from that acquirer: still the ZAK, not our TAK
        claimed = sign(foreign(terminal=ATM.terminal_id), ATM.tak_clear, c.codec)
        assert (await c.request(claimed)).fields[39] == "63"
        assert journal_rows(core) == before  # refused before the core: nothing journaled
        assert await available(c) == CARD.balance
        ok = await c.request(zak_signed(foreign(terminal=ATM.terminal_id, amount=100_000), c))
        assert ok.fields[39] == "00" and mac_ok(ok, ZAK_CLEAR, c.codec)

    serve(state, body)


def test_an_acquirer_without_a_zak_and_our_own_terminals(state: Path) -> None:
    async def body(core: SwitchCore, c: AtmClient) -> None:
        plain = await c.request(foreign(acquirer=UNSIGNED, amount=100_000))
        assert plain.fields[39] == "00" and 64 not in plain.fields
        # it has no MAC key with us: a signed message cannot be checked -> 30
        signed = zak_signed(foreign(acquirer=UNSIGNED), c)
        assert (await c.request(signed)).fields[39] == "30"
        # our own ATM: its TAK as before, unsigned allowed without --require-mac
        own = financial("010000", CARD.pan, CARD.pin, 100_000, ATM.terminal_id)
        assert (await c.request(own)).fields[39] == "00"
        own_signed = sign(
            financial("310000", CARD.pan, CARD.pin, 0, ATM.terminal_id), ATM.tak_clear, c.codec
        )
        answer = await c.request(own_signed)
        assert answer.fields[39] == "00" and mac_ok(answer, ATM.tak_clear, c.codec)
        # network management without field 32 needs no MAC
        echo = await c.request(Message("0800", {7: now7(), 11: new_stan(), 70: "301"}))
        assert echo.fields[39] == "00"

    serve(state, body)


def test_a_foreign_pos_with_one_of_our_terminal_ids_is_mapped_as_foreign(state: Path) -> None:
    """Our GAB00001 is an ATM; the acquirer's GAB00001 is a shop (MCC 5411): its purchase
    is a POS payment settled with the interbank POS account, not refused as an ATM's."""

    async def body(core: SwitchCore, c: AtmClient) -> None:
        buy = foreign("000000", 250_000, acquirer=UNSIGNED, terminal=ATM.terminal_id, mcc="5411")
        answer = await c.request(buy)
        assert answer.fields[39] == "00", answer
        (row,) = core.store.query(
            "SELECT channel, counter_account_id FROM journal WHERE stan = ?", (buy.text(11),)
        )
        interbank_pos = core.store.query(
            "SELECT account_id FROM accounts WHERE number = 'GL-INTERBANK-POS'"
        )[0][0]
        assert row == ("pos", interbank_pos)

    serve(state, body)
