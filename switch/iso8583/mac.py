"""Message authentication (fields 64 / 128): what the MAC covers, for any spec.

The MAC is an ISO 9797-1 algorithm 3 (retail) MAC under the terminal's TAK (or a link's
ZAK), computed by the HSM (M6/M8) over the message bytes from the MTI up to -- not
including -- the content of the MAC field, which is the last field of the message (64
without a secondary bitmap, 128 with one). The bitmap bit of the MAC field is set in the
covered bytes.

*Which* bytes matters: a message can be written more than one way and still decode to the
same fields (hex in lower case, an all-zero secondary bitmap, ...). The sender MACs the bytes
it sends, so a received MAC is checked over the bytes received (:meth:`MacLayout.received`),
never over our re-encoding of them; and an answer we sign is MACed over the very bytes we
then send (:meth:`MacLayout.sign_with`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from switch.iso8583.codec import Codec
from switch.iso8583.message import Message

__all__ = ["MAC_SIZE", "MacLayout", "MacPlacementError", "ReceivedMac", "mac_field"]

MAC_SIZE = 8


def mac_field(msg: Message) -> int:
    """Where a MAC goes in a message we write: 64, or 128 when the message has fields of the
    secondary bitmap."""
    return 128 if any(n > 64 for n in msg.fields if n not in (64, 128)) else 64


class MacPlacementError(ValueError):
    """A received MAC that is not where a MAC can be checked (not the last field, or not
    ``MAC_SIZE`` bytes): ``field`` names it for the log and the format error."""

    def __init__(self, field: int, reason: str) -> None:
        super().__init__(f"field {field}: {reason}")
        self.field = field


@dataclass(frozen=True, slots=True)
class ReceivedMac:
    """The MAC of a received message and the exact received bytes it covers."""

    field: int
    mac: bytes
    covered: bytes


class MacLayout:
    """Where the MAC sits in one codec's wire form: the size of the MAC field's content,
    and how the content is written (raw bytes or hex), found by encoding two probes."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        low = codec.encode(Message("0800", {64: b"\x00" * MAC_SIZE}))
        high = codec.encode(Message("0800", {64: b"\xff" * MAC_SIZE}))
        first = next(i for i, (a, b) in enumerate(zip(low, high, strict=True)) if a != b)
        self.wire_size = len(low) - first
        self._hex = high[first:] == b"FF" * MAC_SIZE

    def covered(self, msg: Message) -> bytes:
        """The bytes the MAC of ``msg`` covers when we write ``msg`` (the MAC field's bit set).

        For a message we build and sign; a received message is checked over the bytes
        received instead (:meth:`received`).
        """
        return self._placeholder_wire(msg)[1][: -self.wire_size]

    def received(self, msg: Message, payload: bytes) -> ReceivedMac | None:
        """The MAC of the received ``msg`` and the bytes of ``payload`` (the message exactly
        as received, ``msg`` its decoding) that it covers. None when ``msg`` has no MAC field.

        Raises :class:`MacPlacementError` when the MAC is not the message's last field
        (a field after it would be outside the MAC) or is not ``MAC_SIZE`` bytes.
        """
        if 64 not in msg.fields and 128 not in msg.fields:
            return None
        last = max(msg.fields)
        field = last if last in (64, 128) else (64 if 64 in msg.fields else 128)
        mac = msg.fields[field]
        if field != last:
            raise MacPlacementError(field, f"the MAC must be the last field (field {last} follows)")
        if not isinstance(mac, bytes) or len(mac) != MAC_SIZE:
            raise MacPlacementError(field, f"the MAC must be {MAC_SIZE} bytes")
        return ReceivedMac(field, mac, bytes(payload[: len(payload) - self.wire_size]))

    async def sign_with(
        self, msg: Message, mac_of: Callable[[bytes], Awaitable[bytes]]
    ) -> tuple[Message, bytes]:
        """Sign ``msg`` with ``mac_of(covered bytes)``: the signed message (a copy, MAC in
        :func:`mac_field`) and its wire bytes, which are exactly the bytes the MAC covers
        followed by the MAC. Send those bytes, not a re-encoding.

        Raises Iso8583EncodeError when ``msg`` does not encode (then nothing is MACed).
        """
        signed, wire = self._placeholder_wire(msg)
        mac = await mac_of(wire[: -self.wire_size])
        signed.fields[mac_field(signed)] = mac
        content = mac.hex().upper().encode("ascii") if self._hex else mac
        return signed, wire[: -self.wire_size] + content

    def _placeholder_wire(self, msg: Message) -> tuple[Message, bytes]:
        """A copy of ``msg`` with a zero MAC in :func:`mac_field`, and its encoding."""
        probe = msg.copy()
        probe.fields.pop(64, None)
        probe.fields.pop(128, None)
        probe.fields[mac_field(probe)] = b"\x00" * MAC_SIZE
        return probe, self.codec.encode(probe)
