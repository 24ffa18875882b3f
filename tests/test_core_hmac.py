"""``HmacSha256`` is HMAC-SHA256: RFC 4231 vectors, and the standard library on random keys."""

from __future__ import annotations

import hmac
import random

import pytest

from switch.core.hmac_sha256 import HmacSha256

# RFC 4231 test cases 1, 2 and 6 (6: a 131-byte key, hashed first)
RFC4231 = [
    (bytes([0x0B] * 20), b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (bytes([0xAA] * 131), b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "msg", "mac"), RFC4231)
def test_rfc4231_vectors(key: bytes, msg: bytes, mac: str) -> None:
    assert HmacSha256(key).digest(msg).hex() == mac


def test_matches_the_standard_library_and_is_reusable() -> None:
    rng = random.Random(4231)
    for _ in range(200):
        key = rng.randbytes(rng.choice([0, 1, 16, 32, 63, 64, 65, 200]))
        h = HmacSha256(key)
        for _ in range(3):  # the prepared states are copied, never consumed
            msg = rng.randbytes(rng.randrange(0, 300))
            assert h.digest(msg) == hmac.digest(key, msg, "sha256")
