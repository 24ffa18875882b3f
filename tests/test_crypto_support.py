"""Helpers (no tests) for the payment-crypto tests: seeded inputs and the warning filter.

psec drives `cryptography`'s TripleDES, which `cryptography` 50 flags as deprecated (two-key
3DES in particular); the warnings come from the reference library, not from our code.
"""

from __future__ import annotations

import random

import pytest

IGNORE_3DES_DEPRECATION = pytest.mark.filterwarnings(
    "ignore::cryptography.utils.CryptographyDeprecationWarning"
)

CASES = 200


def rng(seed: int) -> random.Random:
    """A seeded generator so a failure is reproducible from the test name alone."""
    return random.Random(seed)


def digits(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(n))


def rand_bytes(r: random.Random, n: int) -> bytes:
    return r.randbytes(n)


def pan(r: random.Random) -> str:
    return digits(r, r.randint(13, 19))


def pin(r: random.Random) -> str:
    return digits(r, r.randint(4, 12))


def tdes_key(r: random.Random) -> bytes:
    return r.randbytes(r.choice([16, 24]))


def aes_key(r: random.Random) -> bytes:
    return r.randbytes(r.choice([16, 24, 32]))


def expand_2key(key: bytes) -> bytes:
    """K1||K2 -> K1||K2||K1, the same cipher, accepted by `cryptography` without deprecation."""
    return key + key[:8] if len(key) == 16 else key
