"""``InProcessHsm``: the ``HsmClient`` that calls the software HSM's command core directly.

The embedded default of ``switch run``: no sockets, no string formatting on the hot path; a
PIN translation with cached keys is one dict lookup per key and one native call. Errors the
core did not audit itself (bad input found before a command's keys were known) are audited
here, with the command code, so every command leaves one audit record as over TCP.

A command whose ``HsmClient`` signature is the core's is the core's method made async by
``_command`` (its parameters written once, in ``switch.hsm.core``); the others adapt
their arguments (key types, key schemes, clear components) here.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from switch.hsm.audit import Audit
from switch.hsm.client import GeneratedKey, HsmError, KeyType
from switch.hsm.core import HsmCore
from switch.hsm.dectables import DecTables
from switch.hsm.errors import INVALID_INPUT, AuditedHsmError
from switch.hsm.lmk import Lmk
from switch.hsm.pinwatch import PinFailureWatch

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _scheme_of(key: str) -> str:
    return "T" if key[:1] in ("T", "Y") else "U"


def _command(
    code: str | None, method: Callable[Concatenate[HsmCore, _P], _R]
) -> Callable[Concatenate[InProcessHsm, _P], Coroutine[Any, Any, _R]]:
    """``method`` of the core as the client's coroutine method, an error the core did not
    audit audited under ``code`` (``None``: the core audits every failure of the command)."""

    async def call(self: InProcessHsm, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self.core, *args, **kwargs)
        except HsmError as exc:
            if code is not None:
                self._audit_error(code, exc)
            raise

    call.__name__ = call.__qualname__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class _Audits:
    """``with _Audits(core, code):`` an ``HsmError`` the core did not audit leaves the block
    audited under ``code`` (for the commands that adapt their arguments)."""

    __slots__ = ("_code", "_core")

    def __init__(self, core: HsmCore, code: str) -> None:
        self._core = core
        self._code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, HsmError) and not isinstance(exc, AuditedHsmError):
            self._core.audit.record(self._code, exc.code)


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

    def _audits(self, command: str) -> _Audits:
        return _Audits(self.core, command)

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
        with self._audits("A0"):
            under_lmk, under_zmk, kcv = self.core.generate_key(
                key_type.value, key_scheme or ("T" if triple else "U"), zmk, "Y" if triple else "X"
            )
        return GeneratedKey(under_lmk, kcv, under_zmk)

    async def key_check_value(self, key_type: KeyType, key: str) -> str:
        with self._audits("BU"):
            return self.core.key_check_value(key_type.value, key)

    async def import_key(self, key_type: KeyType, zmk: str, key_under_zmk: str) -> GeneratedKey:
        with self._audits("A6"):
            under_lmk, kcv = self.core.import_key(
                key_type.value, zmk, key_under_zmk, _scheme_of(key_under_zmk)
            )
        return GeneratedKey(under_lmk, kcv)

    async def export_key(self, key_type: KeyType, zmk: str, key: str) -> GeneratedKey:
        with self._audits("A8"):
            under_zmk, kcv = self.core.export_key(
                key_type.value, zmk, key, "Y" if _scheme_of(key) == "T" else "X"
            )
        return GeneratedKey(key, kcv, under_zmk)

    async def form_key_from_clear_components(
        self, key_type: KeyType, components: list[str], key_scheme: str | None = None
    ) -> GeneratedKey:
        """FK (authorised state). ``key_scheme="S"`` forms an AES key in a key block."""
        with self._audits("FK"):
            try:
                parts = [bytes.fromhex(c) for c in components]
            except ValueError:
                raise HsmError(INVALID_INPUT, "components: not hex") from None
            under_lmk, kcv = self.core.form_key_from_components(key_type.value, parts, key_scheme)
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

    async def generate_mac(self, key_type: KeyType, key: str, data: bytes) -> bytes:
        with self._audits("M6"):
            return self.core.generate_mac(key_type.value, key, data)

    async def verify_mac(self, key_type: KeyType, key: str, data: bytes, mac: bytes) -> bool:
        with self._audits("M8"):
            return self.core.verify_mac(key_type.value, key, data, mac)

    translate_pin_zpk_to_zpk = _command("CC", HsmCore.translate_pin_zpk_to_zpk)
    verify_pin_pvv = _command(None, HsmCore.verify_pin_pvv)  # DC / EC
    verify_pin_ibm = _command(None, HsmCore.verify_pin_ibm)  # DA / EA
    #: ED (authorised state; not part of ``HsmClient``): a table encrypted under the LMK
    encrypt_decimalisation_table = _command("ED", HsmCore.encrypt_decimalisation_table)
    encrypt_pin = _command("BA", HsmCore.encrypt_pin)
    #: NG (authorised state only; not part of ``HsmClient``): reveal a PIN under the LMK
    decrypt_pin = _command("NG", HsmCore.decrypt_pin)
    generate_pvv = _command("DG", HsmCore.generate_pvv)
    generate_cvv = _command("CW", HsmCore.generate_cvv)
    verify_cvv = _command("CY", HsmCore.verify_cvv)
    verify_arqc = _command("KQ", HsmCore.verify_arqc)

    async def close(self) -> None:
        self.core.audit.flush()
