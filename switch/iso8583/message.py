"""The decoded ISO 8583 message: an MTI and its fields by number.

Value types follow the field's kind in the spec: ``str`` for numeric (``n``), track (``z``)
and text (``ans``) fields, exactly as on the wire (no padding added or stripped, leading
zeros kept); ``bytes`` for binary (``b``) fields such as the PIN block (52), EMV data (55)
and MACs (64/128), whatever their wire encoding (raw in ``binary87``, hex in ``ascii87``).
Field 1 (secondary bitmap) never appears: bitmaps are computed on encode.

``repr`` masks card data so a message can be logged: the PAN shows first 6 / last 4, track
data, PIN block, EMV data and MACs show only their length.
"""

from __future__ import annotations

from switch_native import MessageBase

from switch.digits import is_ascii_digits

__all__ = ["FieldValue", "Message", "answer_mti", "mask_field"]

FieldValue = str | bytes

#: Fields whose content must never reach a log: tracks, PIN block, security info, EMV, MACs.
_HIDDEN_FIELDS = frozenset({35, 36, 45, 52, 53, 55, 64, 96, 128})
#: Fields holding a PAN (primary, extended): shown as first 6 / last 4.
_PAN_FIELDS = frozenset({2, 34})


def answer_mti(mti: str) -> str:
    """The MTI answering the request ``mti``: function digit + 1 and, in the origin digit,
    the repeat bit cleared (0200 -> 0210, 0201 -> 0210, 0221 -> 0230, 0421 -> 0430, 0800 ->
    0810). ISO 8583:1987 answers a repeat as its first transmission, and jPOS
    (``ISOMsg.setResponseMTI``: 0201 becomes 0210) and the MUXes that match on it expect
    that. ValueError if ``mti`` is not a request."""
    if len(mti) != 4 or not is_ascii_digits(mti) or int(mti[2]) % 2 == 1:
        raise ValueError(f"MTI {mti!r} is not a request")
    return f"{mti[:2]}{int(mti[2]) + 1}{int(mti[3]) & ~1}"


def mask_field(number: int, value: FieldValue) -> str:
    """A loggable rendering of one field value."""
    if number in _HIDDEN_FIELDS:
        return f"<{len(value)} {'bytes' if isinstance(value, bytes) else 'chars'} hidden>"
    if isinstance(value, bytes):
        return value.hex().upper()
    if number in _PAN_FIELDS:
        if len(value) <= 10:
            return "*" * len(value)
        return value[:6] + "*" * (len(value) - 10) + value[-4:]
    return value


class Message(MessageBase):
    """An ISO 8583 message: ``mti`` (4 digits) and ``fields`` {number (2..128): value}.

    ``Message(mti, fields=None)``. The storage and ``==`` are native (``MessageBase``) so the
    codec builds messages without running Python code; ``mti`` is fixed once built, ``fields``
    is a plain dict you may change. Unhashable, like the dict it holds.
    """

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, number: int) -> FieldValue:
        return self.fields[number]

    def __setitem__(self, number: int, value: FieldValue) -> None:
        self.fields[number] = value

    def __contains__(self, number: object) -> bool:
        return number in self.fields

    def get(self, number: int, default: FieldValue | None = None) -> FieldValue | None:
        return self.fields.get(number, default)

    def text(self, number: int) -> str:
        """Field ``number`` as str; KeyError if absent, TypeError if the field is binary."""
        value = self.fields[number]
        if not isinstance(value, str):
            raise TypeError(f"field {number} is binary, not text")
        return value

    def binary(self, number: int) -> bytes:
        """Field ``number`` as bytes; KeyError if absent, TypeError if the field is text."""
        value = self.fields[number]
        if not isinstance(value, bytes):
            raise TypeError(f"field {number} is text, not binary")
        return value

    def response_mti(self) -> str:
        """The MTI of the answer to this message (:func:`answer_mti`: 0200 and its repeat
        0201 -> 0210, 0420 -> 0430, 0800 -> 0810); ValueError if it is not a request."""
        return answer_mti(self.mti)

    def copy(self) -> Message:
        return Message(self.mti, dict(self.fields))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}: {mask_field(n, v)!r}" for n, v in sorted(self.fields.items()))
        return f"Message({self.mti!r}, {{{shown}}})"
