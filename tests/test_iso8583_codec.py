"""The Python codec API: value types, Message helpers, errors naming field and offset for each
class of malformed input, and specs loaded from TOML/JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import switch_native

from switch.iso8583.codec import (
    Codec,
    Iso8583DecodeError,
    Iso8583EncodeError,
    Iso8583Error,
    decode,
    encode,
)
from switch.iso8583.message import Message
from switch.iso8583.spec import (
    BUILTIN_SPECS,
    SpecError,
    builtin_spec,
    get_spec,
    load_spec,
    spec_from_mapping,
)

PAN = "4761739001010119"
TRACK2 = "4761739001010119=28122011143857589"
PIN_BLOCK = bytes.fromhex("123456789ABCDEF0")


def withdrawal() -> Message:
    """A typical 0200 cash withdrawal at an ATM (19 fields incl. 35, 43, 52)."""
    return Message(
        "0200",
        {
            2: PAN,
            3: "011000",
            4: "000000500000",
            7: "1129034512",
            11: "000123",
            12: "044512",
            13: "1129",
            14: "2812",
            18: "6011",
            22: "051",
            25: "00",
            32: "00799",
            35: TRACK2,
            37: "333303000123",
            41: "ATM00001",
            42: "POSTE0000000001",
            43: "ALGERIE POSTE GAB 01 ALGER".ljust(38) + "DZ",
            49: "012",
            52: PIN_BLOCK,
        },
    )


@pytest.fixture(params=BUILTIN_SPECS)
def codec(request: pytest.FixtureRequest) -> Codec:
    return Codec(request.param)


def test_withdrawal_round_trips_with_str_and_bytes_values(codec: Codec) -> None:
    m = withdrawal()
    wire = codec.encode(m)
    back = codec.decode(wire)
    assert back == m
    assert isinstance(back[3], str)
    assert isinstance(back[52], bytes)
    assert back.text(35) == TRACK2
    assert back.binary(52) == PIN_BLOCK


def test_ascii87_wire_layout() -> None:
    wire = Codec("ascii87").encode(withdrawal())
    assert wire[:4] == b"0200"
    assert wire[4:20] == b"723C448128E09000"
    assert wire[20:38] == b"16" + PAN.encode()
    assert wire.endswith(b"012" + b"123456789ABCDEF0")


def test_binary87_wire_layout() -> None:
    wire = Codec("binary87").encode(withdrawal())
    assert wire[:2] == b"\x02\x00"
    assert wire[2:10] == bytes.fromhex("723C448128E09000")
    assert wire[10:19] == b"\x16" + bytes.fromhex(PAN)
    # Field 35: BCD length 34, then the digits with nibble D for "=".
    assert b"\x34" + bytes.fromhex("4761739001010119D28122011143857589") in wire
    # Field 22 (n3) is left-padded: 051 -> 00 51, right after field 18 (6011).
    assert b"\x60\x11\x00\x51" in wire
    assert wire.endswith(b"012" + PIN_BLOCK)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    codec = Codec("ascii87")
    wire = codec.encode(withdrawal())
    assert codec.decode(bytearray(wire)) == withdrawal()
    assert codec.decode(memoryview(wire)) == withdrawal()
    assert decode(wire) == withdrawal()
    assert encode(withdrawal(), "ascii87") == wire


def test_message_helpers_and_masked_repr() -> None:
    m = withdrawal()
    assert 35 in m and 64 not in m
    assert m.get(64) is None
    assert m.response_mti() == "0210"
    assert Message("0420").response_mti() == "0430"
    # a repeat is answered as its first transmission (ISO 8583:1987, jPOS setResponseMTI)
    assert [Message(m).response_mti() for m in ("0201", "0421", "0221")] == [
        "0210",
        "0430",
        "0230",
    ]
    for not_a_request in ("0210", "02\u0661\u0660", "020"):
        with pytest.raises(ValueError):
            Message(not_a_request).response_mti()
    with pytest.raises(TypeError):
        m.text(52)
    with pytest.raises(TypeError):
        m.binary(3)
    text = repr(m)
    assert PAN not in text and "476173******0119" in text
    assert "28122011" not in text and "123456789ABCDEF0" not in text.upper()
    copy = m.copy()
    copy[39] = "00"
    assert 39 not in m


# --- errors: one per class, each naming field, offset and problem ---------------------------


def _ascii(m: Message) -> bytes:
    return Codec("ascii87").encode(m)


def _decode_error(data: bytes, spec: str = "ascii87") -> Iso8583DecodeError:
    with pytest.raises(Iso8583DecodeError) as info:
        Codec(spec).decode(data)
    return info.value


def test_error_oversized_field_names_field_length_max_and_offset() -> None:
    wire = bytearray(_ascii(Message("0200", {35: TRACK2})))
    wire[20:22] = b"41"
    wire += b"0" * 7
    e = _decode_error(bytes(wire))
    assert str(e) == "field 35: length 41 exceeds max 37 at offset 20"
    assert (e.field, e.offset, e.part) == (35, 20, "field")
    assert e.reason == "length 41 exceeds max 37"
    assert isinstance(e, Iso8583Error) and isinstance(e, ValueError)


def test_error_truncated_at_every_cut(codec: Codec) -> None:
    wire = codec.encode(withdrawal())
    for cut in range(len(wire)):
        e = _decode_error(wire[:cut], codec.spec.name)
        assert "truncated" in e.reason or "prefix" in e.reason, (cut, str(e))
        assert e.offset <= cut


def test_error_non_numeric() -> None:
    e = _decode_error(b"02002000000000000000A11111")
    assert (e.field, e.offset) == (3, 20)
    assert "non-numeric" in str(e)
    e = _decode_error(b"02X02000000000000000111111")
    assert (e.field, e.part, e.offset) == (None, "mti", 2)


def test_error_bad_bitmap_bit_for_field_the_spec_lacks() -> None:
    e = _decode_error(b"0200" + b"8000000000000000" + b"8000000000000000")
    assert (e.field, e.offset) == (65, 4)
    assert "not defined by the spec" in str(e)
    e = _decode_error(b"0200" + b"Z000000000000000")
    assert (e.part, e.offset) == ("bitmap", 4)


def test_error_trailing_garbage() -> None:
    wire = _ascii(withdrawal())
    e = _decode_error(wire + b"\x00\x01")
    assert (e.part, e.field, e.offset) == ("message", None, len(wire))
    assert "2 bytes of trailing data" in str(e)


def test_error_bad_length_prefix_and_odd_hex() -> None:
    e = _decode_error(b"02004000000000000000X9")
    assert (e.field, e.offset, e.reason) == (2, 20, "length prefix is not a decimal number")
    wire = _ascii(Message("0200", {55: b"\x9f\x26\x01\x00"}))
    assert wire[20:23] == b"008"
    e = _decode_error(wire[:20] + b"007" + wire[23:-1])
    assert (e.field, e.offset, e.reason) == (55, 20, "hex data has an odd length 7")


def test_error_empty_input() -> None:
    e = _decode_error(b"")
    assert (e.part, e.offset) == ("mti", 0)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({3: "12345"}, 3, "length 5 but the field is fixed at 6"),
        ({2: "1" * 20}, 2, "length 20 exceeds max 19"),
        ({4: "00000000000A"}, 4, "non-numeric data (byte 0x41)"),
        ({52: "1234567890ABCDEF"}, 52, "expects bytes, got str"),
        ({39: b"00"}, 39, "expects str, got bytes"),
        ({39: 0}, 39, "expects str or bytes, got int"),
        ({65: b"\x00" * 8}, 65, "not defined by the spec"),
        ({1: b"\x00" * 8}, 1, "field number 1 outside 2..=128"),
        ({129: "x"}, 129, "field number 129 outside 2..=128"),
        ({43: "é" + "x" * 38}, 43, "non-ASCII data (byte 0xC3)"),
    ],
)
def test_encode_errors_name_the_field(
    fields: dict[int, str | bytes], field: int, reason: str
) -> None:
    with pytest.raises(Iso8583EncodeError) as info:
        Codec("ascii87").encode(Message("0200", fields))
    assert info.value.field == field
    assert info.value.reason == reason
    assert str(info.value).startswith(f"field {field}: {reason}")


def test_encode_bad_mti_and_key_types() -> None:
    codec = Codec("ascii87")
    with pytest.raises(Iso8583EncodeError) as info:
        codec.encode(Message("020", {}))
    assert info.value.part == "mti"
    with pytest.raises(Iso8583EncodeError):
        codec.encode(Message("02A0", {}))
    str_keys: Any = {"3": "011000"}
    with pytest.raises(Iso8583EncodeError) as info:
        codec.spec.encode("0200", str_keys)
    assert "field numbers must be int" in str(info.value)


# --- specs as data ---------------------------------------------------------------------------


def test_shipped_toml_specs_equal_the_compiled_builtins() -> None:
    for name in BUILTIN_SPECS:
        from_file = builtin_spec(name)
        compiled = switch_native.Spec.builtin(name)
        assert from_file.fields() == compiled.fields()
        assert from_file.mti_encoding == compiled.mti_encoding
        assert from_file.bitmap_encoding == compiled.bitmap_encoding
        assert get_spec(name) is from_file


EBCDIC_SPEC = {
    "name": "ebcdic-test",
    "mti": "ebcdic",
    "bitmap": "binary",
    "defaults": {"encoding": "ebcdic", "prefix": "ebcdic"},
    "fields": {
        "2": {"kind": "n", "length": "LL", "max": 19},
        "3": {"kind": "n", "encoding": "bcd", "max": 6},
        "35": {
            "kind": "z",
            "encoding": "bcd",
            "length": "LL",
            "prefix": "binary",
            "max": 37,
            "pad": "right_f",
        },
        "43": {"kind": "ans", "max": 10},
        "48": {"kind": "ans", "length": "LLLL", "max": 2000},
        "52": {"kind": "b", "encoding": "binary", "max": 8},
        "55": {"kind": "b", "encoding": "hex", "length": "LLL", "prefix": "bcd", "max": 512},
    },
}


def test_spec_from_json_and_toml_files(tmp_path: Path) -> None:
    json_path = tmp_path / "ebcdic.json"
    json_path.write_text(json.dumps(EBCDIC_SPEC))
    spec = load_spec(json_path)
    assert spec.name == "ebcdic-test" and spec.mti_encoding == "ebcdic"
    m = Message(
        "0100",
        {
            2: PAN,
            3: "000000",
            35: "4761=2812201",
            43: "Café Poste",
            48: "x" * 1200,
            52: PIN_BLOCK,
            55: b"\x9f\x26\x02\xaa\xbb",
        },
    )
    codec = Codec(spec)
    wire = codec.encode(m)
    assert wire[:4] == "0100".encode("cp500")
    assert "Café Poste".encode("cp500") in wire
    assert b"\xf1\xf2\xf0\xf0" + b"x".decode().encode("cp500") * 3 in wire
    assert codec.decode(wire) == m

    toml_path = tmp_path / "small.toml"
    toml_path.write_text(
        'name = "small"\nmti = "bcd"\nbitmap = "binary"\n'
        '[fields]\n3 = { kind = "n", encoding = "bcd", max = 6 }\n'
        '39 = { kind = "ans", max = 2 }\n'
    )
    codec = Codec(toml_path)
    assert codec.encode(Message("0210", {3: "011000", 39: "00"})) == (
        b"\x02\x10" + bytes.fromhex("2000000002000000") + b"\x01\x10\x00" + b"00"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fields": {"2": {"kind": "x", "max": 2}}}, "field 2: unknown kind"),
        ({"fields": {"2": {"kind": "ans", "encoding": "bcd", "max": 2}}}, "field 2:"),
        ({"fields": {"2": {"kind": "n", "length": "LL", "max": 100}}}, "does not fit"),
        ({"fields": {"1": {"kind": "n", "max": 2}}}, "field 1:"),
        ({"fields": {"two": {"kind": "n", "max": 2}}}, "not a number"),
        ({"fields": {"2": {"kind": "n", "max": 2, "maxx": 3}}}, "unknown keys"),
        ({"fields": {"2": {"kind": "n"}}}, "needs kind and max"),
        ({"fields": {"2": {"kind": "n", "max": 0}}}, "positive integer"),
        ({"mti": "hex"}, "unknown MTI encoding"),
        ({"bitmap": "ascii"}, "unknown bitmap encoding"),
    ],
)
def test_bad_specs_are_refused_with_the_field_named(
    change: dict[str, object], message: str
) -> None:
    data = {"name": "bad", "mti": "ascii", "bitmap": "hex", "fields": {}} | change
    with pytest.raises(SpecError, match=message):
        spec_from_mapping(data, source="bad.toml")


def test_unknown_builtin_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        Codec("nope")
    bad = tmp_path / "broken.toml"
    bad.write_text("name = [")
    with pytest.raises(SpecError, match=r"broken\.toml"):
        load_spec(bad)


def test_message_equality_and_codec_type_checks() -> None:
    a = Message("0200", {3: "011000"})
    assert a == Message("0200", {3: "011000"})
    assert a != Message("0210", {3: "011000"})
    assert a != Message("0200", {3: "011001"})
    assert a != ("0200", {3: "011000"})
    assert Message("0800").fields == {}
    with pytest.raises(TypeError):
        hash(a)
    codec = Codec("ascii87")
    bad: Any = {"mti": "0200"}
    with pytest.raises(TypeError):
        codec.encode(bad)
    with pytest.raises(TypeError):
        codec.decode(bad)
    assert repr(codec) == "Codec('ascii87')"
    assert isinstance(codec.decode(codec.encode(a)), Message)


def test_peek_mti_reads_the_class_of_an_undecodable_message() -> None:
    ascii_codec, binary_codec = Codec("ascii87"), Codec("binary87")
    broken = ascii_codec.encode(withdrawal())[:-3]
    with pytest.raises(Iso8583DecodeError):
        ascii_codec.decode(broken)
    assert ascii_codec.peek_mti(broken) == "0200"
    assert ascii_codec.peek_mti(b"02") is None
    assert ascii_codec.peek_mti(b"0X00") is None
    assert binary_codec.peek_mti(b"\x04\x20garbage") == "0420"


def test_salvage_returns_the_fields_before_the_first_bad_one_and_the_error() -> None:
    for spec in ("ascii87", "binary87"):
        codec = Codec(spec)
        wire = codec.encode(withdrawal())
        assert codec.salvage(wire) == (withdrawal(), None)
        m, err = codec.salvage(wire[:-3])  # the last field (52) cut short
        assert isinstance(err, Iso8583DecodeError) and err.field == 52
        assert m is not None and m.mti == "0200"
        assert m.fields == {n: v for n, v in withdrawal().fields.items() if n < 52}
        m, err = codec.salvage(bytearray(wire[:1]))
        assert m is None and err is not None and err.part == "mti"


# One broken message per decode error class, for both specs: (spec, hex or ASCII bytes,
# field (None: MTI/bitmap/message), offset, words the reason must contain).
BROKEN = [
    ("ascii87", b"", None, 0, "truncated"),
    ("ascii87", b"0200", None, 4, "truncated"),
    ("ascii87", b"02002000000000000000011", 3, 20, "truncated"),
    ("ascii87", b"0200400000000000000020" + b"1" * 20, 2, 20, "exceeds max 19"),
    ("ascii87", b"02004000000000000000A2", 2, 20, "not a decimal"),
    ("ascii87", b"0200200000000000000001100A", 3, 25, "non-numeric"),
    ("ascii87", b"02A02000000000000000011000", None, 2, "non-numeric"),
    ("ascii87", b"02000000000002000000\x800", 39, 20, "non-ASCII"),
    ("ascii87", b"0200G000000000000000", None, 4, "invalid hex"),
    ("ascii87", b"02000000000000001000" + b"00000000000000ZZ", 52, 34, "invalid hex"),
    ("ascii87", b"0200000000000000000000", None, 20, "trailing"),
    ("ascii87", b"020080000000000000008000000000000000", 65, 4, "not defined"),
    ("binary87", bytes.fromhex("0200"), None, 2, "truncated"),
    ("binary87", bytes.fromhex("0A00"), None, 0, "non-numeric"),
    ("binary87", bytes.fromhex("020000000400000000001051"), 22, 10, "pad nibble 1"),
    ("binary87", bytes.fromhex("0200400000000000000003123001"), None, 13, "trailing"),
    ("binary87", bytes.fromhex("02004000000000000000031231"), 2, 12, "pad nibble 1"),
    ("binary87", bytes.fromhex("0200400000000000000003A230"), 2, 11, "non-numeric"),
    ("binary87", bytes.fromhex("020040000000000000002A"), 2, 10, "not a decimal"),
    ("binary87", bytes.fromhex("020040000000000000002012"), 2, 10, "exceeds max 19"),
]


@pytest.mark.parametrize(("spec", "data", "field", "offset", "words"), BROKEN)
def test_broken_message_corpus(
    spec: str, data: bytes, field: int | None, offset: int, words: str
) -> None:
    e = _decode_error(data, spec)
    assert (e.field, e.offset) == (field, offset), str(e)
    assert words in str(e)
    assert str(e).endswith(f"at offset {offset}")


# --- MAC layout -------------------------------------------------------------------------------


def test_mac_layout_signs_the_bytes_it_returns_and_reads_a_received_mac() -> None:
    import asyncio

    from switch.iso8583.mac import MacLayout, MacPlacementError

    seen: list[bytes] = []

    async def mac_of(data: bytes) -> bytes:
        seen.append(data)
        return bytes(range(1, 9))

    for spec in ("ascii87", "binary87"):
        codec = Codec(spec)
        layout = MacLayout(codec)
        for msg in (withdrawal(), Message("0420", {**withdrawal().fields, 90: "0" * 42})):
            signed, wire = asyncio.run(layout.sign_with(msg, mac_of))
            field = 128 if 90 in msg.fields else 64
            assert signed.fields[field] == bytes(range(1, 9)) and field not in msg.fields
            assert wire == codec.encode(signed)  # what is sent is what decodes
            assert seen[-1] == wire[: -layout.wire_size] == layout.covered(msg)
            received = layout.received(codec.decode(wire), wire)
            assert received is not None
            assert (received.field, received.mac, received.covered) == (
                field,
                bytes(range(1, 9)),
                seen[-1],
            )
        assert layout.received(withdrawal(), codec.encode(withdrawal())) is None
        misplaced = Message("0200", {11: "000001", 64: bytes(8), 90: "0" * 42})
        with pytest.raises(MacPlacementError) as info:
            layout.received(misplaced, codec.encode(misplaced))
        assert info.value.field == 64
    # a MAC in 128 behind a secondary bitmap that announces nothing else is the last field
    codec = Codec("ascii87")
    only128 = Message("0200", {11: "000001", 128: bytes(8)})
    wire = codec.encode(only128)
    received = MacLayout(codec).received(codec.decode(wire), wire)
    assert received is not None and received.field == 128
    assert received.covered == wire[:-16]
