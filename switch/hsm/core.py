"""The command core: one typed method per host command, shared by both transports.

The in-process client calls these methods directly (no string formatting); the TCP server
parses the wire into the same calls (``switch.hsm.commands``). Every method either returns its
result or raises ``HsmError`` with the payShield error code; verifications return ``False`` for
error 01. Keys arrive as LMK cryptograms and are decrypted through the key store's per-type
cache, so a repeated key costs a dict lookup and a hot command about one native call.

PIN block format codes are payShield's: 01 = ISO 9564 format 0, 05 = format 1, 47 = format 3,
48 = format 4 (AES). A PAN-bound block (formats 0, 3, 4) is never translated to format 1
(error 69). PANs are full PANs; the wire's 12-digit account number is widened by the server.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import switch_native as native

from switch.hsm import dectables, errors
from switch.hsm.audit import Audit
from switch.hsm.client import HsmError
from switch.hsm.dectables import DecTables
from switch.hsm.errors import AuditedHsmError, fail
from switch.hsm.keys import (
    CVK,
    MK_AC,
    PVK,
    TAK,
    TPK,
    ZAK,
    ZMK,
    ZPK,
    KeyEntry,
    KeyStore,
    KeyTypeSpec,
    check_value,
    key_type,
)
from switch.hsm.lmk import Lmk
from switch.hsm.pinwatch import PinFailureWatch

#: payShield PIN block format code -> ISO 9564 format number.
PIN_FORMATS = {"01": 0, "05": 1, "47": 3, "48": 4}
#: LMK pair used to encrypt PINs under the LMK (payShield: 02-03).
LMK_PIN_PAIR = 2
FIRMWARE = "0007-E000"


def format_number(code: str) -> int:
    """The ISO 9564 format number of a payShield PIN block format code (else error 23)."""
    fmt = PIN_FORMATS.get(code)
    if fmt is None:
        fail(errors.INVALID_PIN_FORMAT, f"PIN block format: {code!r} is not 01, 05, 47 or 48")
    return fmt


def _digits(value: str, name: str, min_len: int, max_len: int) -> str:
    if not (min_len <= len(value) <= max_len) or not value.isdigit() or not value.isascii():
        fail(errors.INVALID_INPUT, f"{name}: expected {min_len}-{max_len} digits")
    return value


def _pin_error(exc: ValueError) -> str:
    """Map a native PIN error (its message starts with the argument's name) to payShield's
    code: 15 bad PAN, 24 PIN length, 23 format, 27 key length, else 20 bad PIN block."""
    field = str(exc).split(":", 1)[0].strip().lower()
    if field == "pan":
        return errors.INVALID_INPUT
    if field == "pin":
        return errors.PIN_LENGTH
    if field.endswith("fmt"):
        return errors.INVALID_PIN_FORMAT
    if field.endswith("key") or field == "pvk":
        return errors.INCOMPATIBLE_KEY_LENGTH
    return errors.PIN_BLOCK_INVALID


@contextmanager
def _native_input(what: str) -> Iterator[None]:
    """Turn a native argument error (inputs already checked, so rare) into error 15."""
    try:
        yield
    except ValueError as exc:
        fail(errors.INVALID_INPUT, f"{what}: {exc}")


class HsmCore:
    """The software HSM's commands over one LMK. Thread-compatible, not thread-safe."""

    def __init__(
        self,
        lmk: Lmk,
        authorised: bool = False,
        audit: Audit | None = None,
        dec_tables: DecTables | None = None,
        pin_watch: PinFailureWatch | None = None,
    ) -> None:
        self.lmk = lmk
        self.authorised = authorised
        self.keys = KeyStore(lmk)
        self.audit = audit or Audit()
        #: decimalisation table policy and held tables (DA/EA); see switch.hsm.dectables
        self.dec_tables = dec_tables or DecTables(lmk)
        #: counts failed PIN verifications per PVK and account, alarms past a limit
        self.pin_watch = pin_watch or PinFailureWatch(lmk, self.audit)
        caches = self.keys.caches
        self._tpk_cache = caches[TPK.code]
        self._zpk_cache = caches[ZPK.code]

    # ---- helpers -------------------------------------------------------------------------

    def _key(
        self, key: str, spec: KeyTypeSpec, parity_code: str = errors.SOURCE_KEY_PARITY
    ) -> KeyEntry:
        entry = self.keys.caches[spec.code].get(key)
        if entry is None:
            entry = self.keys.decrypt(key, spec, parity_code)
        return entry

    def _refuse(self, command: str, code: str, message: str, *check_values: str) -> NoReturn:
        """Audit the refusal with the check values of the keys involved, then raise."""
        self.audit.record(command, code, *check_values)
        raise AuditedHsmError(code, message)

    def _require_authorised(self, command: str) -> None:
        if not self.authorised:
            self._refuse(
                command, errors.NOT_AUTHORISED, f"{command}: HSM is not in the authorised state"
            )

    @staticmethod
    def _des(entry: KeyEntry, name: str) -> bytes:
        if entry.algorithm != "des":
            fail(errors.INCOMPATIBLE_KEY_LENGTH, f"{name}: needs a DES/3DES key")
        return entry.key

    def _lmk_pin_key(self) -> bytes:
        return self.lmk.pair(LMK_PIN_PAIR)

    # ---- NC ------------------------------------------------------------------------------

    def diagnostics(self) -> str:
        """NC: the LMK check value (16 hex)."""
        kcv = self.lmk.check_value()
        self.audit.record("NC", errors.OK, kcv)
        return kcv

    # ---- key management: A0, BU, A6, A8, FK ----------------------------------------------

    def generate_key(
        self,
        type_code: str,
        scheme_lmk: str = "U",
        zmk: str | None = None,
        scheme_zmk: str = "X",
    ) -> tuple[str, str | None, str]:
        """A0: (key under LMK, key under ZMK or None, KCV)."""
        spec = key_type(type_code)
        algorithm = "des"
        if scheme_lmk == "S" and spec in (ZPK, TPK):
            algorithm, clear = "aes", secrets.token_bytes(16)
        else:
            length = {"Z": 8, "U": 16, "T": 24, "S": 16}.get(scheme_lmk)
            if length is None:
                fail(errors.INVALID_KEY_SCHEME, f"key scheme (LMK): {scheme_lmk!r}")
            clear = native.adjust_key_parity(secrets.token_bytes(length))
        under_lmk = self.keys.encrypt(clear, spec, scheme_lmk, algorithm)
        under_zmk = None
        kcvs = []
        if zmk is not None:
            zmk_entry = self._key(zmk, ZMK, errors.DEST_KEY_PARITY)
            if algorithm != "des":
                fail(errors.INVALID_KEY_SCHEME, "AES keys cannot be exported under a variant ZMK")
            under_zmk = self.keys.encrypt_under_zmk(zmk_entry.key, clear, scheme_zmk)
            kcvs.append(zmk_entry.check_value)
        kcv = check_value(clear, algorithm)
        self.audit.record("A0", errors.OK, kcv, *kcvs)
        return under_lmk, under_zmk, kcv

    def key_check_value(self, type_code: str, key: str) -> str:
        """BU: the check value (6 hex) of a key under the LMK."""
        entry = self._key(key, key_type(type_code))
        self.audit.record("BU", errors.OK, entry.check_value)
        return entry.check_value

    def import_key(
        self, type_code: str, zmk: str, key_under_zmk: str, scheme_lmk: str = "U"
    ) -> tuple[str, str]:
        """A6: (key under LMK, KCV) from a key under a ZMK."""
        spec = key_type(type_code)
        zmk_entry = self._key(zmk, ZMK)
        clear = self.keys.decrypt_under_zmk(zmk_entry.key, key_under_zmk)
        if not native.key_parity_is_odd(clear):
            self._refuse(
                "A6",
                errors.DEST_KEY_PARITY,
                "key under ZMK: parity error (wrong ZMK?)",
                zmk_entry.check_value,
            )
        if scheme_lmk not in ("Z", "U", "T", "S"):
            fail(errors.INVALID_KEY_SCHEME, f"key scheme (LMK): {scheme_lmk!r}")
        if scheme_lmk != "S" and len(clear) != {"Z": 8, "U": 16, "T": 24}[scheme_lmk]:
            fail(errors.INCOMPATIBLE_KEY_LENGTH, "key scheme (LMK) does not fit the key length")
        under_lmk = self.keys.encrypt(clear, spec, scheme_lmk)
        kcv = check_value(clear)
        self.audit.record("A6", errors.OK, kcv, zmk_entry.check_value)
        return under_lmk, kcv

    def export_key(
        self, type_code: str, zmk: str, key: str, scheme_zmk: str = "X"
    ) -> tuple[str, str]:
        """A8: (key under ZMK, KCV) from a key under the LMK."""
        spec = key_type(type_code)
        zmk_entry = self._key(zmk, ZMK)
        entry = self._key(key, spec, errors.DEST_KEY_PARITY)
        if key[:1] == "S":  # the emulator's key blocks are non-exportable (header N)
            fail(errors.KEY_FUNCTION_NOT_PERMITTED, "key: a non-exportable key block")
        clear = self._des(entry, "key")
        if (scheme_zmk in ("X", "U") and len(clear) != 16) or (
            scheme_zmk in ("Y", "T") and len(clear) != 24
        ):
            fail(errors.INCOMPATIBLE_KEY_LENGTH, "key scheme (ZMK) does not fit the key length")
        under_zmk = self.keys.encrypt_under_zmk(zmk_entry.key, clear, scheme_zmk)
        self.audit.record("A8", errors.OK, entry.check_value, zmk_entry.check_value)
        return under_zmk, entry.check_value

    def form_key_from_components(
        self, type_code: str, components: list[bytes], scheme_lmk: str | None = None
    ) -> tuple[str, str]:
        """FK (authorised state): XOR clear components into a key under the LMK.

        DES keys (schemes Z, U, T) get odd parity forced; scheme ``S`` forms an AES key
        (16, 24 or 32 bytes) in a key block."""
        self._require_authorised("FK")
        spec = key_type(type_code)
        if not components or not (1 <= len(components) <= 9):
            fail(errors.INVALID_INPUT, "components: need 1 to 9")
        length = len(components[0])
        aes = scheme_lmk == "S"
        lengths = (16, 24, 32) if aes else (8, 16, 24)
        if length not in lengths or any(len(c) != length for c in components):
            fail(errors.INVALID_INPUT, f"components: all {lengths} bytes and the same length")
        value = int.from_bytes(components[0], "big")
        for c in components[1:]:
            value ^= int.from_bytes(c, "big")
        clear = value.to_bytes(length, "big")
        if aes:
            algorithm, scheme = "aes", "S"
        else:
            clear = native.adjust_key_parity(clear)
            algorithm = "des"
            scheme = scheme_lmk or {8: "Z", 16: "U", 24: "T"}[length]
        under_lmk = self.keys.encrypt(clear, spec, scheme, algorithm)
        kcv = check_value(clear, algorithm)
        self.audit.record("FK", errors.OK, kcv)
        return under_lmk, kcv

    # ---- PIN translation: CA, CC ---------------------------------------------------------

    def translate_pin(
        self,
        command: str,
        src_spec: KeyTypeSpec,
        src_key: str,
        dst_key: str,
        block: bytes,
        pan: str,
        src_format: str,
        dst_format: str,
    ) -> bytes:
        """CA (source TPK) / CC (source ZPK): re-encrypt a PIN block under the ZPK."""
        src = self.keys.caches[src_spec.code].get(src_key) or self._key(src_key, src_spec)
        dst = self._zpk_cache.get(dst_key) or self._key(dst_key, ZPK, errors.DEST_KEY_PARITY)
        sf = PIN_FORMATS.get(src_format)
        df = PIN_FORMATS.get(dst_format)
        if sf is None or df is None:
            self._refuse(
                command, errors.INVALID_PIN_FORMAT, "PIN block format: not 01, 05, 47 or 48"
            )
        if df == 1 and sf != 1:
            self._refuse(
                command, errors.PIN_FORMAT_DISABLED, "PIN block format: PAN-bound block to format 1"
            )
        try:
            out = native.pin_block_translate(src.key, sf, dst.key, df, block, pan)
        except ValueError as exc:
            code = _pin_error(exc)
            self._refuse(command, code, f"PIN block: {exc}", src.check_value, dst.check_value)
        self.audit.record(command, errors.OK, src.check_value, dst.check_value)
        return out

    def translate_pin_tpk_to_zpk(
        self,
        tpk: str,
        zpk: str,
        pin_block: bytes,
        pan: str,
        src_format: str = "01",
        dst_format: str = "01",
    ) -> bytes:
        src = self._tpk_cache.get(tpk)
        dst = self._zpk_cache.get(zpk)
        audit = self.audit
        # Hot path: both keys cached, plain format 0 -> 0, audit off: one native call.
        if (
            src is not None
            and dst is not None
            and src_format == dst_format == "01"
            and audit.file is None
            and not audit.logger.isEnabledFor(20)
        ):
            try:
                return native.pin_block_translate(src.key, 0, dst.key, 0, pin_block, pan)
            except ValueError:
                pass  # take the full path for the error code and the audit record
        return self.translate_pin("CA", TPK, tpk, zpk, pin_block, pan, src_format, dst_format)

    def translate_pin_zpk_to_zpk(
        self,
        src_zpk: str,
        dst_zpk: str,
        pin_block: bytes,
        pan: str,
        src_format: str = "01",
        dst_format: str = "01",
    ) -> bytes:
        return self.translate_pin(
            "CC", ZPK, src_zpk, dst_zpk, pin_block, pan, src_format, dst_format
        )

    def pin_length(self, spec: KeyTypeSpec, key: str, block: bytes, pan: str, fmt: str) -> int:
        """Length of the PIN inside a block (for CA/CC responses and max-length checks)."""
        entry = self._key(key, spec)
        try:
            return int(native.pin_block_pin_length(entry.key, format_number(fmt), block, pan))
        except ValueError as exc:
            fail(_pin_error(exc), f"PIN block: {exc}")

    # ---- PIN verification: DC/EC (PVV), DA/EA (IBM 3624) ---------------------------------

    def verify_pin_pvv(
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
        """DC (``pin_key`` is a TPK) / EC (a ZPK): Visa PVV check."""
        command = "EC" if interchange else "DC"
        try:
            pin_entry, pvk_entry = self._pin_keys(pin_key, pvk, interchange)
            fmt = format_number(pin_format)
            if not 0 <= pvki <= 9:
                fail(errors.INVALID_PVKI, "PVKI: expected one digit")
            _digits(pvv, "PVV", 4, 4)
            return self._pin_checked(
                command, pin_entry, pvk_entry, pan,
                native.pvv_verify, pin_entry.key, fmt, pin_block, pan, pvk_entry.key, pvki, pvv,
            )  # fmt: skip
        except HsmError as exc:
            self._audited(command, exc)

    def verify_pin_ibm(
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
        """DA (TPK) / EA (ZPK): IBM 3624 offset check. ``N`` in the validation data stands
        for the last 5 digits of the account number, as on payShield.

        ``decimalisation_table``: ``K`` + 3 hex index of a table the HSM holds, or 16
        characters taken as the HSM's table mode says (clear, held, encrypted); a weak table
        is refused with 25 in every form (``switch.hsm.dectables``)."""
        command = "EA" if interchange else "DA"
        try:
            pin_entry, pvk_entry = self._pin_keys(pin_key, pvk, interchange)
            fmt = format_number(pin_format)
            if not 4 <= check_length <= 12:
                fail(errors.INVALID_INPUT, "check length: expected 04-12")
            _digits(offset, "offset", check_length, 12)
            # A weak table would let the host read the PIN out of the answers (error 25).
            table = self.dec_tables.resolve(decimalisation_table)
            data = validation_data.upper().replace("N", pan[-6:-1])
            if not 1 <= len(data) <= 16 or any(c not in "0123456789ABCDEF" for c in data):
                fail(errors.INVALID_INPUT, "PIN validation data: expected up to 16 hex (and N)")
            return self._pin_checked(
                command, pin_entry, pvk_entry, pan,
                native.ibm3624_verify, pin_entry.key, fmt, pin_block, pan, pvk_entry.key,
                offset[:check_length], data, table, check_length,
            )  # fmt: skip
        except HsmError as exc:
            self._audited(command, exc)

    def _pin_keys(self, pin_key: str, pvk: str, interchange: bool) -> tuple[KeyEntry, KeyEntry]:
        """The PIN block's key (a ZPK for ``interchange``, else a TPK) and the PVK."""
        return (
            self._key(pin_key, ZPK if interchange else TPK),
            self._key(pvk, PVK, errors.DEST_KEY_PARITY),
        )

    def _pin_checked(
        self,
        command: str,
        pin_entry: KeyEntry,
        pvk_entry: KeyEntry,
        pan: str,
        check: Callable[..., object],
        *args: object,
    ) -> bool:
        """``check(*args)``, the native PIN verification, and its audit: OK, or a failed try
        counted by the PIN watch (which alarms past its limit); a bad PIN block is refused
        with the code its error names."""
        kcvs = (pin_entry.check_value, pvk_entry.check_value)
        try:
            ok = check(*args)
        except ValueError as exc:
            self._refuse(command, _pin_error(exc), f"PIN block: {exc}", *kcvs)
        if ok:
            self.audit.record(command, errors.OK, *kcvs)
        else:
            self.pin_watch.failed(command, pvk_entry.check_value, pan, *kcvs)
        return bool(ok)

    def _audited(self, command: str, exc: HsmError) -> NoReturn:
        """Raise ``exc`` again, audited under ``command`` unless it was already: a command
        whose code depends on its arguments (DC/EC, DA/EA) audits its own failures, so that
        neither transport has to work the code out again."""
        if isinstance(exc, AuditedHsmError):
            raise exc
        self._refuse(command, exc.code, exc.message)

    def encrypt_decimalisation_table(self, table: str) -> str:
        """ED (payShield console command; authorised state): a strong table encrypted under
        LMK pair 18-19 variant 1, for hosts that send DA/EA tables encrypted."""
        self._require_authorised("ED")
        encrypted = dectables.encrypt(self.lmk, table)
        self.audit.record("ED", errors.OK)
        return encrypted

    # ---- PINs under the LMK: BA, NG, DG (authorised state) -------------------------------

    def encrypt_pin(self, pin: str, pan: str) -> str:
        """BA (authorised state): clear PIN -> PIN under LMK pair 02-03.

        The emulator's LMK-encrypted PIN is an ISO 9564 format 0 block under LMK 02-03
        (16 hex, PAN-bound), not payShield's proprietary LN-length encoding."""
        self._require_authorised("BA")
        _digits(pin, "PIN", 4, 12)
        try:
            block = native.pin_block_encrypt(self._lmk_pin_key(), 0, pin, pan)
        except ValueError as exc:
            fail(errors.INVALID_INPUT, f"PIN/account number: {exc}")
        self.audit.record("BA", errors.OK)
        return block.hex().upper()

    def _lmk_pin(self, lmk_pin: str, pan: str, command: str) -> str:
        """The clear PIN of an LMK-encrypted PIN; stays inside the HSM (or NG, authorised)."""
        try:
            block = bytes.fromhex(lmk_pin)
        except ValueError:
            fail(errors.INVALID_INPUT, "PIN under LMK: not hex")
        if len(block) != 8:
            fail(errors.INVALID_INPUT, "PIN under LMK: expected 16 hex")
        try:
            clear = native.des_decrypt_ecb(self._lmk_pin_key(), block)
            return native.pin_block_decode(0, clear, pan)
        except ValueError as exc:
            self._refuse(command, errors.PIN_BLOCK_INVALID, f"PIN under LMK: {exc}")

    def decrypt_pin(self, lmk_pin: str, pan: str) -> str:
        """NG (authorised state): the clear PIN of a PIN under the LMK."""
        self._require_authorised("NG")
        pin = self._lmk_pin(lmk_pin, pan, "NG")
        self.audit.record("NG", errors.OK)
        return pin

    def generate_pvv(self, pvk: str, lmk_pin: str, pan: str, pvki: int) -> str:
        """DG (authorised state here, for personalisation): PVV of a PIN under the LMK."""
        self._require_authorised("DG")
        pvk_entry = self._key(pvk, PVK)
        if not 0 <= pvki <= 9:
            fail(errors.INVALID_PVKI, "PVKI: expected one digit")
        pin = self._lmk_pin(lmk_pin, pan, "DG")
        with _native_input("DG inputs"):
            pvv = native.pvv_generate(pvk_entry.key, pan, pvki, pin)
        self.audit.record("DG", errors.OK, pvk_entry.check_value)
        return pvv

    # ---- card verification: CW, CY -------------------------------------------------------

    def _cvv_inputs(self, cvk: str, pan: str, expiry: str, service_code: str) -> KeyEntry:
        entry = self._key(cvk, CVK)
        _digits(pan, "PAN", 1, 19)  # payShield CW/CY: "up to 19 N"
        _digits(expiry, "expiry date", 4, 4)
        _digits(service_code, "service code", 3, 3)
        if len(self._des(entry, "CVK")) != 16:
            fail(errors.INCOMPATIBLE_KEY_LENGTH, "CVK: needs a double-length key (A || B)")
        return entry

    def generate_cvv(self, cvk: str, pan: str, expiry: str, service_code: str) -> str:
        """CW: Visa CVV (service code as on track), CVV2 (000), iCVV (999)."""
        entry = self._cvv_inputs(cvk, pan, expiry, service_code)
        with _native_input("CW inputs"):
            cvv = native.cvv_generate(entry.key, pan, expiry, service_code)
        self.audit.record("CW", errors.OK, entry.check_value)
        return cvv

    def verify_cvv(self, cvk: str, pan: str, expiry: str, service_code: str, cvv: str) -> bool:
        """CY: constant-time CVV check."""
        entry = self._cvv_inputs(cvk, pan, expiry, service_code)
        _digits(cvv, "CVV", 3, 3)
        with _native_input("CY inputs"):
            ok = bool(native.cvv_verify(entry.key, pan, expiry, service_code, cvv))
        self.audit.record("CY", errors.OK if ok else errors.VERIFICATION_FAILURE, entry.check_value)
        return ok

    # ---- EMV: KQ -------------------------------------------------------------------------

    def verify_arqc(
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
        """KQ: EMV 4.x common session key: derive the ICC master key (option A) and the AC
        session key from the ATC, check the ARQC over ``transaction_data`` (padding 0x80),
        and return the ARPC (method 1 with ARC, method 2 with CSU) or ``None`` (error 01)."""
        entry = self._key(mk_ac, MK_AC)
        _digits(pan, "PAN", 12, 19)
        _digits(pan_sequence, "PAN sequence number", 1, 2)
        if len(atc) != 2 or len(unpredictable_number) != 4 or len(arqc) != 8:
            fail(errors.INVALID_INPUT, "ATC (2 bytes), UN (4 bytes), ARQC (8 bytes)")
        if method == 1 and len(arc) != 2:
            fail(errors.INVALID_INPUT, "ARC: expected 2 bytes")
        if method == 2 and (csu is None or len(csu) != 4):
            fail(errors.INVALID_INPUT, "CSU: expected 4 bytes")
        if method not in (1, 2):
            fail(errors.INVALID_INPUT, "ARPC method: expected 1 or 2")
        with _native_input("KQ inputs"):
            psn = pan_sequence.zfill(2)
            icc_mk = native.emv_derive_icc_master_key_option_a(entry.key, pan, psn)
            session = native.emv_derive_common_session_key(icc_mk, atc)
            expected = native.emv_generate_ac(session, transaction_data)
        if not native.constant_time_eq(expected, arqc):
            self.audit.record("KQ", errors.VERIFICATION_FAILURE, entry.check_value)
            return None
        if method == 1:
            arpc = native.emv_arpc_method1(session, arqc, arc)
        else:
            assert csu is not None
            arpc = native.emv_arpc_method2(session, arqc, csu, b"")
        self.audit.record("KQ", errors.OK, entry.check_value)
        return arpc

    # ---- MAC: M6, M8 ---------------------------------------------------------------------

    def _mac_entry(self, type_code: str, key: str) -> KeyEntry:
        """The MAC key: a TAK (003) or ZAK (008), or with key type ``FFF`` (payShield's code
        for "see the key block") a key block whose usage names one of them."""
        if type_code.upper() == "FFF":
            if key[:1] != "S":
                fail(errors.INVALID_KEY_TYPE, "key type FFF: the key must be a key block (S)")
            usage = key[6:8]  # 'S' + version 1 + length 4, then the usage
            spec = next((s for s in (TAK, ZAK) if s.usage == usage), None)
            if spec is None:
                fail(errors.KEY_FUNCTION_NOT_PERMITTED, f"key block usage {usage!r}: not a MAC key")
        else:
            spec = key_type(type_code)
            if spec not in (TAK, ZAK):
                fail(errors.INVALID_KEY_TYPE, "key type: MAC keys are TAK (003) or ZAK (008)")
        return self._key(key, spec)

    def _iv_key(self) -> bytes:
        # payShield's MU/MW return the intermediate MAC value encrypted under LMK pair 16-17
        # variant 1: a clear one would be a single-DES oracle under the MAC key's left half.
        return self.lmk.variant_key(16, 0xA6, 0)

    def _mac(
        self,
        type_code: str,
        key: str,
        data: bytes,
        algorithm: int,
        padding: int,
        mode: int = 0,
        iv: bytes | None = None,
    ) -> tuple[bytes, KeyEntry]:
        """ISO 9797-1 MAC (algorithm 1 or 3; padding 0 none, 1 zeros, 2 0x80, 3 length block)
        over one message (mode 0) or one block of a multi-block message: 1 first, 2 middle
        (these return the intermediate value encrypted under the LMK, 8 bytes), 3 last
        (returns the MAC). ``iv``: the value mode 1 or 2 returned, for modes 2 and 3."""
        entry = self._mac_entry(type_code, key)
        des_key = self._des(entry, "MAC key")
        if algorithm not in (1, 3):
            fail(errors.INVALID_INPUT, "MAC algorithm: expected 1 or 3")
        if algorithm == 3 and len(des_key) != 16:
            fail(errors.INCOMPATIBLE_KEY_LENGTH, "MAC algorithm 3 needs a double-length key")
        if padding not in (0, 1, 2, 3):
            fail(errors.INVALID_INPUT, "padding method: expected 0, 1, 2 or 3")
        if mode not in (0, 1, 2, 3):
            fail(errors.INVALID_INPUT, "mode flag: expected 0, 1, 2 or 3")
        if padding == 3 and mode != 0:
            fail(errors.INVALID_INPUT, "padding method 3 (length block) needs mode 0")
        aligned = len(data) > 0 and len(data) % 8 == 0
        if (padding == 0 or mode in (1, 2)) and not aligned:
            fail(errors.DATA_LENGTH, "message: not a non-empty multiple of 8 bytes")
        if mode == 0:  # the whole message: one native call
            fn = native.mac_iso9797_1_alg3 if algorithm == 3 else native.mac_iso9797_1_alg1
            with _native_input("MAC inputs"):
                return fn(des_key, data, padding or 1), entry
        if mode == 1:
            chain = bytes(8)
        else:
            if iv is None or len(iv) != 8:
                fail(errors.INVALID_INPUT, "IV: expected the 16 H value of the previous block")
            chain = native.des_decrypt_ecb(self._iv_key(), iv)
        if mode == 3 and padding == 2:
            data += b"\x80"
        if mode == 3:  # padding 1 and 2 pad the last block; earlier ones were whole blocks
            data += bytes(-len(data) % 8)
        cbc_key = des_key[:8] if algorithm == 3 else des_key
        state = native.des_encrypt_cbc(cbc_key, chain, data)[-8:] if data else chain
        if mode in (1, 2):
            return native.des_encrypt_ecb(self._iv_key(), state), entry
        if algorithm == 3:  # retail MAC output transformation: D under K', E under K
            state = native.des_encrypt_ecb(cbc_key, native.des_decrypt_ecb(des_key[8:], state))
        return state, entry

    def generate_mac(
        self,
        type_code: str,
        key: str,
        data: bytes,
        algorithm: int = 3,
        padding: int = 1,
        mode: int = 0,
        iv: bytes | None = None,
        command: str = "M6",
    ) -> bytes:
        """M6: ISO 9797-1 MAC (algorithm 3 = retail MAC by default), 8 bytes; in modes 1 and
        2 the encrypted intermediate value to pass to the next block's call (M8 chains its
        first and middle blocks the same way, ``command="M8"``)."""
        mac, entry = self._mac(type_code, key, data, algorithm, padding, mode, iv)
        self.audit.record(command, errors.OK, entry.check_value)
        return mac

    def verify_mac(
        self,
        type_code: str,
        key: str,
        data: bytes,
        mac: bytes,
        algorithm: int = 3,
        padding: int = 1,
        mode: int = 0,
        iv: bytes | None = None,
    ) -> bool:
        """M8: constant-time check of a 4- or 8-byte MAC (modes 0 and 3; modes 1 and 2 only
        chain, use ``generate_mac``)."""
        if mode in (1, 2):
            fail(errors.INVALID_INPUT, "mode flag: verify the last block (3) or all (0)")
        if len(mac) not in (4, 8):
            fail(errors.INVALID_INPUT, "MAC: expected 4 or 8 bytes")
        expected, entry = self._mac(type_code, key, data, algorithm, padding, mode, iv)
        ok = bool(native.constant_time_eq(expected[: len(mac)], mac))
        self.audit.record("M8", errors.OK if ok else errors.VERIFICATION_FAILURE, entry.check_value)
        return ok
