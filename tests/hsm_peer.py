"""An independent payShield host-protocol peer for the HSM tests: raw frames over TCP and LMK
cryptograms computed here with psec (not with the emulator's own key code).

The layouts are the payShield host command reference's; the LMK is the public test LMK. A
test that builds its commands with these helpers checks the emulator against the protocol as a
third-party client writes it, not against the emulator's own client.
"""

from __future__ import annotations

import asyncio

from psec import des

from switch.hsm.lmk import Lmk

#: payShield LMK variants by the first digit of a key type code
VARIANTS = (0x00, 0xA6, 0x5A, 0x6A, 0xDE, 0x2B, 0x50, 0x74, 0x9C, 0xFA)
#: key-length variants of scheme U (double length), one per half
U_VARIANTS = (0xA6, 0x5A)
#: (LMK pair first key number, variant digit) per key type used in the tests
TYPES = {
    "ZPK": (6, 0),
    "PVK": (14, 0),
    "CVK": (14, 4),
    "TPK": (36, 7),
    "TAK": (16, 0),
    "ZAK": (26, 0),
    "MK-AC": (28, 1),
}


def lmk_pair(pair: int, variant: int, scheme_variant: int = 0) -> bytes:
    """The test LMK pair with the key type variant in byte 0 and the scheme variant in byte 8."""
    key = bytearray(Lmk.test().pairs[pair // 2])
    key[0] ^= VARIANTS[variant]
    key[8] ^= scheme_variant
    return bytes(key)


def under_lmk(clear: bytes, key_type: str, scheme: str = "U") -> str:
    """A clear DES key as the payShield LMK cryptogram of ``key_type``.

    ``U``: double length, key-length variants A6/5A; ``""`` (untagged, the legacy form):
    each 8-byte half encrypted alone under the type's LMK variant, as payShield writes a
    key pair (CVK A || CVK B, a PVK pair) without a scheme tag."""
    pair, variant = TYPES[key_type]
    if scheme == "U":
        parts = [
            des.encrypt_tdes_ecb(lmk_pair(pair, variant, sv), clear[i * 8 : i * 8 + 8])
            for i, sv in enumerate(U_VARIANTS)
        ]
        return "U" + b"".join(parts).hex().upper()
    key = lmk_pair(pair, variant)
    parts = [des.encrypt_tdes_ecb(key, clear[i : i + 8]) for i in range(0, len(clear), 8)]
    return b"".join(parts).hex().upper()


def frame(header: bytes, payload: bytes) -> bytes:
    body = header + payload
    return len(body).to_bytes(2, "big") + body


async def ask(port: int, payload: bytes, header: bytes = b"PEER") -> bytes:
    """One command on a fresh connection; returns ``response code | error code | fields``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame(header, payload))
        length = int.from_bytes(await reader.readexactly(2), "big")
        answer = await reader.readexactly(length)
        assert answer[: len(header)] == header
        return answer[len(header) :]
    finally:
        writer.close()
