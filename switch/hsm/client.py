"""``HsmClient``: the one interface through which the switch asks for cryptography.

Two implementations share it: in-process (direct calls into the software HSM, the embedded
default) and TCP (payShield-style host protocol, against ``switch hsm serve`` or a real
payShield). Keys are passed as they live outside the HSM: cryptograms under the LMK, written
as payShield does (``U`` + 32 hex for a double-length variant key, ``T`` + 48 hex for triple,
``S`` + key block for TR-31 / AES). Clear PINs and clear keys never cross this interface,
except the demo/personalisation calls marked *authorised state*, which the HSM refuses
unless it was put in that state.

Verification results are booleans (payShield error code 01 -> ``False``); every other
failure raises ``HsmError`` carrying the payShield error code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class KeyType(enum.StrEnum):
    """Key types as payShield names them (3-digit codes are the variant-scheme key type codes)."""

    ZMK = "000"
    ZPK = "001"
    PVK = "002"
    # payShield's legacy table gives TPK/TMK/PVK the same 002; like payShield's PCI HSM
    # compliant key type table the emulator gives the terminal keys their own LMK variants
    # (pair 36-37, variants 7 and 8) so a PVK is refused as a TPK. See switch.hsm.keys.
    TPK = "70D"
    TMK = "80D"
    TAK = "003"
    CVK = "402"
    ZAK = "008"
    MK_AC = "109"  # EMV issuer master key for application cryptograms


class HsmError(Exception):
    """A command failed with a payShield error code other than 00 (and 01 for verifies)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"HSM error {code}: {message}")
        self.code = code
        self.message = message


class HsmUnavailableError(HsmError):
    """The HSM could not be reached or did not answer in time (code ``"UN"``, not payShield's).

    The outcome of the command is unknown; callers treat it as a system malfunction."""

    def __init__(self, message: str) -> None:
        super().__init__("UN", message)


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    key_under_lmk: str
    check_value: str  # 6 hex digits (KCV), safe to log
    key_under_zmk: str | None = None


class HsmClient(Protocol):
    """Async interface to an HSM. Implementations: in-process and TCP (switch.hsm)."""

    async def diagnostics(self) -> str:
        """NC: returns the LMK check value (16 hex)."""
        ...

    async def generate_key(
        self, key_type: KeyType, zmk: str | None = None, triple: bool = False
    ) -> GeneratedKey:
        """A0: a random key under the LMK (and under ``zmk`` when given)."""
        ...

    async def key_check_value(self, key_type: KeyType, key: str) -> str:
        """BU: the key's check value (6 hex)."""
        ...

    async def import_key(self, key_type: KeyType, zmk: str, key_under_zmk: str) -> GeneratedKey:
        """A6: a key received under a ZMK, returned under the LMK."""
        ...

    async def export_key(self, key_type: KeyType, zmk: str, key: str) -> GeneratedKey:
        """A8: a key under the LMK, returned under a ZMK for a partner."""
        ...

    async def form_key_from_clear_components(
        self, key_type: KeyType, components: list[str]
    ) -> GeneratedKey:
        """Authorised state only: load demo / ceremony keys from clear components (hex)."""
        ...

    async def translate_pin_tpk_to_zpk(
        self,
        tpk: str,
        zpk: str,
        pin_block: bytes,
        pan: str,
        src_format: str = "01",
        dst_format: str = "01",
    ) -> bytes:
        """CA: PIN block under a terminal TPK re-encrypted under a ZPK."""
        ...

    async def translate_pin_zpk_to_zpk(
        self,
        src_zpk: str,
        dst_zpk: str,
        pin_block: bytes,
        pan: str,
        src_format: str = "01",
        dst_format: str = "01",
    ) -> bytes:
        """CC: PIN block from one zone key to another."""
        ...

    async def verify_pin_pvv(
        self,
        pin_key: str,
        pvk: str,
        pin_block: bytes,
        pan: str,
        pvki: int,
        pvv: str,
        pin_format: str = "01",
        interchange: bool = False,
    ) -> bool:
        """DC (under a TPK) or EC (``interchange``: under a ZPK): Visa PVV verification."""
        ...

    async def verify_pin_ibm(
        self,
        pin_key: str,
        pvk: str,
        pin_block: bytes,
        pan: str,
        offset: str,
        decimalisation_table: str,
        validation_data: str,
        check_length: int = 4,
        pin_format: str = "01",
        interchange: bool = False,
    ) -> bool:
        """DA (TPK) or EA (ZPK): IBM 3624 offset verification.

        ``decimalisation_table``: ``K`` + 3 hex, the index of a table the HSM holds (what the
        switch sends: ``K000``), or 16 characters, a clear or LMK-encrypted table as the HSM
        is configured. A weak table is refused (error 25): see ``switch/hsm/README.md``."""
        ...

    async def encrypt_pin(self, pin: str, pan: str) -> str:
        """BA, authorised state only: a clear PIN to the LMK-encrypted PIN (personalisation)."""
        ...

    async def generate_pvv(self, pvk: str, lmk_pin: str, pan: str, pvki: int) -> str:
        """DG: PVV from an LMK-encrypted PIN (card personalisation)."""
        ...

    async def generate_cvv(self, cvk: str, pan: str, expiry: str, service_code: str) -> str:
        """CW: CVV / CVV2 (service code 000) / iCVV (999). ``expiry`` is YYMM."""
        ...

    async def verify_cvv(
        self, cvk: str, pan: str, expiry: str, service_code: str, cvv: str
    ) -> bool:
        """CY: constant-time check of a CVV / CVV2 / iCVV."""
        ...

    async def verify_arqc(
        self,
        mk_ac: str,
        pan: str,
        pan_sequence: str,
        atc: bytes,
        unpredictable_number: bytes,
        transaction_data: bytes,
        arqc: bytes,
        arc: bytes,
        method: int = 1,
        csu: bytes | None = None,
    ) -> bytes | None:
        """KQ: verify the ARQC; on success return the ARPC (method 1 or 2), else ``None``."""
        ...

    async def generate_mac(self, key_type: KeyType, key: str, data: bytes) -> bytes:
        """M6: ISO 9797-1 algorithm 3 (retail MAC) under a TAK/ZAK."""
        ...

    async def verify_mac(self, key_type: KeyType, key: str, data: bytes, mac: bytes) -> bool:
        """M8: constant-time MAC verification."""
        ...

    async def close(self) -> None:
        """Release connections (TCP) or nothing (in-process)."""
        ...
