"""The ISO 8583 acquirer listener end to end: a real core (SQLite in a temp dir, in-process HSM)
behind a real TCP listener on a free port, driven by the ATM simulator's client, raw sockets
and pyiso8583 (an independent implementation) as the acquirer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import iso8583
import iso8583.specs
import pytest
import switch_native

from switch.atm import AtmClient, financial, mac_ok, parse_balances, reversal, sign
from switch.core import demo, testing
from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.iso8583 import tlv
from switch.iso8583.codec import Codec
from switch.iso8583.framing import Frame, FrameSplitter, Framing, LengthHeader, frame
from switch.iso8583.message import Message
from switch.iso8583.server import IsoListener, ListenerConfig, start_iso_server

CARD = demo.CARDS[0]  # 150,000 DZD, PIN 1234
POOR = demo.CARDS[1]  # 5,000 DZD, PIN 4321
ATM = demo.TERMINALS[0]

Body = Callable[[SwitchCore, list[IsoListener]], Awaitable[None]]


def serve(state: Path, body: Body, *configs: ListenerConfig) -> None:
    async def go() -> None:
        core = await SwitchCore.open(state)
        listeners = [
            await start_iso_server(core, c) for c in (configs or (ListenerConfig(port=0),))
        ]
        try:
            await asyncio.wait_for(body(core, listeners), 30)
        finally:
            for listener in listeners:
                await listener.close(grace=1)
            await core.close()

    asyncio.run(go())


async def client(listener: IsoListener, spec: str = "ascii87") -> AtmClient:
    c = AtmClient(spec, listener.config.framing)
    await c.connect("127.0.0.1", listener.port)
    return c


def withdraw(amount_dzd: int, card: demo.DemoCard = CARD, pin: str | None = None) -> Message:
    return financial("010000", card.pan, pin or card.pin, amount_dzd * 100, ATM.terminal_id)


async def available(c: AtmClient, card: demo.DemoCard = CARD) -> int:
    answer = await c.request(financial("310000", card.pan, card.pin, 0, ATM.terminal_id))
    assert answer.fields[39] == "00"
    return parse_balances(answer.text(54))["available"]


def test_withdrawal_approved_with_balances_and_auth_code(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        req = withdraw(5_000)
        answer = await c.request(req)
        assert answer.mti == "0210"
        assert answer.fields[39] == "00"
        assert answer.fields[11] == req.fields[11] and answer.fields[41] == ATM.terminal_id
        assert len(answer.text(38)) == 6
        bal = parse_balances(answer.text(54))
        fee = 3_000  # 30 DZD on our own ATM
        assert bal["available"] == CARD.balance - 500_000 - fee
        assert bal["ledger"] == bal["available"]
        assert answer.text(54)[4:8] == "012C"  # currency and sign
        await c.close()

    serve(state, body)


def test_declines_wrong_pin_limit_insufficient_funds(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        assert (await c.request(withdraw(5_000, pin="9999"))).fields[39] == "55"
        assert (await c.request(withdraw(5_000))).fields[39] == "00"
        over = await c.request(withdraw(46_000))  # 5,000 + 46,000 > 50,000 a day
        assert over.fields[39] == "61"
        assert (await c.request(withdraw(10_000, card=POOR))).fields[39] == "51"
        assert (await c.request(withdraw(5_000, card=demo.CARDS[3]))).fields[39] == "41"
        assert await available(c) == CARD.balance - 500_000 - 3_000  # declines took nothing
        await c.close()

    serve(state, body)


def test_retransmission_gets_the_same_answer_and_posts_once(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        req = withdraw(2_000)
        first = await c.request(req)
        again = await c.request(req.copy())
        assert first.fields[39] == again.fields[39] == "00"
        assert first.fields[38] == again.fields[38]
        assert await available(c) == CARD.balance - 200_000 - 3_000
        await c.close()

    serve(state, body)


def test_reversal_by_field_90_and_unknown_original(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        req = withdraw(8_000)
        assert (await c.request(req)).fields[39] == "00"
        rev = reversal(CARD.pan, 800_000, req.text(11), req.text(7), ATM.terminal_id)
        answer = await c.request(rev)
        assert answer.mti == "0430" and answer.fields[39] == "00"
        assert await available(c) == CARD.balance
        unknown = reversal(CARD.pan, 100_000, "999999", "0101000000", ATM.terminal_id)
        ack = await c.request(unknown)
        assert ack.mti == "0430" and ack.fields[39] == "00"
        assert await available(c) == CARD.balance
        # partial: only 3,000 DZD dispensed of 6,000
        req2 = withdraw(6_000)
        assert (await c.request(req2)).fields[39] == "00"
        part = reversal(CARD.pan, 600_000, req2.text(11), req2.text(7), ATM.terminal_id, 300_000)
        assert (await c.request(part)).fields[39] == "00"
        assert await available(c) == CARD.balance - 300_000 - 3_000
        await c.close()

    serve(state, body)


async def _raw(listener: IsoListener) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", listener.port)


async def _read_answers(
    reader: asyncio.StreamReader, n: int, spec: str = "ascii87"
) -> list[Message]:
    splitter = FrameSplitter()
    codec = Codec(spec)
    out: list[Message] = []
    while len(out) < n:
        data = await asyncio.wait_for(reader.read(65536), 10)
        assert data, "connection closed before the answers"
        out += [codec.decode(f.payload) for f in splitter.feed(data)]
    return out


def test_pipelined_answers_may_come_out_of_order(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        codec = Codec("ascii87")
        reader, writer = await _raw(ls[0])
        w = withdraw(1_000)
        echo = Message("0800", {7: "1129120000", 11: "777777", 70: "301"})
        writer.write(frame(codec.encode(w)) + frame(codec.encode(echo)))
        first, second = await _read_answers(reader, 2)
        # the echo needs no PIN check nor commit: it overtakes the withdrawal
        assert (first.mti, second.mti) == ("0810", "0210")
        assert second.fields[11] == w.fields[11] and second.fields[39] == "00"
        # 30 requests in flight on one connection, each answered once, matched by STAN
        c = await client(ls[0])
        rich = demo.CARDS[7]
        reqs = [withdraw(1_000, card=rich) for _ in range(15)]
        reqs += [financial("310000", rich.pan, rich.pin, 0, ATM.terminal_id) for _ in range(15)]
        answers = await asyncio.gather(*(c.request(r) for r in reqs))
        assert [a.fields[11] for a in answers] == [r.fields[11] for r in reqs]
        assert all(a.fields[39] == "00" for a in answers)
        writer.close()
        await c.close()

    serve(state, body)


def test_garbage_frame_closes_only_that_connection(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        good = await client(ls[0])
        for garbage in (b"\x00\x05hello", b"\xff\xff" + b"x" * 10):
            reader, writer = await _raw(ls[0])
            writer.write(garbage)
            assert await asyncio.wait_for(reader.read(100), 10) == b""  # closed by the switch
            writer.close()
        assert (await good.request(withdraw(1_000))).fields[39] == "00"
        await good.close()

    serve(state, body)


def test_format_errors_answer_30_and_touch_nothing(
    state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        codec = Codec("ascii87")
        reader, writer = await _raw(ls[0])
        # undecodable: a letter inside field 4 (numeric); the MTI is still readable
        bad = bytearray(codec.encode(withdraw(5_000)))
        bad[bad.index(b"000000500000") + 3] = ord("X")
        writer.write(frame(bytes(bad)))
        (answer,) = await _read_answers(reader, 1)
        assert answer.mti == "0210" and answer.fields[39] == "30"
        # decodable but field 41 missing: echoed STAN, 30, the field named in the log
        req = withdraw(5_000)
        del req.fields[41]
        writer.write(frame(codec.encode(req)))
        (answer,) = await _read_answers(reader, 1)
        assert answer.fields[39] == "30" and answer.fields[11] == req.fields[11]
        assert "field 41" in caplog.text
        assert CARD.pan not in caplog.text
        # unsupported processing code
        req = financial("990000", CARD.pan, CARD.pin, 100_000, ATM.terminal_id)
        writer.write(frame(codec.encode(req)))
        (answer,) = await _read_answers(reader, 1)
        assert answer.fields[39] == "30"
        c = await client(ls[0])
        assert await available(c) == CARD.balance
        writer.close()
        await c.close()

    with caplog.at_level("WARNING"):
        serve(state, body)


def test_network_management_0800(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        for code in ("001", "301", "002"):
            msg = Message("0800", {7: "1129120000", 11: f"000{code}", 41: "GAB00001", 70: code})
            answer = await c.request(msg)
            assert answer.mti == "0810" and answer.fields[39] == "00"
            assert answer.fields[70] == code
        answer = await c.request(Message("0800", {7: "1129120000", 11: "000999", 70: "999"}))
        assert answer.fields[39] == "30"
        await c.close()

    serve(state, body)


def test_binary87_listener_with_tpdu_next_to_ascii87(state: Path) -> None:
    binary = ListenerConfig(port=0, spec="binary87", framing=Framing(LengthHeader.BINARY2, True))

    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        ascii_listener, binary_listener = ls
        codec = Codec("binary87")
        reader, writer = await _raw(binary_listener)
        req = withdraw(5_000)
        tpdu = b"\x60\x00\x01\x00\x02"
        writer.write(frame(codec.encode(req), binary_listener.config.framing, tpdu))
        splitter = FrameSplitter(binary_listener.config.framing)
        frames: list[Frame] = []
        while not frames:
            frames = splitter.feed(await asyncio.wait_for(reader.read(4096), 10))
        assert frames[0].tpdu == b"\x60\x00\x02\x00\x01"  # addresses swapped
        answer = codec.decode(frames[0].payload)
        assert answer.mti == "0210" and answer.fields[39] == "00"
        assert parse_balances(answer.text(54))["available"] == CARD.balance - 503_000
        c = await client(ascii_listener)
        assert await available(c) == CARD.balance - 503_000
        writer.close()
        await c.close()

    serve(state, body, ListenerConfig(port=0), binary)


def test_pyiso8583_as_the_atm(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        spec = iso8583.specs.default_ascii
        pin = switch_native.pin_block_encrypt(bytes.fromhex(ATM.tpk_clear), 0, CARD.pin, CARD.pan)
        doc = {
            "t": "0200",
            "2": CARD.pan,
            "3": "010000",
            "4": "000000500000",
            "7": "1129120000",
            "11": "424242",
            "32": "628058",
            "41": "GAB00001",
            "49": "012",
            "52": pin.hex().upper(),
        }
        raw, _ = iso8583.encode(doc, spec)
        reader, writer = await _raw(ls[0])
        writer.write(len(raw).to_bytes(2, "big") + bytes(raw))
        header = await asyncio.wait_for(reader.readexactly(2), 10)
        body_bytes = await asyncio.wait_for(reader.readexactly(int.from_bytes(header, "big")), 10)
        answer, _ = iso8583.decode(body_bytes, spec)
        assert answer["t"] == "0210"
        assert answer["39"] == "00" and answer["11"] == "424242"
        assert len(answer["38"]) == 6
        assert answer["54"][:8] == "0001012C" and len(answer["54"]) == 40
        writer.close()

    serve(state, body)


def test_mac_checked_and_answer_signed(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        signed = sign(withdraw(5_000), ATM.tak_clear, c.codec)
        assert 64 in signed.fields
        answer = await c.request(signed)
        assert answer.fields[39] == "00"
        assert mac_ok(answer, ATM.tak_clear, c.codec)
        # one changed amount digit after signing: 63, nothing posted
        forged = sign(withdraw(5_000), ATM.tak_clear, c.codec)
        forged.fields[4] = "000000900000"
        refused = await c.request(forged)
        assert refused.fields[39] == "63"
        # a reversal carries field 90, so its MAC is field 128
        rev = sign(
            reversal(CARD.pan, 500_000, signed.text(11), signed.text(7), ATM.terminal_id),
            ATM.tak_clear,
            c.codec,
        )
        assert 128 in rev.fields and 64 not in rev.fields
        rev_answer = await c.request(rev)
        assert rev_answer.fields[39] == "00" and mac_ok(rev_answer, ATM.tak_clear, c.codec)
        # a terminal without a TAK cannot sign
        pos = demo.TERMINALS[2]
        unsignable = financial("310000", CARD.pan, CARD.pin, 0, pos.terminal_id)
        unsignable.fields[64] = b"\x01" * 8
        assert (await c.request(unsignable)).fields[39] == "30"
        assert await available(c) == CARD.balance
        await c.close()

    serve(state, body)


def test_require_mac_refuses_unsigned_requests_from_mac_terminals(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        assert (await c.request(withdraw(5_000))).fields[39] == "30"
        signed = sign(withdraw(5_000), ATM.tak_clear, c.codec)
        assert (await c.request(signed)).fields[39] == "00"
        await c.close()

    serve(state, body, ListenerConfig(port=0, require_mac=True))


def test_idle_connection_is_closed(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        # t0 before connecting: the server's idle timer starts after it, so >= 0.3 s holds
        # however late this coroutine resumes after the connect (a bound from after it did not)
        t0 = asyncio.get_running_loop().time()
        reader, writer = await _raw(ls[0])
        assert await asyncio.wait_for(reader.read(100), 30) == b""
        assert asyncio.get_running_loop().time() - t0 >= 0.3 - 0.01
        writer.close()

    serve(state, body, ListenerConfig(port=0, idle_timeout=0.3))


def test_key_change_0800_101_imports_the_new_tpk_under_the_zmk(state: Path) -> None:
    async def go() -> None:
        core = await SwitchCore.open(state)
        zmk = (await core.hsm.generate_key(KeyType.ZMK)).key_under_lmk
        listener = await start_iso_server(core, ListenerConfig(port=0, zmk=zmk))
        no_zmk = await start_iso_server(core, ListenerConfig(port=0))
        try:
            c = await client(listener)
            new = await core.hsm.generate_key(KeyType.TPK, zmk=zmk)
            assert new.key_under_zmk is not None
            change = {7: "1129120000", 41: ATM.terminal_id, 70: "101"}
            bad_kcv = Message(
                "0800", {**change, 11: "000101", 48: f"TPK:{new.key_under_zmk}:000000"}
            )
            assert (await c.request(bad_kcv)).fields[39] == "30"
            garbled = Message("0800", {**change, 11: "000102", 48: "TPK:nothex:123456"})
            assert (await c.request(garbled)).fields[39] == "30"
            good = f"TPK:{new.key_under_zmk}:{new.check_value}"
            c2 = await client(no_zmk)
            refused = Message("0800", {**change, 11: "000103", 48: good})
            assert (await c2.request(refused)).fields[39] == "12"
            answer = await c.request(Message("0800", {**change, 11: "000104", 48: good}))
            assert answer.mti == "0810" and answer.fields[39] == "00"
            term = core.terminal(ATM.terminal_id)
            assert term is not None
            assert await core.hsm.key_check_value(KeyType.TPK, term.tpk) == new.check_value
            # the old test TPK no longer decrypts this ATM's PIN blocks
            assert (await c.request(withdraw(5_000))).fields[39] == "55"
            await c.close()
            await c2.close()
        finally:
            await listener.close(grace=1)
            await no_zmk.close(grace=1)
            await core.close()

    asyncio.run(asyncio.wait_for(go(), 30))


def test_0100_preauthorization_and_0200_purchase_at_a_pos(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        pos = demo.TERMINALS[2]
        fuel = demo.MERCHANTS[1]
        for mti, amount in (("0100", 300_000), ("0200", 250_000)):
            msg = financial("000000", CARD.pan, CARD.pin, amount, pos.terminal_id)
            msg = Message(mti, {**msg.fields, 18: fuel.mcc, 42: fuel.merchant_id.ljust(15)})
            answer = await c.request(msg)
            assert answer.mti == mti[:2] + "10"
            assert answer.fields[39] == "00", answer
            assert 54 not in answer.fields  # balances only on withdrawals and inquiries
        assert await available(c) == CARD.balance - 300_000 - 250_000
        await c.close()

    serve(state, body)


def test_back_pressure_pauses_reading_and_still_answers_everything(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        (conn,) = ls[0].connections
        rich = demo.CARDS[7]
        reqs = [financial("310000", rich.pan, rich.pin, 0, ATM.terminal_id) for _ in range(40)]
        answers = await asyncio.gather(*(c.request(r) for r in reqs))
        assert all(a.fields[39] == "00" for a in answers)
        assert conn.pauses > 0  # reading paused at 4 in flight...
        assert not conn.tasks and not conn._paused  # ...and resumed once the answers drained
        await c.close()

    serve(state, body, ListenerConfig(port=0, max_in_flight=4))


def test_bill_payment_and_transfer_at_the_atm(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        bill = financial("500000", CARD.pan, CARD.pin, 345_000, ATM.terminal_id)
        bill.fields[48] = "SONELGAZ/000000000001"
        assert (await c.request(bill)).fields[39] == "00"
        paid_again = financial("500000", CARD.pan, CARD.pin, 345_000, ATM.terminal_id)
        paid_again.fields[48] = "SONELGAZ/000000000001"
        assert (await c.request(paid_again)).fields[39] != "00"  # a bill is paid once
        no_ref = financial("500000", CARD.pan, CARD.pin, 345_000, ATM.terminal_id)
        no_ref.fields[48] = "SONELGAZ"
        assert (await c.request(no_ref)).fields[39] == "30"
        transfer = financial("400000", CARD.pan, CARD.pin, 100_000, ATM.terminal_id)
        transfer.fields[103] = POOR.account
        assert (await c.request(transfer)).fields[39] == "00"
        no_dest = financial("400000", CARD.pan, CARD.pin, 100_000, ATM.terminal_id)
        assert (await c.request(no_dest)).fields[39] == "30"
        poor = await available(c, POOR)
        assert poor == POOR.balance + 100_000  # credited to the beneficiary
        await c.close()

    serve(state, body)


def test_emv_arqc_in_field_55_gets_the_arpc_in_tag_91(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        req = withdraw(5_000)
        req.fields[55] = testing.emv_request_data(CARD.pan, 500_000)
        req.fields[22] = "051"  # chip
        answer = await c.request(req)
        assert answer.fields[39] == "00"
        script = tlv.to_dict(answer.binary(55))
        arpc = testing.expected_arpc(CARD.pan, req.binary(55), b"00")
        assert script[0x91] == arpc + b"00"  # ARPC (method 1) + ARC
        # a tampered cryptogram is not approved
        bad = withdraw(5_000)
        emv = bytearray(testing.emv_request_data(CARD.pan, 500_000, atc=2))
        emv[-1] ^= 0xFF
        bad.fields[55] = bytes(emv)
        assert (await c.request(bad)).fields[39] != "00"
        await c.close()

    serve(state, body)


def _pyiso_exchange_doc(stan: str, **changes: str) -> dict[str, str]:
    """A pyiso8583 0200 withdrawal document (ascii87 = default_ascii)."""
    pin = switch_native.pin_block_encrypt(bytes.fromhex(ATM.tpk_clear), 0, CARD.pin, CARD.pan)
    doc = {
        "t": "0200",
        "2": CARD.pan,
        "3": "010000",
        "4": "000000500000",
        "7": "1129120000",
        "11": stan,
        "32": "628058",
        "37": "333303" + stan,
        "41": ATM.terminal_id,
        "49": "012",
        "52": pin.hex().upper(),
    }
    return doc | changes


async def _pyiso_roundtrip(listener: IsoListener, doc: dict[str, str]) -> dict[str, str]:
    spec = iso8583.specs.default_ascii
    raw, _ = iso8583.encode(doc, spec)
    reader, writer = await _raw(listener)
    writer.write(len(raw).to_bytes(2, "big") + bytes(raw))
    header = await asyncio.wait_for(reader.readexactly(2), 10)
    body_bytes = await asyncio.wait_for(reader.readexactly(int.from_bytes(header, "big")), 10)
    writer.close()
    answer, _ = iso8583.decode(body_bytes, spec)
    return dict(answer)


def test_format_error_answer_echoes_the_matching_fields_before_the_bad_one(
    state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A MUX pairing answers on 41 + 11 (jPOS QMUX) or 11 (iso8583-connection) must be able
    to match the 30: the answer echoes what the request holds before its first bad field."""

    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        # field 53 (after 2-52) is numeric: a letter there does not decode
        bad53 = {"53": "00000000000000X0"}
        answer = await _pyiso_roundtrip(ls[0], _pyiso_exchange_doc("310001", **bad53))
        assert answer["t"] == "0210" and answer["39"] == "30"
        for n, v in (("2", CARD.pan), ("3", "010000"), ("4", "000000500000")):
            assert answer[n] == v
        assert (answer["7"], answer["11"], answer["32"]) == ("1129120000", "310001", "628058")
        assert (answer["37"], answer["41"]) == ("333303310001", ATM.terminal_id)
        assert answer["49"] == "012" and "53" not in answer and "52" not in answer
        assert "field 53" in caplog.text
        # a repeat (0201) is answered 0210 here as on the normal path
        bad_repeat = _pyiso_exchange_doc("310002", t="0201", **bad53)
        answer = await _pyiso_roundtrip(ls[0], bad_repeat)
        assert (answer["t"], answer["39"], answer["11"]) == ("0210", "30", "310002")
        # the normal path: a first transmission and its repeat, one answer, one posting
        first = await _pyiso_roundtrip(ls[0], _pyiso_exchange_doc("310003"))
        repeat = await _pyiso_roundtrip(ls[0], _pyiso_exchange_doc("310003", t="0201"))
        assert (first["t"], first["39"]) == ("0210", "00")
        assert (repeat["t"], repeat["39"], repeat["38"]) == ("0210", "00", first["38"])
        # a bad field before 11: what precedes it is echoed, nothing is invented
        answer = await _pyiso_roundtrip(ls[0], _pyiso_exchange_doc("310004", **{"7": "11291200X0"}))
        assert answer["t"] == "0210" and answer["39"] == "30"
        assert answer["4"] == "000000500000" and "7" not in answer and "11" not in answer
        assert CARD.pan not in caplog.text
        c = await client(ls[0])
        assert await available(c) == CARD.balance - 500_000 - 3_000  # the good one, once
        await c.close()

    with caplog.at_level("WARNING"):
        serve(state, body)


def _retail_mac(clear: str, data: bytes) -> bytes:
    """ISO 9797-1 algorithm 3, padding method 1, by psec (outside the switch)."""
    from psec.mac import generate_retail_mac

    key = bytes.fromhex(clear)
    return bytes(generate_retail_mac(key[:8], key[8:], data, 1))


def _signed_as_sent(doc: dict[str, str], *, zero_secondary: bool) -> bytes:
    """A pyiso8583 (ascii87) request MACed by the terminal over exactly the bytes it sends,
    optionally with an all-zero secondary bitmap (bit 1 set, no field above 64)."""
    raw = bytes(iso8583.encode(doc | {"64": "0" * 16}, iso8583.specs.default_ascii)[0])
    if zero_secondary:
        primary = int(raw[4:20], 16) | 1 << 63
        raw = raw[:4] + b"%016X" % primary + b"0" * 16 + raw[20:]
    covered = raw[:-16]
    return covered + _retail_mac(ATM.tak_clear, covered).hex().encode()


@pytest.mark.filterwarnings("ignore:.*TripleDES")  # psec's 3DES, the oracle
def test_mac_is_checked_over_the_bytes_received_and_the_answer_signed_over_the_bytes_sent(
    state: Path,
) -> None:
    """Lower-case hex in a binary field (52) or an all-zero secondary bitmap decode to the
    same fields as our own encoding but are other bytes: the terminal MACed those."""

    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        spec = iso8583.specs.default_ascii
        pin = switch_native.pin_block_encrypt(bytes.fromhex(ATM.tpk_clear), 0, CARD.pin, CARD.pan)
        variants = [
            ("520001", {"52": pin.hex().lower()}, False),
            ("520002", {"52": pin.hex().upper()}, True),
            ("520003", {"52": pin.hex().lower()}, True),
        ]
        for stan, change, zero_secondary in variants:
            doc = _pyiso_exchange_doc(stan, **{"4": "000000100000"}) | change
            wire = _signed_as_sent(doc, zero_secondary=zero_secondary)
            reader, writer = await _raw(ls[0])
            writer.write(frame(wire))
            header = await asyncio.wait_for(reader.readexactly(2), 10)
            payload = await asyncio.wait_for(reader.readexactly(int.from_bytes(header, "big")), 10)
            writer.close()
            answer, _ = iso8583.decode(bytearray(payload), spec)
            assert (answer["39"], answer["11"]) == ("00", stan), (change, zero_secondary)
            # the answer's MAC covers the answer's bytes as they came
            assert bytes.fromhex(answer["64"]) == _retail_mac(ATM.tak_clear, payload[:-16])
        # the same bytes with one amount digit changed after signing are still refused
        doc = _pyiso_exchange_doc("520004", **{"4": "000000100000"})
        forged = bytearray(_signed_as_sent(doc, zero_secondary=True))
        forged[forged.index(b"000000100000") + 6] = ord("9")
        reader, writer = await _raw(ls[0])
        writer.write(frame(bytes(forged)))
        (refused,) = await _read_answers(reader, 1)
        writer.close()
        assert refused.fields[39] == "63" and refused.fields[11] == "520004"
        # a MAC that is not the last field (64 then 90) is a format error naming field 64
        c = await client(ls[0])
        misplaced = withdraw(1_000)
        misplaced.fields[64] = b"\x00" * 8
        misplaced.fields[90] = "0" * 42
        assert (await c.request(misplaced)).fields[39] == "30"
        assert await available(c) == CARD.balance - 3 * (100_000 + 3_000)
        await c.close()

    serve(state, body)
