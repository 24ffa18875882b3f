"""The Local Master Key: the one secret every key outside the HSM is encrypted under.

Two LMKs live side by side, as on a payShield with a variant LMK and a key block LMK loaded:

* the **variant LMK**: 20 single-length DES keys forming the pairs 00-01 .. 38-39; a key type
  selects a pair and a variant (see ``switch.hsm.keys``);
* the **key block LMK**: a 256-bit AES key used as the TR-31 key block protection key for
  ``S`` keys (AES keys, and DES keys carried in key blocks).

This emulator is for development and tests only. It ships one fixed test LMK
(``Lmk.test()``, modelled on the well-known payShield test LMK, whose values are public) and
can create a random development LMK at first start (``Lmk.load_or_create``), stored as JSON
with file mode 0600 in the state directory. A production deployment uses a real HSM.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import switch_native as native

#: The pair numbers of a variant LMK: 00-01, 02-03, ... 38-39 (the first key of each pair).
PAIR_NUMBERS = tuple(range(0, 40, 2))

# The fixed test LMK: the public payShield test LMK pairs (odd parity), as 16-byte hex.
_TEST_PAIRS = (
    "01010101010101017902CD1FD36EF8BA",
    "20202020202020203131313131313131",
    "40404040404040405151515151515151",
    "61616161616161617070707070707070",
    "80808080808080809191919191919191",
    "A1A1A1A1A1A1A1A1B0B0B0B0B0B0B0B0",
    "C1C1010101010101D0D0010101010101",
    "E0E0010101010101F1F1010101010101",
    "1C587F1C13924FEF0101010101010101",
    "01010101010101010101010101010101",
    "02020202020202020404040404040404",
    "07070707070707071010101010101010",
    "13131313131313131515151515151515",
    "16161616161616161919191919191919",
    "1A1A1A1A1A1A1A1A1C1C1C1C1C1C1C1C",
    "23232323232323232525252525252525",
    "26262626262626262929292929292929",
    "2A2A2A2A2A2A2A2A2C2C2C2C2C2C2C2C",
    "2F2F2F2F2F2F2F2F3131313131313131",
    "01010101010101014040404040404040",
)
_TEST_KEYBLOCK = "9B71333A13F9FAE72F9D0E2DAB4AD6784718012F9244033F3F26A2DE0C8AA11A"


class LmkError(ValueError):
    """The LMK file or configuration is unreadable or malformed (names the field)."""


@dataclass(frozen=True)
class Lmk:
    """A variant LMK (10 pairs of double-length DES keys) and a key block LMK (AES-256)."""

    pairs: tuple[bytes, ...]
    keyblock: bytes
    is_test: bool = False
    _variant_cache: dict[tuple[int, int, int], bytes] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if len(self.pairs) != len(PAIR_NUMBERS) or any(len(p) != 16 for p in self.pairs):
            raise LmkError("pairs: need 20 pairs of 16 bytes (LMK 00-01 .. 38-39)")
        if len(self.keyblock) != 32:
            raise LmkError("keyblock: need a 32-byte AES key block LMK")

    def __repr__(self) -> str:  # never print key material
        return f"Lmk(check_value={self.check_value()}, test={self.is_test})"

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def test(cls) -> Lmk:
        """The fixed, public test LMK (identical on every machine; never for real cards)."""
        return cls(
            pairs=tuple(bytes.fromhex(p) for p in _TEST_PAIRS),
            keyblock=bytes.fromhex(_TEST_KEYBLOCK),
            is_test=True,
        )

    @classmethod
    def generate(cls) -> Lmk:
        """A random development LMK from the OS RNG (odd parity DES keys)."""
        pairs = tuple(native.adjust_key_parity(secrets.token_bytes(16)) for _ in PAIR_NUMBERS)
        return cls(pairs=pairs, keyblock=secrets.token_bytes(32))

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Lmk:
        """Load from configuration: ``{"pairs": [20 x 32 hex], "keyblock": 64 hex}``."""
        raw_pairs = data.get("pairs")
        raw_kb = data.get("keyblock")
        if not isinstance(raw_pairs, list) or not all(isinstance(p, str) for p in raw_pairs):
            raise LmkError("pairs: expected a list of 20 hex strings")
        if not isinstance(raw_kb, str):
            raise LmkError("keyblock: expected a hex string")
        try:
            pairs = tuple(bytes.fromhex(p) for p in raw_pairs)
            keyblock = bytes.fromhex(raw_kb)
        except ValueError as exc:
            raise LmkError(f"pairs/keyblock: not hex ({exc})") from None
        return cls(pairs=pairs, keyblock=keyblock, is_test=bool(data.get("test", False)))

    def to_dict(self) -> dict[str, object]:
        return {
            "note": "switch software HSM development LMK - for development and tests only",
            "pairs": [p.hex().upper() for p in self.pairs],
            "keyblock": self.keyblock.hex().upper(),
            "test": self.is_test,
            "check_value": self.check_value(),
        }

    @classmethod
    def load(cls, path: Path) -> Lmk:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LmkError(f"{path}: cannot read LMK ({exc})") from None
        if not isinstance(data, dict):
            raise LmkError(f"{path}: expected a JSON object")
        return cls.from_dict(data)

    @classmethod
    def load_or_create(cls, path: Path | str) -> Lmk:
        """Load the LMK at ``path``; at first start create a random one there, mode 0600."""
        path = Path(path)
        if path.exists():
            return cls.load(path)
        lmk = cls.generate()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(lmk.to_dict(), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, never overwrites: a concurrent first start wins once
        except FileExistsError:
            return cls.load(path)
        finally:
            os.unlink(tmp)
        return lmk

    # ---- use -----------------------------------------------------------------------------

    def pair(self, first: int) -> bytes:
        """The 16-byte LMK pair whose first key number is ``first`` (0, 2, ... 38)."""
        if first not in PAIR_NUMBERS:
            raise LmkError(f"pair: {first:02d} is not an LMK pair number")
        return self.pairs[first // 2]

    def variant_key(self, first: int, variant: int, scheme_variant: int) -> bytes:
        """The LMK pair with the key-type variant XORed into byte 0 of its left key and the
        key-length (scheme) variant XORed into byte 0 of its right key, as payShield does."""
        cache_key = (first, variant, scheme_variant)
        key = self._variant_cache.get(cache_key)
        if key is None:
            base = bytearray(self.pair(first))
            base[0] ^= variant
            base[8] ^= scheme_variant
            key = bytes(base)
            self._variant_cache[cache_key] = key
        return key

    def check_value(self) -> str:
        """LMK check value (16 hex): pair 00-01 encrypting zeros; reported by NC and at start."""
        return native.des_encrypt_ecb(self.pairs[0], bytes(8)).hex().upper()
