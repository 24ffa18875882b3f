"""Message authentication on an interchange link (fields 64 / 128 under a zone MAC key).

Between two hosts (this switch as acquirer, another switch as issuer) the MAC key is a ZAK:
a zone key both sides hold under their own LMK. Whoever sends a transaction message signs
it; whoever receives an answer checks it. The MAC covers the message as
:mod:`switch.iso8583.mac` lays it out (the same rule the acquirer listener applies with a
terminal's TAK) -- the very bytes we send, an answer's bytes exactly as received -- and both
generation and check run in the HSM (M6 / M8): the ZAK never exists in clear outside it.

Network management messages (08xx: sign-on, echo) are neither signed nor checked: they
move no money and carry no card data, and they carry no acquirer id (field 32) by which the
issuer could pick the key, so signing them would only make the line's liveness depend on
the key being right.
"""

from __future__ import annotations

from switch.hsm.client import HsmClient, HsmError, KeyType
from switch.iso8583.codec import Codec
from switch.iso8583.mac import MacLayout, MacPlacementError, mac_field
from switch.iso8583.message import Message

__all__ = ["LinkMac", "is_network"]


def is_network(msg: Message) -> bool:
    """True for network management messages (08xx), which the link does not MAC."""
    return msg.mti.startswith("08")


class LinkMac:
    """Signs outgoing messages and checks answers under one link's ZAK (under the LMK)."""

    def __init__(self, hsm: HsmClient, zak: str, codec: Codec) -> None:
        if not zak:
            raise ValueError("zak: empty")
        self.hsm = hsm
        self.zak = zak
        self.layout = MacLayout(codec)

    async def _mac(self, data: bytes) -> bytes:
        return await self.hsm.generate_mac(KeyType.ZAK, self.zak, data)

    async def sign(self, msg: Message) -> tuple[Message, bytes]:
        """``msg`` signed (a copy, MAC in field 64, or 128 with a secondary bitmap) and the
        exact bytes to send: the MAC covers them up to its own content.

        Raises HsmError (nothing is sent then) or Iso8583Error (the message does not encode).
        """
        return await self.layout.sign_with(msg, self._mac)

    async def problem(self, answer: Message, payload: bytes) -> str | None:
        """None when ``answer`` (received as ``payload``) carries a valid MAC over the bytes
        received; otherwise why not, naming the field.

        An HSM failure during the check is a problem too: an answer that could not be
        checked is not a valid answer.
        """
        try:
            received = self.layout.received(answer, payload)
        except MacPlacementError as exc:
            return f"{exc}"
        if received is None:
            return f"field {mac_field(answer)}: MAC missing"
        field = received.field
        try:
            ok = await self.hsm.verify_mac(KeyType.ZAK, self.zak, received.covered, received.mac)
        except (HsmError, OSError, TimeoutError) as exc:
            return f"field {field}: MAC not checked ({type(exc).__name__}: {exc})"
        return None if ok else f"field {field}: MAC does not verify"
