"""Minimal BER-TLV reading and writing for field 55 (EMV ICC data).

The core only needs the few tags of an online authorization (ARQC and the data it covers)
and to write tag 91 (issuer authentication data: ARPC + ARC) into the answer.
"""

from __future__ import annotations

# The tags whose values, concatenated in this order, form the data an ARQC covers: the
# terminal data of CDOL1 as recommended by EMV Book 2 (amount, other amount, country, TVR,
# currency, date, type, unpredictable number) followed by the card data (AIP, ATC) and the
# card verification results (CVR, from 9F10). Pinned in the tests with switch_native.
ARQC_DATA_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x9F36)


class TlvError(ValueError):
    """Field 55 is not well-formed BER-TLV."""


def parse_tlv(data: bytes) -> dict[int, bytes]:
    """Primitive tags of ``data`` (constructed tags are descended into)."""
    out: dict[int, bytes] = {}
    _parse(data, out)
    return out


def _parse(data: bytes, out: dict[int, bytes]) -> None:
    i, n = 0, len(data)
    while i < n:
        if data[i] in (0x00, 0xFF):  # padding between objects
            i += 1
            continue
        first = data[i]
        tag = first
        i += 1
        if first & 0x1F == 0x1F:
            while True:
                if i >= n:
                    raise TlvError("field 55: truncated tag")
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
        if i >= n:
            raise TlvError(f"field 55: tag {tag:X} has no length")
        length = data[i]
        i += 1
        if length & 0x80:
            nbytes = length & 0x7F
            if nbytes == 0 or nbytes > 3 or i + nbytes > n:
                raise TlvError(f"field 55: bad length for tag {tag:X}")
            length = int.from_bytes(data[i : i + nbytes], "big")
            i += nbytes
        if i + length > n:
            raise TlvError(f"field 55: tag {tag:X} runs past the end")
        value = data[i : i + length]
        i += length
        if first & 0x20:
            _parse(value, out)
        else:
            out[tag] = value


def encode_tlv(tag: int, value: bytes) -> bytes:
    tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82]) + n.to_bytes(2, "big")
    return tag_bytes + length + value


def cvr_from_iad(iad: bytes) -> bytes:
    """The card verification results inside 9F10 (Visa CVN 10 layout: bytes 3-6)."""
    if len(iad) >= 7:
        return iad[3:7]
    return iad


def arqc_transaction_data(tags: dict[int, bytes]) -> bytes:
    return b"".join(tags.get(t, b"") for t in ARQC_DATA_TAGS) + cvr_from_iad(tags.get(0x9F10, b""))
