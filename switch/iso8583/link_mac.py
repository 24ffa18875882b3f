"""Message authentication on an interchange link (fields 64 / 128 under a zone MAC key).

Between two hosts (this switch as acquirer, another switch as issuer) the MAC key is a ZAK:
a zone key both sides hold under their own LMK. Whoever sends a transaction message signs
it; whoever receives an answer checks it. The MAC covers the encoded message as
:mod:`switch.iso8583.mac` lays it out (the same rule the acquirer listener applies with a
terminal's TAK), and both generation and check run in the HSM (M6 / M8): the ZAK never
exists in clear outside it.

Network management messages (08xx: sign-on, echo) are neither signed nor checked: they
move no money and carry no card data, and they carry no acquirer id (field 32) by which the
issuer could pick the key, so signing them would only make the line's liveness depend on
the key being right.
"""

from __future__ import annotations

from switch.hsm.client import HsmClient, HsmError, KeyType
from switch.iso8583.codec import Codec, Iso8583Error
from switch.iso8583.mac import MacLayout, mac_field
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

    async def sign(self, msg: Message) -> Message:
        """A copy of ``msg`` with its MAC (field 64, or 128 with a secondary bitmap).

        Raises HsmError (nothing is sent then) or Iso8583Error (the message does not encode).
        """
        signed = msg.copy()
        signed.fields.pop(64, None)
        signed.fields.pop(128, None)
        mac = await self.hsm.generate_mac(KeyType.ZAK, self.zak, self.layout.covered(signed))
        signed.fields[mac_field(signed)] = mac
        return signed

    async def problem(self, answer: Message) -> str | None:
        """None when ``answer`` carries a valid MAC; otherwise why not, naming the field.

        An HSM failure during the check is a problem too: an answer that could not be
        checked is not a valid answer.
        """
        field = mac_field(answer)
        mac = answer.fields.get(field)
        if not isinstance(mac, bytes):
            return f"field {field}: MAC missing"
        try:
            ok = await self.hsm.verify_mac(KeyType.ZAK, self.zak, self.layout.covered(answer), mac)
        except (HsmError, Iso8583Error, OSError, TimeoutError) as exc:
            return f"field {field}: MAC not checked ({type(exc).__name__}: {exc})"
        return None if ok else f"field {field}: MAC does not verify"
