"""Type stubs for the compiled core (keep in step with native/src/*.rs).

Two sections, one per area; each area's engineer edits only its own section.
"""

__version__: str

# ---- iso8583 (native/src/iso.rs) --------------------------------------------------------
# Contract used by switch/iso8583. Values: str for n/z/ans/x+n fields, bytes for b fields. Field
# numbers 2..128 (1 is the secondary bitmap, computed). Errors carry field/offset/part/reason.
# The GIL is held (a message takes ~1 us, less than a GIL round trip).

from collections.abc import Iterable
from typing import Any, Protocol, Self

class Iso8583Error(ValueError):
    field: int | None
    offset: int
    part: str
    reason: str

class Iso8583DecodeError(Iso8583Error): ...
class Iso8583EncodeError(Iso8583Error): ...
class SpecError(ValueError): ...

class TlvError(ValueError):
    offset: int
    reason: str

class Spec:
    """A compiled ISO 8583 spec; build once, reuse for every message."""

    def __new__(
        cls,
        name: str,
        mti: str,
        bitmap: str,
        fields: list[tuple[int, str, str, str, str, int, str]],
    ) -> Spec: ...
    @staticmethod
    def builtin(name: str) -> Spec: ...
    @property
    def name(self) -> str: ...
    @property
    def mti_encoding(self) -> str: ...
    @property
    def bitmap_encoding(self) -> str: ...
    def fields(self) -> list[tuple[int, str, str, str, str, int, str]]: ...
    def is_binary(self, n: int) -> bool | None: ...
    def decode(self, data: bytes) -> tuple[str, dict[int, str | bytes]]: ...
    def encode(self, mti: str, fields: dict[int, str | bytes]) -> bytes: ...
    def decode_partial(
        self, data: bytes
    ) -> tuple[str | None, dict[int, str | bytes], Iso8583DecodeError | None]: ...
    def peek_mti(self, data: bytes) -> str | None: ...

class MessageBase:
    """Native storage of switch.iso8583.message.Message: mti (str) + fields (dict)."""

    def __new__(cls, mti: str, fields: dict[int, str | bytes] | None = None) -> Self: ...
    @property
    def mti(self) -> str: ...
    @property
    def fields(self) -> dict[int, str | bytes]: ...
    def __eq__(self, other: object) -> bool: ...

class CodecBase:
    """Native codec: a compiled spec plus the MessageBase subclass that decode builds."""

    def __new__(cls, spec: Spec, message_class: type[MessageBase]) -> Self: ...
    @property
    def spec(self) -> Spec: ...
    def decode(self, data: bytes | bytearray | memoryview) -> Any: ...
    def salvage(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[Any | None, Iso8583DecodeError | None]: ...
    def encode(self, message: MessageBase) -> bytes: ...

class _TlvLike(Protocol):
    @property
    def tag(self) -> int: ...
    @property
    def value(self) -> bytes: ...
    @property
    def children(self) -> Iterable[_TlvLike] | None: ...

_TlvTuple = tuple[int, bytes, "list[_TlvTuple] | None"]

def tlv_parse(data: bytes) -> list[_TlvTuple]: ...
def tlv_build(nodes: Iterable[_TlvLike]) -> bytes: ...


# ---- crypto (native/src/crypto.rs) ------------------------------------------------------
# Contract used by switch/hsm. Keys are clear key bytes (the HSM decrypts them from under the
# LMK first): DES keys 8/16/24 bytes, AES keys 16/24/32. PANs are the full PAN as digits.
# PIN block formats are ISO 9564 format numbers 0, 1, 3 (8-byte blocks, 3DES) and 4
# (16-byte blocks, AES). Errors raise ValueError with a message naming the argument.

class CryptoError(ValueError): ...

def des_encrypt_ecb(key: bytes, data: bytes) -> bytes: ...
def des_decrypt_ecb(key: bytes, data: bytes) -> bytes: ...
def des_encrypt_cbc(key: bytes, iv: bytes, data: bytes) -> bytes: ...
def des_decrypt_cbc(key: bytes, iv: bytes, data: bytes) -> bytes: ...
def aes_encrypt_ecb(key: bytes, data: bytes) -> bytes: ...
def aes_decrypt_ecb(key: bytes, data: bytes) -> bytes: ...
def aes_encrypt_cbc(key: bytes, iv: bytes, data: bytes) -> bytes: ...
def aes_decrypt_cbc(key: bytes, iv: bytes, data: bytes) -> bytes: ...
def key_check_value(key: bytes, algorithm: str = "des", length: int = 3) -> bytes:
    """KCV: first ``length`` bytes of E(key, zeros) ("des") or AES-CMAC of zeros ("aes")."""

def adjust_key_parity(key: bytes) -> bytes: ...
def key_parity_is_odd(key: bytes) -> bool: ...
def constant_time_eq(a: bytes, b: bytes) -> bool: ...
def pin_block_encode(fmt: int, pin: str, pan: str) -> bytes:
    """Clear PIN block (random fill from the OS RNG for formats 1, 3, 4).

    PIN: 4-12 digits; PAN: 13-19 digits (ignored for format 1). For format 4 the clear block is
    the 16-byte plain-text PIN field: the PAN is bound only by the AES encryption.
    """

def pin_block_decode(fmt: int, block: bytes, pan: str) -> str: ...
def pin_block_encrypt(key: bytes, fmt: int, pin: str, pan: str) -> bytes:
    """Build and encrypt in one call (3DES for formats 0/1/3, AES for format 4)."""

def pin_block_translate(
    src_key: bytes, src_fmt: int, dst_key: bytes, dst_fmt: int, block: bytes, pan: str
) -> bytes:
    """Decrypt, re-format and re-encrypt without the clear PIN leaving Rust.

    Refuses format 0/3 -> 1 (ISO 9564 / PCI: a PAN-bound block never becomes unbound).
    """

def pin_block_pin_length(key: bytes, fmt: int, block: bytes, pan: str) -> int:
    """Length of the PIN inside an encrypted block (validation without revealing it)."""

def pvv_generate(pvk: bytes, pan: str, pvki: int, pin: str) -> str: ...
def pvv_verify(
    pin_key: bytes, fmt: int, block: bytes, pan: str, pvk: bytes, pvki: int, pvv: str
) -> bool:
    """Decrypt the PIN block under ``pin_key`` (TPK/ZPK) and check it against the PVV."""

def ibm3624_offset_generate(
    pvk: bytes, pin: str, validation_data: str, decimalisation_table: str, check_length: int
) -> str: ...
def ibm3624_verify(
    pin_key: bytes,
    fmt: int,
    block: bytes,
    pan: str,
    pvk: bytes,
    offset: str,
    validation_data: str,
    decimalisation_table: str,
    check_length: int,
) -> bool: ...
def cvv_generate(cvk: bytes, pan: str, expiry_yymm: str, service_code: str) -> str:
    """Visa CVV/CVV2/iCVV. ``cvk`` is CVK A || CVK B (16 bytes). CVV2: service code 000."""

def cvv_verify(cvk: bytes, pan: str, expiry_yymm: str, service_code: str, cvv: str) -> bool: ...
def emv_derive_icc_master_key_option_a(imk: bytes, pan: str, pan_sequence: str) -> bytes: ...
def emv_derive_common_session_key(icc_master_key: bytes, atc: bytes) -> bytes:
    """EMV common session key; ``atc`` is the 2-byte ATC (R = ATC || 00*6) or a whole 8-byte R."""

def emv_generate_ac(session_key: bytes, data: bytes) -> bytes:
    """Application cryptogram: ISO 9797-1 MAC algorithm 3, padding method 2 (0x80)."""

def emv_verify_ac(session_key: bytes, data: bytes, ac: bytes) -> bool:
    """Constant-time check of an ARQC/TC/AAC (added beside the original contract)."""

def emv_arpc_method1(session_key: bytes, arqc: bytes, arc: bytes) -> bytes: ...
def emv_arpc_method2(
    session_key: bytes, arqc: bytes, csu: bytes, proprietary_auth_data: bytes = b""
) -> bytes: ...
def mac_iso9797_1_alg1(key: bytes, data: bytes, padding: int = 1) -> bytes: ...
def mac_iso9797_1_alg3(key: bytes, data: bytes, padding: int = 1) -> bytes: ...
def tr31_wrap(kbpk: bytes, header: str, key: bytes) -> str:
    """TR-31 key block, version D (AES key block protection key).

    ``header``: 16 characters plus optional blocks, a multiple of 16 characters in all; its
    length field is filled in. The key length is masked to 24 bytes (algorithm T/D) or 32 (A).
    """

def tr31_unwrap(kbpk: bytes, key_block: str) -> tuple[str, bytes]:
    """Returns (header, key); raises CryptoError on a bad MAC or layout."""

def clear_key_cache() -> None:
    """Wipe the calling thread's cache of DES/3DES key schedules (64 most recent clear keys,
    kept so repeated TPK/ZPK use skips the key schedule); e.g. after the HSM reloads keys."""
