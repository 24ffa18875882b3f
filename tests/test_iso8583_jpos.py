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


# --- the layout, field by field ----------------------------------------------------------------

#: jPOS ISO87BPackager's field packagers as its source declares them (jpos/src/main/java/org/
#: jpos/iso/packager/ISO87BPackager.java, jPOS 3.0): number:class:length[:pad flag T/F].
JPOS_ISO87B_FIELDS = """
    2:IFB_LLNUM:19:F 3:IFB_NUMERIC:6:T 4:IFB_NUMERIC:12:T 5:IFB_NUMERIC:12:T
    6:IFB_NUMERIC:12:T 7:IFB_NUMERIC:10:T 8:IFB_NUMERIC:8:T 9:IFB_NUMERIC:8:T
    10:IFB_NUMERIC:8:T 11:IFB_NUMERIC:6:T 12:IFB_NUMERIC:6:T 13:IFB_NUMERIC:4:T
    14:IFB_NUMERIC:4:T 15:IFB_NUMERIC:4:T 16:IFB_NUMERIC:4:T 17:IFB_NUMERIC:4:T
    18:IFB_NUMERIC:4:T 19:IFB_NUMERIC:3:T 20:IFB_NUMERIC:3:T 21:IFB_NUMERIC:3:T
    22:IFB_NUMERIC:3:T 23:IFB_NUMERIC:3:T 24:IFB_NUMERIC:3:T 25:IFB_NUMERIC:2:T
    26:IFB_NUMERIC:2:T 27:IFB_NUMERIC:1:T 28:IFB_AMOUNT:9:T 29:IFB_AMOUNT:9:T
    30:IFB_AMOUNT:9:T 31:IFB_AMOUNT:9:T 32:IFB_LLNUM:11:F 33:IFB_LLNUM:11:F
    34:IFB_LLCHAR:28 35:IFB_LLNUM:37:F 36:IFB_LLLCHAR:104 37:IF_CHAR:12
    38:IF_CHAR:6 39:IF_CHAR:2 40:IF_CHAR:3 41:IF_CHAR:8
    42:IF_CHAR:15 43:IF_CHAR:40 44:IFB_LLCHAR:25 45:IFB_LLCHAR:76
    46:IFB_LLLCHAR:999 47:IFB_LLLCHAR:999 48:IFB_LLLCHAR:999 49:IF_CHAR:3
    50:IF_CHAR:3 51:IF_CHAR:3 52:IFB_BINARY:8 53:IFB_NUMERIC:16:T
    54:IFB_LLLCHAR:120 55:IFB_LLLCHAR:999 56:IFB_LLLCHAR:999 57:IFB_LLLCHAR:999
    58:IFB_LLLCHAR:999 59:IFB_LLLCHAR:999 60:IFB_LLLCHAR:999 61:IFB_LLLCHAR:999
    62:IFB_LLLCHAR:999 63:IFB_LLLCHAR:999 64:IFB_BINARY:8 65:IFB_BINARY:1
    66:IFB_NUMERIC:1:T 67:IFB_NUMERIC:2:T 68:IFB_NUMERIC:3:T 69:IFB_NUMERIC:3:T
    70:IFB_NUMERIC:3:T 71:IFB_NUMERIC:4:T 72:IFB_NUMERIC:4:T 73:IFB_NUMERIC:6:T
    74:IFB_NUMERIC:10:T 75:IFB_NUMERIC:10:T 76:IFB_NUMERIC:10:T 77:IFB_NUMERIC:10:T
    78:IFB_NUMERIC:10:T 79:IFB_NUMERIC:10:T 80:IFB_NUMERIC:10:T 81:IFB_NUMERIC:10:T
    82:IFB_NUMERIC:12:T 83:IFB_NUMERIC:12:T 84:IFB_NUMERIC:12:T 85:IFB_NUMERIC:12:T
    86:IFB_NUMERIC:16:T 87:IFB_NUMERIC:16:T 88:IFB_NUMERIC:16:T 89:IFB_NUMERIC:16:T
    90:IFB_NUMERIC:42:T 91:IF_CHAR:1 92:IF_CHAR:2 93:IF_CHAR:6
    94:IF_CHAR:7 95:IF_CHAR:42 96:IFB_BINARY:16 97:IFB_AMOUNT:17:F
    98:IF_CHAR:25 99:IFB_LLNUM:11:F 100:IFB_LLNUM:11:F 101:IFB_LLCHAR:17
    102:IFB_LLCHAR:28 103:IFB_LLCHAR:28 104:IFB_LLLCHAR:100 105:IFB_LLLCHAR:999
    106:IFB_LLLCHAR:999 107:IFB_LLLCHAR:999 108:IFB_LLLCHAR:999 109:IFB_LLLCHAR:999
    110:IFB_LLLCHAR:999 111:IFB_LLLCHAR:999 112:IFB_LLLCHAR:999 113:IFB_LLLCHAR:999
    114:IFB_LLLCHAR:999 115:IFB_LLLCHAR:999 116:IFB_LLLCHAR:999 117:IFB_LLLCHAR:999
    118:IFB_LLLCHAR:999 119:IFB_LLLCHAR:999 120:IFB_LLLCHAR:999 121:IFB_LLLCHAR:999
    122:IFB_LLLCHAR:999 123:IFB_LLLCHAR:999 124:IFB_LLLCHAR:999 125:IFB_LLLCHAR:999
    126:IFB_LLLCHAR:999 127:IFB_LLLCHAR:999 128:IFB_BINARY:8
"""

#: What each jPOS packager class is in our spec terms: (kinds, encoding, length, pad).
#: IFB_LLLCHAR is text in jPOS; field 55 is the one kept difference (binary, same bytes).
_JPOS_CLASSES = {
    "IFB_NUMERIC": ({"n"}, "bcd", "fixed", "left"),
    "IFB_LLNUM": ({"n", "z"}, "bcd", "LL", "right"),
    "IFB_AMOUNT": ({"x+n"}, "bcd", "fixed", None),
    "IFB_LLCHAR": ({"ans"}, "ascii", "LL", None),
    "IFB_LLLCHAR": ({"ans"}, "ascii", "LLL", None),
    "IF_CHAR": ({"ans"}, "ascii", "fixed", None),
    "IFB_BINARY": ({"b"}, "binary", "fixed", None),
}


def test_binary87_is_iso87bpackager_field_by_field() -> None:
    ours = {f[0]: f[1:] for f in Codec("binary87").spec.fields()}
    declared = [entry.split(":") for entry in JPOS_ISO87B_FIELDS.split()]
    assert [int(e[0]) for e in declared] == list(range(2, 129))
    for number, cls, length, *_pad in declared:
        n = int(number)
        kinds, encoding, prefix_type, pad = _JPOS_CLASSES[cls]
        if n == 55:  # documented in specs/README.md: binary here, IFB_LLLCHAR text there
            kinds, encoding = {"b"}, "binary"
        kind, enc, length_type, prefix, max_len, our_pad = ours[n]
        assert kind in kinds and enc == encoding and length_type == prefix_type, (n, cls)
        assert max_len == int(length), (n, cls)
        if length_type != "fixed":
            assert prefix == "bcd", n
        if pad is not None:
            assert our_pad == pad, n
    assert set(ours) == set(range(2, 129))


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
