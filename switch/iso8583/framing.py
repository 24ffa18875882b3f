"""Message framing on a TCP stream: a length header before each message, optionally a TPDU.

Two length headers are supported, both counting the bytes after the header (TPDU included):
``binary2`` (2-byte big-endian unsigned, the default listener's) and ``ascii4`` (4 ASCII
digits). With ``tpdu=True`` each frame starts with a 5-byte TPDU (id, destination, source),
as NAC-attached POS terminals send it; :func:`swap_tpdu` builds the answer's TPDU.

:class:`FrameSplitter` is incremental: feed it whatever ``data_received`` got and it returns
the complete frames, keeping any partial one for the next feed. A header announcing more than
``max_frame`` bytes (or a non-numeric ASCII header) raises :class:`FramingError` and leaves
the splitter failed: the stream cannot be re-synchronised, so the connection should close.
Zero-length frames carry no message and are skipped (some terminals send them to keep the
line up).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

__all__ = [
    "DEFAULT_FRAMING",
    "TPDU_SIZE",
    "Frame",
    "FrameSplitter",
    "Framing",
    "FramingError",
    "LengthHeader",
    "frame",
    "swap_tpdu",
]

TPDU_SIZE = 5


class FramingError(ValueError):
    """A frame that cannot be cut from the stream (too long, bad header, bad TPDU)."""


class LengthHeader(StrEnum):
    BINARY2 = "binary2"
    ASCII4 = "ascii4"

    @property
    def size(self) -> int:
        return 2 if self is LengthHeader.BINARY2 else 4

    @property
    def limit(self) -> int:
        """The largest length the header can tell."""
        return 0xFFFF if self is LengthHeader.BINARY2 else 9999


@dataclass(frozen=True, slots=True)
class Framing:
    """How messages are framed on one connection."""

    header: LengthHeader = LengthHeader.BINARY2
    tpdu: bool = False
    #: Largest frame accepted or sent, in bytes after the length header (TPDU included).
    max_frame: int = 8192

    def __post_init__(self) -> None:
        if not 1 <= self.max_frame <= self.header.limit:
            raise ValueError(f"max_frame must be 1..{self.header.limit} for {self.header}")


DEFAULT_FRAMING = Framing()


@dataclass(frozen=True, slots=True)
class Frame:
    """One framed message: the ISO 8583 bytes and, when the framing has one, the TPDU."""

    payload: bytes
    tpdu: bytes | None = None


def frame(payload: bytes, framing: Framing = DEFAULT_FRAMING, tpdu: bytes | None = None) -> bytes:
    """Prefix ``payload`` (and ``tpdu``) with the length header."""
    if framing.tpdu:
        if tpdu is None or len(tpdu) != TPDU_SIZE:
            raise FramingError(f"this framing needs a {TPDU_SIZE}-byte TPDU")
        body_len = TPDU_SIZE + len(payload)
    else:
        if tpdu is not None:
            raise FramingError("this framing has no TPDU")
        body_len = len(payload)
    if body_len > framing.max_frame:
        raise FramingError(f"frame of {body_len} bytes exceeds max {framing.max_frame}")
    if framing.header is LengthHeader.BINARY2:
        header = body_len.to_bytes(2, "big")
    else:
        header = b"%04d" % body_len
    if tpdu is not None:
        return header + tpdu + payload
    return header + payload


def swap_tpdu(tpdu: bytes) -> bytes:
    """The TPDU of an answer: same id, destination and source addresses swapped."""
    if len(tpdu) != TPDU_SIZE:
        raise FramingError(f"TPDU must be {TPDU_SIZE} bytes, got {len(tpdu)}")
    return tpdu[:1] + tpdu[3:5] + tpdu[1:3]


class FrameSplitter:
    """Cut complete frames out of a byte stream, fed in arbitrary pieces."""

    __slots__ = ("_buf", "_failed", "_framing")

    def __init__(self, framing: Framing = DEFAULT_FRAMING) -> None:
        self._framing = framing
        self._buf = bytearray()
        self._failed: FramingError | None = None

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add bytes from the stream; return every frame now complete, in order."""
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        buf += data
        framing = self._framing
        hsize = framing.header.size
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        while end - pos >= hsize:
            if framing.header is LengthHeader.BINARY2:
                length = (buf[pos] << 8) | buf[pos + 1]
            else:
                digits = bytes(buf[pos : pos + 4])
                if not digits.isdigit():
                    self._fail(f"length header {digits!r} is not 4 ASCII digits")
                length = int(digits)
            if length > framing.max_frame:
                self._fail(f"frame of {length} bytes exceeds max {framing.max_frame}")
            if end - pos - hsize < length:
                break
            start = pos + hsize
            pos = start + length
            if length == 0:
                continue
            if framing.tpdu:
                if length < TPDU_SIZE:
                    self._fail(f"frame of {length} bytes is shorter than its TPDU")
                tpdu = bytes(buf[start : start + TPDU_SIZE])
                frames.append(Frame(bytes(buf[start + TPDU_SIZE : pos]), tpdu))
            else:
                frames.append(Frame(bytes(buf[start:pos])))
        if pos:
            del buf[:pos]
        return frames

    def _fail(self, reason: str) -> NoReturn:
        self._failed = FramingError(reason)
        self._buf.clear()
        raise self._failed
