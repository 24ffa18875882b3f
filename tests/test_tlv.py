"""EMV TLV (field 55) through the native parser/builder: primitive and nested constructed
tags, long lengths, errors with offsets, and random round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.iso8583 import tlv
from switch.iso8583.codec import Codec
from switch.iso8583.message import Message
from switch.iso8583.tlv import Tlv, TlvError

# A typical ARQC request's field 55 (tags and lengths as EMV Book 3 defines them).
FIELD55 = bytes.fromhex(
    "9F2608C2A5E0F94E8D37D1"  # application cryptogram
    "9F2701809F100706010A03A0B000"  # CID, issuer application data
    "9F3704A1B2C3D49F36020041"  # unpredictable number, ATC
    "950500000080009A032511299C0101"  # TVR, date, type
    "9F02060000005000005F2A020012"  # amount, currency (DZD)
    "82025C009F1A020012"  # AIP, country
)

# Issuer response: 91 (issuer authentication data) and 71 holding a script (9F18 + 86).
RESPONSE55 = bytes.fromhex("910A1122334455667788303071129F180400000001860984240000040102030A")


def test_parse_request_field55() -> None:
    nodes = tlv.parse(FIELD55)
    tags = [n.tag_hex for n in nodes]
    assert tags[:3] == ["9F26", "9F27", "9F10"]
    values = tlv.to_dict(FIELD55)
    assert values[0x9F26] == bytes.fromhex("C2A5E0F94E8D37D1")
    assert values[0x5F2A] == b"\x00\x12"
    assert values[0x95] == bytes.fromhex("0000008000")
    assert tlv.build(nodes) == FIELD55
    assert tlv.from_dict(values) == FIELD55


def test_nested_constructed_tags() -> None:
    nodes = tlv.parse(RESPONSE55)
    assert [n.tag for n in nodes] == [0x91, 0x71]
    script = nodes[1]
    assert script.children is not None
    assert [c.tag for c in script.children] == [0x9F18, 0x86]
    assert script.find(0x86) == Tlv(0x86, bytes.fromhex("84240000040102030A"))
    assert tlv.find(nodes, 0x9F18) == Tlv(0x9F18, bytes.fromhex("00000001"))
    assert tlv.find(nodes, 0x9F99) is None
    assert tlv.build(nodes) == RESPONSE55
    rebuilt = Tlv.constructed(0x71, script.children)
    assert rebuilt == script


def test_template_77_with_two_levels() -> None:
    inner = Tlv.constructed(0x71, [Tlv.primitive(0x86, b"\x01\x02")])
    outer = Tlv.constructed(0x77, [Tlv.primitive(0x9F27, b"\x80"), inner])
    wire = tlv.build([outer])
    assert wire == bytes.fromhex("770A9F27018071048602" + "0102")
    assert tlv.parse(wire) == [outer]


def test_long_lengths() -> None:
    big = Tlv.primitive(0x9F10, bytes(200))
    wire = tlv.build([big])
    assert wire[:4] == b"\x9f\x10\x81\xc8"
    assert tlv.parse(wire) == [big]
    huge = Tlv.primitive(0xDF01, bytes(300))
    assert tlv.build([huge])[:5] == b"\xdf\x01\x82\x01\x2c"


@pytest.mark.parametrize(
    ("hexdata", "offset", "reason"),
    [
        ("9F", 0, "truncated tag"),
        ("9F26", 2, "missing length"),
        ("9F260801", 2, "exceeds"),
        ("9580", 1, "indefinite length"),
        ("9F8181818101", 0, "longer than 4 bytes"),
        ("7003950501", 3, "exceeds"),
    ],
)
def test_errors_name_the_offset(hexdata: str, offset: int, reason: str) -> None:
    with pytest.raises(TlvError) as info:
        tlv.parse(bytes.fromhex(hexdata))
    assert info.value.offset == offset
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)


def test_build_refuses_malformed_tags() -> None:
    with pytest.raises(TlvError, match="not a well-formed BER tag"):
        tlv.build([Tlv(0x9F, b"")])
    with pytest.raises(TlvError, match="primitive but was given children"):
        tlv.build([Tlv(0x95, b"", ())])


def test_deep_nesting_is_refused() -> None:
    data = b""
    for _ in range(30):
        data = b"\x70" + bytes([len(data)]) + data
    with pytest.raises(TlvError, match="nesting"):
        tlv.parse(data)


def test_field55_travels_in_both_specs() -> None:
    for spec in ("ascii87", "binary87"):
        codec = Codec(spec)
        m = codec.decode(codec.encode(Message("0100", {55: FIELD55})))
        assert tlv.to_dict(m.binary(55))[0x9F36] == b"\x00\x41"


_tags = st.sampled_from([0x9F26, 0x9F27, 0x9F10, 0x95, 0x9A, 0x5F2A, 0x82, 0x9F1A, 0xDF8101])
_primitive = st.builds(Tlv.primitive, _tags, st.binary(max_size=300))
_nodes = st.recursive(
    _primitive,
    lambda kids: st.builds(
        Tlv.constructed, st.sampled_from([0x70, 0x71, 0x77, 0xBF0C]), st.lists(kids, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_nodes, max_size=6))
def test_random_round_trip(nodes: list[Tlv]) -> None:
    wire = tlv.build(nodes)
    assert tlv.parse(wire) == nodes
    assert tlv.build(tlv.parse(wire)) == wire


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_parse_or_raise(data: bytes) -> None:
    try:
        nodes = tlv.parse(data)
    except TlvError as e:
        assert 0 <= e.offset <= len(data)
        return
    # BER allows longer length forms than needed, so the bytes may change once (and with them
    # the raw value of an enclosing constructed object), then never again.
    once = tlv.build(nodes)
    assert tlv.build(tlv.parse(once)) == once
    assert len(tlv.parse(once)) == len(nodes)


def test_non_minimal_lengths_are_read_and_written_minimal() -> None:
    # Found by the cargo-fuzz tlv target: a 4-byte long-form zero length inside a template.
    data = bytes.fromhex("BF0B0E00000000010000840000000000" + "00" * 11)
    nodes = tlv.parse(data)
    assert nodes[0].children is not None
    assert [c.tag for c in nodes[0].children] == [0, 0, 1, 0, 0]
    once = tlv.build(nodes)
    assert len(once) < len(data)
    assert tlv.build(tlv.parse(once)) == once
    assert tlv.parse(bytes.fromhex("9F02820003112233")) == [Tlv(0x9F02, b"\x11\x22\x33")]
