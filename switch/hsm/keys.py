"""Key types, key schemes and the in-HSM key store (keys decrypted from under the LMK).

**Variant scheme (3DES keys).** A 3-digit key type code ``VPP`` names an LMK pair ``PP`` and a
variant ``V`` as on payShield: the variant byte is XORed into byte 0 of the pair's left key;
the key-length variant of the scheme tag (``U``: A6, 5A per half; ``T``: 6A, DE, 2B per third;
single-length: none) into byte 0 of the right key; each 8-byte part of the key is then
3DES-ECB encrypted under that modified pair. Cryptograms are written with the scheme tag:
``U`` + 32 hex (double), ``T`` + 48 hex (triple), 16 hex or ``Z`` + 16 hex (single). Read
also: untagged 32 hex, payShield's legacy double-length form (a PVK pair, CVK A || CVK B),
each half encrypted as a single key (no key-length variant); the command layer takes it
where payShield does (the key fields documented ``32H or 1A+32H``).
Under a ZMK (import/export) ``U``/``T`` use the ZMK with the same key-length variants and
``X``/``Y`` the plain X9.17 scheme (ECB, no variant).

**Key types (PVK vs TPK).** payShield's legacy table gives TPK, TMK and PVK the same code 002
(pair 14-15), so a PVK could be used as a TPK. This emulator uses the *PCI HSM compliant*
key type table for the terminal keys: **TPK = 70D** and **TMK = 80D** (pair 36-37, variants 7
and 8), PVK stays 002. A PVK cryptogram presented as a TPK therefore decrypts under another
LMK variant into a key with (almost certainly: 1 - 2**-16 for double length) bad parity and is
refused with the parity error 10/11, exactly as a payShield refuses a mistyped variant key;
even in the 2**-16 case the "key" is an unknown random value, so nothing leaks.

**Key blocks (``S``).** AES keys (and DES keys carried in key blocks) are TR-31 version D key
blocks protected by the key block LMK. The key type is bound to the block's key usage (below;
the numeric usages 71-73 are this emulator's proprietary codes for the key types TR-31 does not
distinguish); a block whose usage does not match the expected type is refused with 29.
"""

from __future__ import annotations

from dataclasses import dataclass

import switch_native as native

from switch.hsm import errors
from switch.hsm.lmk import Lmk

#: payShield LMK variants (index = first digit of the key type code).
VARIANTS = (0x00, 0xA6, 0x5A, 0x6A, 0xDE, 0x2B, 0x50, 0x74, 0x9C, 0xFA)
#: Key-length variants per key scheme tag (one per 8-byte part of the key).
SCHEME_VARIANTS: dict[str, tuple[int, ...]] = {
    "": (0x00,),
    "Z": (0x00,),
    "U": (0xA6, 0x5A),
    "T": (0x6A, 0xDE, 0x2B),
}
#: The last two digits of a key type code -> the first key number of its LMK pair.
LMK_PAIR_OF_CODE = {
    "00": 4,
    "01": 6,
    "02": 14,
    "03": 16,
    "04": 18,
    "05": 20,
    "06": 22,
    "07": 24,
    "08": 26,
    "09": 28,
    "0A": 30,
    "0B": 32,
    "0C": 34,
    "0D": 36,
    "0E": 38,
}


@dataclass(frozen=True, slots=True)
class KeyTypeSpec:
    code: str  # 3-char payShield key type code
    name: str
    lmk_pair: int
    variant: int
    usage: str  # TR-31 key usage for key blocks


def _spec(code: str, name: str, usage: str) -> KeyTypeSpec:
    return KeyTypeSpec(code, name, LMK_PAIR_OF_CODE[code[1:]], VARIANTS[int(code[0])], usage)


#: The key types this HSM knows, by code. ``KeyType`` values in ``switch.hsm.client`` match.
KEY_TYPES: dict[str, KeyTypeSpec] = {
    s.code: s
    for s in (
        _spec("000", "ZMK", "K0"),
        _spec("001", "ZPK", "P0"),
        _spec("002", "PVK", "V2"),
        _spec("70D", "TPK", "71"),
        _spec("80D", "TMK", "72"),
        _spec("003", "TAK", "M3"),
        _spec("008", "ZAK", "73"),
        _spec("402", "CVK", "C0"),
        _spec("109", "MK-AC", "E0"),
    )
}
ZMK, ZPK, PVK, TPK, TMK, TAK, ZAK, CVK, MK_AC = (
    KEY_TYPES["000"],
    KEY_TYPES["001"],
    KEY_TYPES["002"],
    KEY_TYPES["70D"],
    KEY_TYPES["80D"],
    KEY_TYPES["003"],
    KEY_TYPES["008"],
    KEY_TYPES["402"],
    KEY_TYPES["109"],
)

#: Hex length of the key after each scheme tag (``S`` key blocks carry their own length).
SCHEME_HEX_LENGTH = {"Z": 16, "U": 32, "X": 32, "T": 48, "Y": 48}
_HEX = frozenset("0123456789ABCDEFabcdef")


def key_type(code: str) -> KeyTypeSpec:
    spec = KEY_TYPES.get(code.upper())
    if spec is None:
        errors.fail(errors.INVALID_KEY_TYPE, f"key type: {code!r} is not supported")
    return spec


def key_field_length(text: str, pos: int) -> int:
    """Length of the key field starting at ``text[pos]`` (scheme tag included)."""
    if pos >= len(text):
        errors.fail(errors.INVALID_INPUT, "key: missing")
    tag = text[pos]
    if tag in SCHEME_HEX_LENGTH:
        return 1 + SCHEME_HEX_LENGTH[tag]
    if tag == "S":
        length = text[pos + 2 : pos + 6]
        if len(length) != 4 or not length.isdigit():
            errors.fail(errors.INVALID_INPUT, "key: key block length is not 4 digits")
        return 1 + int(length)
    if tag in _HEX:
        return 16
    errors.fail(errors.INVALID_KEY_SCHEME, f"key: unknown key scheme {tag!r}")


def split_scheme(key: str) -> tuple[str, str]:
    """``"U0123..."`` -> ``("U", "0123...")``; a bare 16- or 32-hex key has the empty tag."""
    if not key:
        errors.fail(errors.INVALID_INPUT, "key: empty")
    tag = key[0].upper()
    if tag == "S":
        return "S", key[1:]
    if tag in SCHEME_HEX_LENGTH:
        body = key[1:]
        expected = SCHEME_HEX_LENGTH[tag]
    elif len(key) in (16, 32):  # untagged: single, or the legacy double form (a key pair)
        tag, body, expected = "", key, len(key)
    else:
        errors.fail(errors.INVALID_KEY_SCHEME, f"key: unknown key scheme {key[0]!r}")
    if len(body) != expected or not _HEX.issuperset(body):
        errors.fail(errors.INVALID_INPUT, f"key: scheme {tag or 'single'} needs {expected} hex")
    return tag, body


def scheme_for_length(length: int) -> str:
    return {8: "Z", 16: "U", 24: "T"}[length]


class KeyEntry:
    """A key decrypted inside the HSM: clear bytes, algorithm and check value (safe to log)."""

    __slots__ = ("algorithm", "check_value", "key")

    def __init__(self, key: bytes, algorithm: str, check_value: str) -> None:
        self.key = key
        self.algorithm = algorithm  # "des" or "aes"
        self.check_value = check_value


def check_value(key: bytes, algorithm: str = "des") -> str:
    return native.key_check_value(key, algorithm, 3).hex().upper()


class KeyStore:
    """Encrypts keys under the LMK and decrypts (with a bounded cache) for use inside the HSM.

    The cache maps (cryptogram, key type code) to the clear key. It lives only in HSM memory
    and makes a repeated key cost one dict lookup, so a hot command is ~one native call.
    """

    MAX_CACHE = 100_000

    def __init__(self, lmk: Lmk) -> None:
        self.lmk = lmk
        #: one cache per key type code (so a lookup is one dict get on the cryptogram)
        self.caches: dict[str, dict[str, KeyEntry]] = {code: {} for code in KEY_TYPES}

    # ---- under the LMK -------------------------------------------------------------------

    def decrypt(self, key: str, spec: KeyTypeSpec, parity_code: str = "10") -> KeyEntry:
        """The clear key of an LMK cryptogram of type ``spec``; refuses a mistyped key."""
        cache = self.caches[spec.code]
        entry = cache.get(key)
        if entry is not None:
            return entry
        tag, body = split_scheme(key)
        if tag == "S":
            entry = self._unwrap_block(body, spec)
        elif tag in ("X", "Y"):
            errors.fail(errors.INVALID_KEY_SCHEME, "key: X/Y schemes exist only under a ZMK")
        else:
            # Untagged 32 hex is payShield's legacy double-length form (a PVK pair, CVK A || B):
            # each half encrypted alone under the type's LMK variant, no key-length variant.
            variants = SCHEME_VARIANTS[tag] if tag else (0x00,) * (len(body) // 16)
            clear = b"".join(
                native.des_decrypt_ecb(
                    self.lmk.variant_key(spec.lmk_pair, spec.variant, sv),
                    bytes.fromhex(body[i * 16 : i * 16 + 16]),
                )
                for i, sv in enumerate(variants)
            )
            if not native.key_parity_is_odd(clear):
                errors.fail(parity_code, f"{spec.name} key parity error (wrong key or key type)")
            entry = KeyEntry(clear, "des", check_value(clear))
        if len(cache) >= self.MAX_CACHE:
            cache.clear()
        cache[key] = entry
        return entry

    def encrypt(
        self, clear: bytes, spec: KeyTypeSpec, scheme: str | None = None, algorithm: str = "des"
    ) -> str:
        """A clear key (inside the HSM) as a cryptogram under the LMK."""
        if scheme == "S":
            return "S" + self._wrap_block(clear, spec, algorithm)
        if algorithm != "des":
            errors.fail(errors.INVALID_KEY_SCHEME, "key scheme: AES keys need scheme S")
        tag = scheme or scheme_for_length(len(clear))
        variants = SCHEME_VARIANTS.get(tag)
        if variants is None or len(variants) * 8 != len(clear):
            errors.fail(errors.INVALID_KEY_SCHEME, f"key scheme {tag!r} does not fit the key")
        body = b"".join(
            native.des_encrypt_ecb(
                self.lmk.variant_key(spec.lmk_pair, spec.variant, sv), clear[i * 8 : i * 8 + 8]
            )
            for i, sv in enumerate(variants)
        )
        return ("" if tag == "Z" and len(clear) == 8 else tag) + body.hex().upper()

    # ---- under a ZMK (key exchange) ------------------------------------------------------

    @staticmethod
    def encrypt_under_zmk(zmk: bytes, clear: bytes, scheme: str) -> str:
        if scheme in ("U", "T"):
            variants = SCHEME_VARIANTS[scheme]
        elif scheme in ("X", "Y", "Z", ""):
            variants = (0,) * (len(clear) // 8)
        else:
            errors.fail(errors.INVALID_KEY_SCHEME, f"key scheme (ZMK): {scheme!r}")
        if len(variants) * 8 != len(clear):
            errors.fail(errors.INCOMPATIBLE_KEY_LENGTH, "key scheme (ZMK) does not fit the key")
        parts = []
        for i, sv in enumerate(variants):
            k = bytearray(zmk)
            k[8] ^= sv
            parts.append(native.des_encrypt_ecb(bytes(k), clear[i * 8 : i * 8 + 8]))
        tag = "" if scheme in ("Z", "") else scheme
        return tag + b"".join(parts).hex().upper()

    @staticmethod
    def decrypt_under_zmk(zmk: bytes, key: str) -> bytes:
        tag, body = split_scheme(key)
        if tag in ("U", "T"):
            variants = SCHEME_VARIANTS[tag]
        elif tag in ("X", "Y", "Z", ""):
            variants = (0,) * (len(body) // 16)
        else:
            errors.fail(errors.INVALID_KEY_SCHEME, f"key under ZMK: scheme {tag!r}")
        parts = []
        for i, sv in enumerate(variants):
            k = bytearray(zmk)
            k[8] ^= sv
            parts.append(
                native.des_decrypt_ecb(bytes(k), bytes.fromhex(body[i * 16 : i * 16 + 16]))
            )
        return b"".join(parts)

    # ---- key blocks ----------------------------------------------------------------------

    def _wrap_block(self, clear: bytes, spec: KeyTypeSpec, algorithm: str) -> str:
        tag = "A" if algorithm == "aes" else "T"
        return native.tr31_wrap(self.lmk.keyblock, block_header(spec, tag), clear)

    def _unwrap_block(self, block: str, spec: KeyTypeSpec) -> KeyEntry:
        try:
            header, clear = native.tr31_unwrap(self.lmk.keyblock, block)
        except ValueError as exc:
            errors.fail(errors.INVALID_INPUT, f"key block: {exc}")
        if header[5:7] != spec.usage:
            errors.fail(
                errors.KEY_FUNCTION_NOT_PERMITTED,
                f"key block usage {header[5:7]!r} is not a {spec.name}",
            )
        algorithm = "aes" if header[7] == "A" else "des"
        return KeyEntry(clear, algorithm, check_value(clear, algorithm))


def block_header(spec: KeyTypeSpec, algorithm: str) -> str:
    """TR-31 version D header: usage, algorithm, mode B (both), version 00, non-exportable."""
    return f"D0000{spec.usage}{algorithm}B00N0000"
