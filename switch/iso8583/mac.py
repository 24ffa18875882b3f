"""Message authentication (fields 64 / 128): what the MAC covers, for any spec.

The MAC is an ISO 9797-1 algorithm 3 (retail) MAC under the terminal's TAK, computed by the
HSM (M6/M8) over the message as encoded, from the MTI up to -- not including -- the MAC
field itself, which is the last field of the message (64 without a secondary bitmap, 128
with one). The bitmap bit of the MAC field is set in the covered bytes.
"""

from __future__ import annotations

from switch.iso8583.codec import Codec
from switch.iso8583.message import Message

__all__ = ["MAC_SIZE", "MacLayout", "mac_field"]

MAC_SIZE = 8


def mac_field(msg: Message) -> int:
    """64, or 128 when the message has fields of the secondary bitmap."""
    return 128 if any(n > 64 for n in msg.fields if n not in (64, 128)) else 64


class MacLayout:
    """The wire size of the MAC field in one codec's spec, found by encoding two probes."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        low = codec.encode(Message("0800", {64: b"\x00" * MAC_SIZE}))
        high = codec.encode(Message("0800", {64: b"\xff" * MAC_SIZE}))
        first = next(i for i, (a, b) in enumerate(zip(low, high, strict=True)) if a != b)
        self.wire_size = len(low) - first

    def covered(self, msg: Message) -> bytes:
        """The bytes the MAC of ``msg`` covers (with the MAC field's bit set)."""
        probe = msg.copy()
        probe.fields.pop(64, None)
        probe.fields.pop(128, None)
        probe.fields[mac_field(probe)] = b"\x00" * MAC_SIZE
        return self.codec.encode(probe)[: -self.wire_size]
