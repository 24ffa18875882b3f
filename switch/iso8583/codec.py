"""Encode and decode ISO 8583 messages through the native codec.

Hold one :class:`Codec` per spec (per listener or per remote issuer) and call
:meth:`Codec.decode` / :meth:`Codec.encode` on the hot path: each call is a single call into
Rust that parses or writes the whole message, so a typical 0200 costs about a microsecond.

Every malformed input raises :class:`Iso8583DecodeError`, every message that does not fit
the spec :class:`Iso8583EncodeError`; both are :class:`Iso8583Error` (a ``ValueError``) with
``.field`` (int, or None for the MTI, bitmap or whole message), ``.offset``, ``.part`` and
``.reason``, e.g. ``field 35: length 41 exceeds max 37 at offset 87``. ``decode`` never
returns part of a message: bytes after the last field are an error too; ``salvage`` is the
one call that does, beside the error, for answering a malformed request.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from switch_native import CodecBase, Iso8583DecodeError, Iso8583EncodeError, Iso8583Error, Spec

from switch.iso8583.message import Message
from switch.iso8583.spec import get_spec

__all__ = [
    "Codec",
    "Iso8583DecodeError",
    "Iso8583EncodeError",
    "Iso8583Error",
    "decode",
    "encode",
]


class Codec(CodecBase):
    """A compiled spec with decode/encode to and from :class:`Message`.

    ``Codec(spec="ascii87")`` accepts a compiled spec, a built-in name or a spec file path.
    ``decode(data)`` (bytes, bytearray or memoryview: exactly one message, no length header;
    see :mod:`switch.iso8583.framing`) returns a :class:`Message`; ``encode(message)`` returns
    bytes with the bitmaps computed from the fields present. Both are single native calls.
    """

    __slots__ = ()

    def __new__(cls, spec: Spec | str | Path = "ascii87") -> Codec:
        return super().__new__(cls, get_spec(spec), Message)

    if TYPE_CHECKING:  # the native methods, typed for this subclass (no runtime override)

        def decode(self, data: bytes | bytearray | memoryview) -> Message: ...

        def salvage(
            self, data: bytes | bytearray | memoryview
        ) -> tuple[Message | None, Iso8583DecodeError | None]:
            """Decode as far as the first bad element: the message with the fields decoded
            before it (None when even the MTI is unreadable) and the error naming that element
            (None when the whole message decodes). One native call, for answering a request
            that does not decode with the fields its sender matches answers on."""
            ...

    def peek_mti(self, data: bytes | bytearray | memoryview) -> str | None:
        """The MTI of a message that may not decode (None if even the MTI is unreadable), so
        the server can answer a malformed request with a format error of the right class."""
        return self.spec.peek_mti(bytes(data))

    def __repr__(self) -> str:
        return f"Codec({self.spec.name!r})"


def decode(data: bytes | bytearray | memoryview, spec: Spec | str | Path = "ascii87") -> Message:
    """Decode one message with ``spec`` (a compiled spec, built-in name or spec file)."""
    return Codec(spec).decode(data)


def encode(message: Message, spec: Spec | str | Path = "ascii87") -> bytes:
    """Encode one message with ``spec`` (a compiled spec, built-in name or spec file)."""
    return Codec(spec).encode(message)
