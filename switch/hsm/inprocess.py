"""``InProcessHsm``: the ``HsmClient`` that calls the software HSM's command core directly.

The embedded default of ``switch run``: no sockets, no string formatting on the hot path; a
PIN translation with cached keys is one dict lookup per key and one native call. Errors the
core did not audit itself (bad input found before a command's keys were known) are audited
here, with the command code, so every command leaves one audit record as over TCP.
"""

from __future__ import annotations

from switch.hsm.audit import Audit
from switch.hsm.client import GeneratedKey, HsmError, KeyType
from switch.hsm.core import HsmCore
from switch.hsm.dectables import DecTables
from switch.hsm.errors import INVALID_INPUT, AuditedHsmError
from switch.hsm.lmk import Lmk
from switch.hsm.pinwatch import PinFailureWatch


def _scheme_of(key: str) -> str:
    return "T" if key[:1] in ("T", "Y") else "U"


class InProcessHsm:
    """The software HSM in this process, behind the ``HsmClient`` interface."""

    def __init__(
        self,
        lmk: Lmk,
        authorised: bool = False,
        audit: Audit | None = None,
        dec_tables: DecTables | None = None,
        pin_watch: PinFailureWatch | None = None,
    ) -> None:
        self.core = HsmCore(
            lmk, authorised=authorised, audit=audit, dec_tables=dec_tables, pin_watch=pin_watch
        )
        self._tpk_to_zpk = self.core.translate_pin_tpk_to_zpk

    def _audit_error(self, command: str, exc: HsmError) -> None:
        if not isinstance(exc, AuditedHsmError):
            self.core.audit.record(command, exc.code)

    async def diagnostics(self) -> str:
        return self.core.diagnostics()

    async def generate_key(
        self,
        key_type: KeyType,
        zmk: str | None = None,
        triple: bool = False,
        key_scheme: str | None = None,
    ) -> GeneratedKey:
        """A0. ``key_scheme="S"``: a key block (AES-128 for a ZPK/TPK)."""
        try:
            under_lmk, under_zmk, kcv = self.core.generate_key(
                key_type.value, key_scheme or ("T" if triple else "U"), zmk, "Y" if triple else "X"
            )
        except HsmError as exc:
            self._audit_error("A0", exc)
            raise
        return GeneratedKey(under_lmk, kcv, under_zmk)

    async def key_check_value(self, key_type: KeyType, key: str) -> str:
        try:
            return self.core.key_check_value(key_type.value, key)
        except HsmError as exc:
            self._audit_error("BU", exc)
            raise

    async def import_key(self, key_type: KeyType, zmk: str, key_under_zmk: str) -> GeneratedKey:
        try:
            under_lmk, kcv = self.core.import_key(
                key_type.value, zmk, key_under_zmk, _scheme_of(key_under_zmk)
            )
        except HsmError as exc:
            self._audit_error("A6", exc)
            raise
        return GeneratedKey(under_lmk, kcv)

    async def export_key(self, key_type: KeyType, zmk: str, key: str) -> GeneratedKey:
        try:
            under_zmk, kcv = self.core.export_key(
                key_type.value, zmk, key, "Y" if _scheme_of(key) == "T" else "X"
            )
        except HsmError as exc:
            self._audit_error("A8", exc)
            raise
        return GeneratedKey(key, kcv, under_zmk)

    async def form_key_from_clear_components(
        self, key_type: KeyType, components: list[str], key_scheme: str | None = None
    ) -> GeneratedKey:
        """FK (authorised state). ``key_scheme="S"`` forms an AES key in a key block."""
        try:
            try:
                parts = [bytes.fromhex(c) for c in components]
            except ValueError:
                raise HsmError(INVALID_INPUT, "components: not hex") from None
            under_lmk, kcv = self.core.form_key_from_components(key_type.value, parts, key_scheme)
        except HsmError as exc:
            self._audit_error("FK", exc)
            raise
        return GeneratedKey(under_lmk, kcv)

    async def translate_pin_tpk_to_zpk(
        self,
        tpk: str,
        zpk: str,
        pin_block: bytes,
        pan: str,
        src_format: str = "01",
        dst_format: str = "01",
    ) -> bytes:
        try:
            return self._tpk_to_zpk(tpk, zpk, pin_block, pan, src_format, dst_format)
        except HsmError as exc:
            self._audit_error("CA", exc)
            raise

    async def translate_pin_zpk_to_zpk(
        self,
        src_zpk: str,
        dst_zpk: str,
        pin_block: bytes,
        pan: str,
        src_format: str = "01",
        dst_format: str = "01",
    ) -> bytes:
        try:
            return self.core.translate_pin_zpk_to_zpk(
                src_zpk, dst_zpk, pin_block, pan, src_format, dst_format
            )
        except HsmError as exc:
            self._audit_error("CC", exc)
            raise

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
        try:
            return self.core.verify_pin_pvv(
                pin_key, pvk, pin_block, pan, pvki, pvv, pin_format, interchange
            )
        except HsmError as exc:
            self._audit_error("EC" if interchange else "DC", exc)
            raise

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
        try:
            return self.core.verify_pin_ibm(
                pin_key,
                pvk,
                pin_block,
                pan,
                offset,
                decimalisation_table,
                validation_data,
                check_length,
                pin_format,
                interchange,
            )
        except HsmError as exc:
            self._audit_error("EA" if interchange else "DA", exc)
            raise

    async def encrypt_decimalisation_table(self, table: str) -> str:
        """ED (authorised state; not part of ``HsmClient``): a table encrypted under the LMK."""
        try:
            return self.core.encrypt_decimalisation_table(table)
        except HsmError as exc:
            self._audit_error("ED", exc)
            raise

    async def encrypt_pin(self, pin: str, pan: str) -> str:
        try:
            return self.core.encrypt_pin(pin, pan)
        except HsmError as exc:
            self._audit_error("BA", exc)
            raise

    async def generate_pvv(self, pvk: str, lmk_pin: str, pan: str, pvki: int) -> str:
        try:
            return self.core.generate_pvv(pvk, lmk_pin, pan, pvki)
        except HsmError as exc:
            self._audit_error("DG", exc)
            raise

    async def generate_cvv(self, cvk: str, pan: str, expiry: str, service_code: str) -> str:
        try:
            return self.core.generate_cvv(cvk, pan, expiry, service_code)
        except HsmError as exc:
            self._audit_error("CW", exc)
            raise

    async def verify_cvv(
        self, cvk: str, pan: str, expiry: str, service_code: str, cvv: str
    ) -> bool:
        try:
            return self.core.verify_cvv(cvk, pan, expiry, service_code, cvv)
        except HsmError as exc:
            self._audit_error("CY", exc)
            raise

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
        try:
            return self.core.verify_arqc(
                mk_ac,
                pan,
                pan_sequence,
                atc,
                unpredictable_number,
                transaction_data,
                arqc,
                arc,
                method,
                csu,
            )
        except HsmError as exc:
            self._audit_error("KQ", exc)
            raise

    async def generate_mac(self, key_type: KeyType, key: str, data: bytes) -> bytes:
        try:
            return self.core.generate_mac(key_type.value, key, data)
        except HsmError as exc:
            self._audit_error("M6", exc)
            raise

    async def verify_mac(self, key_type: KeyType, key: str, data: bytes, mac: bytes) -> bool:
        try:
            return self.core.verify_mac(key_type.value, key, data, mac)
        except HsmError as exc:
            self._audit_error("M8", exc)
            raise

    async def decrypt_pin(self, lmk_pin: str, pan: str) -> str:
        """NG (authorised state only; not part of ``HsmClient``): reveal a PIN under the LMK."""
        try:
            return self.core.decrypt_pin(lmk_pin, pan)
        except HsmError as exc:
            self._audit_error("NG", exc)
            raise

    async def close(self) -> None:
        self.core.audit.flush()
