"""How an SMS text is encoded on the air and how many segments it costs.

A short message carries 140 octets. Text that fits the GSM 03.38 default alphabet goes as
GSM-7 (160 characters, or 153 per part once a concatenation header is needed; characters of
the extension table such as ``€`` or ``[`` count double). Anything else -- Arabic in
particular -- forces UCS-2 (UTF-16BE): 70 characters in one SMS, 67 per part of a
concatenated SMS (the 6-octet UDH takes the rest). Characters outside the BMP take two UCS-2
code units. The SMPP transport uses the same functions to choose ``data_coding`` and to
split a long text, so what the tests count is what the SMS centre receives.
"""

from __future__ import annotations

from typing import Literal

Encoding = Literal["gsm7", "ucs2"]

# GSM 03.38 default alphabet (basic table), as Unicode characters.
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs an escape plus the character (two septets).
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE = 160
GSM7_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67


def encoding_for(text: str) -> Encoding:
    """GSM-7 when every character is in the default alphabet, otherwise UCS-2."""
    for ch in text:
        if ch not in _GSM7_BASIC and ch not in _GSM7_EXTENDED:
            return "ucs2"
    return "gsm7"


def encoded_units(text: str, encoding: Encoding) -> int:
    """Length in septets (GSM-7) or UTF-16 code units (UCS-2)."""
    if encoding == "gsm7":
        return sum(2 if ch in _GSM7_EXTENDED else 1 for ch in text)
    return len(text.encode("utf-16-be")) // 2


def segment_count(text: str) -> int:
    """Number of SMS parts the text costs (1 for an empty text)."""
    enc = encoding_for(text)
    units = encoded_units(text, enc)
    single, part = (GSM7_SINGLE, GSM7_PART) if enc == "gsm7" else (UCS2_SINGLE, UCS2_PART)
    if units <= single:
        return 1
    return -(-units // part)


def split_ucs2(text: str, part_units: int = UCS2_PART) -> list[bytes]:
    """UTF-16BE payloads of at most ``part_units`` code units, never cutting a surrogate pair."""
    raw = text.encode("utf-16-be")
    limit = part_units * 2
    parts: list[bytes] = []
    start = 0
    while start < len(raw):
        end = min(start + limit, len(raw))
        if end < len(raw):
            # A high surrogate (D800-DBFF) as the last unit would split a pair: move it over.
            hi = raw[end - 2]
            if 0xD8 <= hi <= 0xDB:
                end -= 2
        parts.append(raw[start:end])
        start = end
    return parts or [b""]


# The basic table in code-point order (0x1B, the escape, is never emitted as a character).
_GSM7_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_CODE = {ch: i for i, ch in enumerate(_GSM7_TABLE) if ch != "\x1b"}
_GSM7_EXT_CODE = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
                  "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}  # fmt: skip


def gsm7_encode(text: str) -> bytes:
    """Unpacked GSM 03.38 septets, one per octet (SMPP ``data_coding`` 0), escapes included."""
    out = bytearray()
    for ch in text:
        code = _GSM7_CODE.get(ch)
        if code is not None:
            out.append(code)
            continue
        ext = _GSM7_EXT_CODE.get(ch)
        if ext is None:
            raise ValueError(f"{ch!r} is not in the GSM 03.38 alphabet")
        out += bytes((0x1B, ext))
    return bytes(out)


def split_gsm7(text: str, part_septets: int = GSM7_PART) -> list[bytes]:
    """GSM-7 payloads of at most ``part_septets``, never cutting an escape sequence."""
    parts: list[bytes] = []
    current = bytearray()
    for ch in text:
        enc = gsm7_encode(ch)
        if len(current) + len(enc) > part_septets:
            parts.append(bytes(current))
            current = bytearray()
        current += enc
    parts.append(bytes(current))
    return parts
