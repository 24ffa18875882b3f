"""binary87 is jPOS ISO87BPackager: jPOS's own packager test messages decode and re-encode
byte for byte, and a 0200 withdrawal carrying an acquirer fee in field 28 -- built here to
ISO87BPackager's layout as jPOS's source publishes it (``IFB_AMOUNT``: the sign byte, then the
digits in BCD), and for ascii87 by pyiso8583 -- is approved through both listeners of one
switch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import iso8583
import iso8583.specs
import pytest
import switch_native

from switch.core import demo
from switch.core.service import SwitchCore
from switch.iso8583.codec import Codec, Iso8583DecodeError
from switch.iso8583.framing import FrameSplitter, frame
from switch.iso8583.message import Message
from switch.iso8583.server import IsoListener, ListenerConfig
from tests.test_iso_server_flows import serve

VECTORS = Path(__file__).resolve().parent.parent / "native" / "iso8583" / "tests" / "vectors"
CARD = demo.CARDS[0]  # 150,000 DZD, PIN 1234
ATM = demo.TERMINALS[0]


# --- jPOS's own test messages -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "spec"),
    [
        ("jpos-ISO87BPackager.bin", "binary87"),
        ("jpos-ISO87B-Field64.bin", "binary87"),
        ("jpos-ISO87APackager.bin", "ascii87"),
    ],
)
def test_jpos_packager_test_message_round_trips_byte_for_byte(image: str, spec: str) -> None:
    data = (VECTORS / image).read_bytes()
    codec = Codec(spec)
    m = codec.decode(data)
    # the values of jPOS's ISO87.xml
    assert m.mti == "0800"
    assert m.fields[28] == "000000100" and m.fields[31] == "000000400"
    assert m.fields[32] == "123456" and m.fields[41] == "0001ABCD"
    assert m.fields[35] == "1234567890123456=12345678901234567890"
    assert m.fields[52] == bytes(range(8))
    assert codec.encode(m) == data


# --- a message built to ISO87BPackager's layout -----------------------------------------------


def _bcd(digits: str, *, left_pad: bool) -> bytes:
    """jPOS BCDInterpreter: two digits a byte, a 0 nibble left (LEFT_PADDED) or right when odd."""
    if len(digits) % 2:
        digits = "0" + digits if left_pad else digits + "0"
    return bytes.fromhex(digits)


def ifb_numeric(value: str) -> bytes:  # IFB_NUMERIC(len, desc, true)
    return _bcd(value, left_pad=True)


def ifb_llnum(value: str) -> bytes:  # IFB_LLNUM(len, desc, false): BCD prefix counts digits
    return _bcd(f"{len(value):02d}", left_pad=True) + _bcd(value, left_pad=False)


def ifb_amount(value: str) -> bytes:  # IFB_AMOUNT(9, desc, true): sign byte, digits in BCD
    return value[:1].encode("ascii") + _bcd(value[1:], left_pad=True)


def if_char(value: str) -> bytes:  # IF_CHAR
    return value.encode("ascii")


def jpos_iso87b(mti: str, fields: dict[int, bytes]) -> bytes:
    """Pack already-packed fields the way ISOBasePackager does with ISO87BPackager: MTI as
    IFB_NUMERIC(4), IFB_BITMAP (8 bytes; fields here are all below 65), fields in order."""
    bitmap = 0
    for n in fields:
        bitmap |= 1 << (64 - n)
    return (
        ifb_numeric(mti) + bitmap.to_bytes(8, "big") + b"".join(fields[n] for n in sorted(fields))
    )


def _withdrawal_fields(stan: str, fee: str) -> dict[int, bytes]:
    pin = switch_native.pin_block_encrypt(bytes.fromhex(ATM.tpk_clear), 0, CARD.pin, CARD.pan)
    return {
        2: ifb_llnum(CARD.pan),
        3: ifb_numeric("010000"),
        4: ifb_numeric("000000500000"),
        7: ifb_numeric("1129120000"),
        11: ifb_numeric(stan),
        28: ifb_amount(fee),
        32: ifb_llnum("628058"),
        41: if_char(ATM.terminal_id),
        49: if_char("012"),
        52: pin,  # IFB_BINARY(8)
    }


def test_binary87_reads_a_jpos_layout_withdrawal_with_a_fee_in_field_28() -> None:
    data = jpos_iso87b("0200", _withdrawal_fields("000028", "D00000150"))
    m = Codec("binary87").decode(data)
    assert m.fields[28] == "D00000150"
    assert m.fields[32] == "628058" and m.fields[41] == ATM.terminal_id
    assert Codec("binary87").encode(m) == data


def test_a_bad_amount_is_named_as_field_28() -> None:
    data = bytearray(jpos_iso87b("0200", _withdrawal_fields("000028", "D00000150")))
    at = data.index(b"D\x00\x00\x01\x50")
    data[at + 2] = 0x0A  # a nibble that is no digit, inside field 28's BCD digits
    with pytest.raises(Iso8583DecodeError) as info:
        Codec("binary87").decode(bytes(data))
    assert info.value.field == 28 and info.value.offset == at + 2
    data[at] = ord("X")  # a sign that is neither C, D nor a digit
    with pytest.raises(Iso8583DecodeError) as info:
        Codec("binary87").decode(bytes(data))
    assert info.value.field == 28 and "sign" in info.value.reason


# --- end to end: both listeners approve it ----------------------------------------------------


async def _exchange(listener: IsoListener, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        writer.write(frame(payload))
        splitter = FrameSplitter()
        while True:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data, "connection closed before the answer"
            frames = splitter.feed(data)
            if frames:
                return frames[0].payload
    finally:
        writer.close()


def test_withdrawal_with_an_acquirer_fee_is_approved_on_ascii87_and_binary87(
    state: Path,
) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        ascii_listener, binary_listener = ls
        # ascii87: built and read by pyiso8583
        pin = switch_native.pin_block_encrypt(bytes.fromhex(ATM.tpk_clear), 0, CARD.pin, CARD.pan)
        doc = {
            "t": "0200",
            "2": CARD.pan,
            "3": "010000",
            "4": "000000500000",
            "7": "1129120000",
            "11": "280001",
            "28": "D00000150",
            "32": "628058",
            "41": ATM.terminal_id,
            "49": "012",
            "52": pin.hex().upper(),
        }
        raw, _ = iso8583.encode(doc, iso8583.specs.default_ascii)
        answer, _ = iso8583.decode(
            bytearray(await _exchange(ascii_listener, bytes(raw))), iso8583.specs.default_ascii
        )
        assert (answer["t"], answer["39"], answer["11"]) == ("0210", "00", "280001")
        # binary87: built to ISO87BPackager's layout
        data = jpos_iso87b("0200", _withdrawal_fields("280002", "D00000150"))
        reply = Codec("binary87").decode(await _exchange(binary_listener, data))
        assert isinstance(reply, Message)
        assert (reply.mti, reply.fields[39], reply.fields[11]) == ("0210", "00", "280002")
        assert reply.fields[41] == ATM.terminal_id

    serve(state, body, ListenerConfig(port=0), ListenerConfig(port=0, spec="binary87"))


def _retail_mac(clear: str, data: bytes) -> bytes:
    """ISO 9797-1 algorithm 3, padding method 1, by psec (outside the switch)."""
    from psec.mac import generate_retail_mac

    key = bytes.fromhex(clear)
    return bytes(generate_retail_mac(key[:8], key[8:], data, 1))


@pytest.mark.filterwarnings("ignore:.*TripleDES")  # psec's 3DES, the oracle
def test_binary87_errors_are_matchable_and_macs_checked_over_the_bytes_sent(
    state: Path,
) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        (listener,) = ls
        codec = Codec("binary87")
        # a non-BCD nibble in field 53 (IFB_NUMERIC, after 2-52): 30, echoing 7, 11, 32, 41
        fields = _withdrawal_fields("530001", "C00000000")
        fields[53] = bytes.fromhex("000000000000000A")
        reply = codec.decode(await _exchange(listener, jpos_iso87b("0200", fields)))
        assert (reply.mti, reply.fields[39]) == ("0210", "30")
        assert (reply.fields[7], reply.fields[11]) == ("1129120000", "530001")
        assert (reply.fields[32], reply.fields[41]) == ("628058", ATM.terminal_id)
        # the same, as a repeat: answered 0210 too
        reply = codec.decode(await _exchange(listener, jpos_iso87b("0201", fields)))
        assert (reply.mti, reply.fields[39], reply.fields[11]) == ("0210", "30", "530001")
        # signed by the ATM over what it sent, here with an all-zero secondary bitmap
        # (bit 1 set, 8 zero bytes): approved, and the answer is MACed over its own bytes
        fields = _withdrawal_fields("530002", "D00000150")
        plain = jpos_iso87b("0200", fields | {64: bytes(8)})
        primary = int.from_bytes(plain[2:10], "big") | 1 << 63
        covered = plain[:2] + primary.to_bytes(8, "big") + bytes(8) + plain[10:-8]
        signed = covered + _retail_mac(ATM.tak_clear, covered)
        payload = await _exchange(listener, signed)
        reply = codec.decode(payload)
        assert (reply.fields[39], reply.fields[11]) == ("00", "530002")
        assert reply.fields[64] == _retail_mac(ATM.tak_clear, payload[:-8])

    serve(state, body, ListenerConfig(port=0, spec="binary87"))
