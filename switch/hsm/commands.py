"""Host command wire layer: parse a command's fields, call the typed core, format the answer.

A command message is ``header | 2-char command code | fields``; the answer is
``header | response code (second letter + 1) | 2-digit error code | fields``. Framing (the
2-byte length prefix and the header) is the server's job; this module sees the command code
and the field bytes. Each handler documents the layout it implements (payShield host command
reference; emulator choices are marked). Key fields are LMK cryptograms as payShield writes
them: 16 H, ``Z``+16 H, ``U``+32 H, ``T``+48 H, ``S``+key block. Account number fields are the
12 rightmost PAN digits excluding the check digit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from switch.hsm import errors
from switch.hsm.client import HsmError
from switch.hsm.core import FIRMWARE, HsmCore
from switch.hsm.errors import AuditedHsmError, fail
from switch.hsm.keys import SCHEME_HEX_LENGTH, TPK, ZPK, KeyTypeSpec

_HEX = frozenset(b"0123456789ABCDEFabcdef")
_HEX_RE = re.compile(rb"[0-9A-Fa-f]*")
log = logging.getLogger("switch.hsm.commands")


class Reader:
    """Cursor over a command's field bytes; every failure names the field (error 15)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def raw(self, n: int, name: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            fail(errors.INVALID_INPUT, f"{name}: missing or short")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def text(self, n: int, name: str) -> str:
        chunk = self.raw(n, name)
        if not chunk.isascii():
            fail(errors.INVALID_INPUT, f"{name}: not ASCII")
        return chunk.decode("ascii")

    def digits(self, n: int, name: str) -> str:
        value = self.text(n, name)
        if not value.isdigit():
            fail(errors.INVALID_INPUT, f"{name}: expected {n} digits")
        return value

    def number(self, n: int, name: str) -> int:
        return int(self.digits(n, name))

    def hex(self, n: int, name: str) -> bytes:
        chunk = self.raw(n, name)
        if not _HEX_RE.fullmatch(chunk):
            fail(errors.INVALID_INPUT, f"{name}: expected {n} hex characters")
        return bytes.fromhex(chunk.decode("ascii"))

    def peek(self) -> str:
        return chr(self.data[self.pos]) if self.pos < len(self.data) else ""

    def key(self, name: str, untagged: int = 16) -> str:
        """A key field; its length follows from the scheme tag (``S``: from the block).

        Without a tag the key is ``untagged`` hex long: 16 (single length) for most fields,
        32 where payShield takes the legacy double-length form (``32H or 1A+32H``: PVK
        pairs, CVK A/B, MK-AC; BU by its key length flag)."""
        tag = self.peek()
        if tag == "":
            fail(errors.INVALID_INPUT, f"{name}: missing")
        if tag in SCHEME_HEX_LENGTH:
            n = 1 + SCHEME_HEX_LENGTH[tag]
        elif tag == "S":
            length = self.data[self.pos + 2 : self.pos + 6]
            if len(length) != 4 or not length.isdigit():
                fail(errors.INVALID_INPUT, f"{name}: key block length is not 4 digits")
            n = 1 + int(length)
        elif ord(tag) in _HEX:
            n = untagged
        else:
            fail(errors.INVALID_KEY_SCHEME, f"{name}: unknown key scheme {tag!r}")
        start = self.pos
        value = self.text(n, name)
        if tag != "S" and not _HEX_RE.fullmatch(self.data, start + (n != 16), start + n):
            fail(errors.INVALID_INPUT, f"{name}: not hex")
        return value

    def until(self, delimiter: bytes, name: str, max_len: int) -> str:
        end = self.data.find(delimiter, self.pos, self.pos + max_len + 1)
        if end < 0:
            fail(errors.INVALID_INPUT, f"{name}: missing delimiter {delimiter.decode()!r}")
        value = self.text(end - self.pos, name)
        self.pos += len(delimiter)
        return value

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def end(self) -> None:
        if self.pos != len(self.data):
            fail(errors.INVALID_INPUT, f"unexpected data after the last field at {self.pos}")


def pan_of_account(account: str) -> str:
    """A 12-digit account number as the PAN the core expects (the check digit is ignored)."""
    return account + "0"


def _account(r: Reader, formats: tuple[str, ...]) -> str:
    """Account number: 12N; when a format is 48 (ISO 4, bound to the full PAN) the emulator
    takes ``2N length + full PAN`` instead."""
    if "48" in formats:
        n = r.number(2, "account number length")
        return r.digits(n, "account number (full PAN)")
    return pan_of_account(r.digits(12, "account number"))


def _block_hex_len(core: HsmCore, key: str, spec: KeyTypeSpec) -> int:
    """PIN blocks are 16 H under a DES key and 32 H under an AES (``S``) key."""
    if key.startswith("S") and core._key(key, spec).algorithm == "aes":
        return 32
    return 16


def _b(text: str) -> bytes:
    return text.encode("ascii")


# ---- NC: diagnostics -----------------------------------------------------------------------
# Request: (no fields). Response ND: 00 | LMK check value 16H | firmware number 9A.
def cmd_nc(core: HsmCore, r: Reader) -> bytes:
    r.end()
    return _b("00" + core.diagnostics() + FIRMWARE)


# ---- A0: generate a key --------------------------------------------------------------------
# Request: mode 1N (0 generate, 1 generate and export) | key type 3H | key scheme (LMK) 1A
#   [mode 1: optional ';' + ZMK/TMK flag 1N (0) | ZMK key field | key scheme (ZMK) 1A].
# Response A1: 00 | key under LMK | [key under ZMK] | key check value 6H.
def cmd_a0(core: HsmCore, r: Reader) -> bytes:
    mode = r.text(1, "mode")
    if mode not in ("0", "1"):
        fail(errors.INVALID_INPUT, "mode: expected 0 or 1")
    type_code = r.text(3, "key type")
    scheme = r.text(1, "key scheme (LMK)")
    zmk = None
    scheme_zmk = "X"
    if mode == "1":
        if r.peek() == ";":
            r.raw(1, "delimiter")
            if r.text(1, "ZMK/TMK flag") != "0":
                fail(errors.INVALID_INPUT, "ZMK/TMK flag: only 0 (ZMK) is supported")
        zmk = r.key("ZMK")
        scheme_zmk = r.text(1, "key scheme (ZMK)")
    r.end()
    under_lmk, under_zmk, kcv = core.generate_key(type_code, scheme, zmk, scheme_zmk)
    return _b("00" + under_lmk + (under_zmk or "") + kcv)


# ---- BU: generate a key check value --------------------------------------------------------
# Request: key type code 2H (00 ZMK, 01 ZPK, 02 PVK, 03 TAK, 08 ZAK, FF = see key type) |
#   key length flag 1N (0 single, 1 double, 2 triple) | key | [';' key type 3H when FF].
# Response BV: 00 | key check value 6H.
_BU_TYPE_CODES = {"00": "000", "01": "001", "02": "002", "03": "003", "08": "008"}


def cmd_bu(core: HsmCore, r: Reader) -> bytes:
    code = r.text(2, "key type code").upper()
    flag = r.text(1, "key length flag")
    key = r.key("key", untagged=32 if flag == "1" else 16)
    if code == "FF":
        if r.text(1, "delimiter") != ";":
            fail(errors.INVALID_INPUT, "delimiter: expected ';' before the key type")
        type_code = r.text(3, "key type")
    elif code in _BU_TYPE_CODES:
        type_code = _BU_TYPE_CODES[code]
    else:
        fail(errors.INVALID_KEY_TYPE, f"key type code: {code!r}")
    r.end()
    expected = {"0": (16, 17), "1": (32, 33), "2": (49,)}.get(flag)
    if expected is None or (not key.startswith("S") and len(key) not in expected):
        fail(errors.INVALID_KEY_LENGTH_FLAG, "key length flag: does not match the key")
    return _b("00" + core.key_check_value(type_code, key))


# ---- A6: import a key ----------------------------------------------------------------------
# Request: key type 3H | ZMK | key under ZMK | key scheme (LMK) 1A.
# Response A7: 00 | key under LMK | key check value 6H.
def cmd_a6(core: HsmCore, r: Reader) -> bytes:
    type_code = r.text(3, "key type")
    zmk = r.key("ZMK")
    key = r.key("key under ZMK")
    scheme = r.text(1, "key scheme (LMK)")
    r.end()
    under_lmk, kcv = core.import_key(type_code, zmk, key, scheme)
    return _b("00" + under_lmk + kcv)


# ---- A8: export a key ----------------------------------------------------------------------
# Request: key type 3H | ZMK | key under LMK | key scheme (ZMK) 1A.
# Response A9: 00 | key under ZMK | key check value 6H.
def cmd_a8(core: HsmCore, r: Reader) -> bytes:
    type_code = r.text(3, "key type")
    zmk = r.key("ZMK")
    key = r.key("key")
    scheme = r.text(1, "key scheme (ZMK)")
    r.end()
    under_zmk, kcv = core.export_key(type_code, zmk, key, scheme)
    return _b("00" + under_zmk + kcv)


# ---- FK: form a key from clear components (emulator command; authorised state) -------------
# payShield forms keys from clear components at the console (FK); the emulator offers it as a
# host command for demo / test seeding, refused with 17 unless authorised.
# Request: key type 3H | key scheme (LMK) 1A (Z, U, T; S = AES-128 key block) |
#   number of components 1N (1-9) | each component 16H / 32H / 48H / 32H (per scheme).
# Response FL: 00 | key under LMK | key check value 6H.
def cmd_fk(core: HsmCore, r: Reader) -> bytes:
    type_code = r.text(3, "key type")
    scheme = r.text(1, "key scheme (LMK)")
    if scheme not in ("Z", "U", "T", "S"):
        fail(errors.INVALID_KEY_SCHEME, "key scheme (LMK): expected Z, U, T or S")
    count = r.number(1, "number of components")
    hex_len = {"Z": 16, "U": 32, "T": 48, "S": 32}[scheme]
    components = [r.hex(hex_len, f"component {i + 1}") for i in range(count)]
    r.end()
    under_lmk, kcv = core.form_key_from_components(type_code, components, scheme)
    return _b("00" + under_lmk + kcv)


# ---- CA / CC: translate a PIN block ---------------------------------------------------------
# CA request: source TPK | destination ZPK | maximum PIN length 2N | source PIN block 16H
#   (32H under an AES key) | source format 2N | destination format 2N | account number 12N.
# CC request: the same with a source ZPK.
# Response CB / CD: 00 | PIN length 2N | destination PIN block 16H/32H | destination format 2N.
def _translate(core: HsmCore, r: Reader, src_spec: KeyTypeSpec) -> bytes:
    src = r.key("source key")
    dst = r.key("destination ZPK")
    max_len = r.number(2, "maximum PIN length")
    block = r.hex(_block_hex_len(core, src, src_spec), "source PIN block")
    src_fmt = r.digits(2, "source PIN block format")
    dst_fmt = r.digits(2, "destination PIN block format")
    pan = _account(r, (src_fmt, dst_fmt))
    r.end()
    if src_spec is TPK:
        out = core.translate_pin_tpk_to_zpk(src, dst, block, pan, src_fmt, dst_fmt)
    else:
        out = core.translate_pin_zpk_to_zpk(src, dst, block, pan, src_fmt, dst_fmt)
    length = core.pin_length(ZPK, dst, out, pan, dst_fmt)
    if length > max_len:
        fail(errors.PIN_LENGTH, "PIN is longer than the maximum PIN length")
    return _b(f"00{length:02d}{out.hex().upper()}{dst_fmt}")


def cmd_ca(core: HsmCore, r: Reader) -> bytes:
    return _translate(core, r, TPK)


def cmd_cc(core: HsmCore, r: Reader) -> bytes:
    return _translate(core, r, ZPK)


# ---- DC / EC: verify a PIN with the Visa PVV ------------------------------------------------
# Request: TPK (DC) or ZPK (EC) | PVK pair | PIN block 16H | PIN block format 2N |
#   account number 12N | PVKI 1N | PVV 4N.   Response DD / ED: 00 or 01.
def _verify_pvv(core: HsmCore, r: Reader, interchange: bool) -> bytes:
    pin_key = r.key("ZPK" if interchange else "TPK")
    pvk = r.key("PVK", untagged=32)
    block = r.hex(16, "PIN block")
    fmt = r.digits(2, "PIN block format")
    pan = pan_of_account(r.digits(12, "account number"))
    pvki = r.number(1, "PVKI")
    pvv = r.digits(4, "PVV")
    r.end()
    ok = core.verify_pin_pvv(pin_key, pvk, block, pan, pvki, pvv, fmt, interchange)
    return b"00" if ok else b"01"


def cmd_dc(core: HsmCore, r: Reader) -> bytes:
    return _verify_pvv(core, r, interchange=False)


def cmd_ec(core: HsmCore, r: Reader) -> bytes:
    return _verify_pvv(core, r, interchange=True)


# ---- DA / EA: verify a PIN with the IBM 3624 offset -----------------------------------------
# Request: TPK (DA) or ZPK (EA) | PVK | maximum PIN length 2N | PIN block 16H |
#   PIN block format 2N | check length 2N | account number 12N |
#   decimalisation table 16N (clear), 16H (encrypted under LMK 18-19 variant 1, when the HSM's
#   table mode is 'encrypted') or 'K' + 3H (index of a table the HSM holds) |
#   PIN validation data 12A (hex and 'N' = last 5 account digits) | offset 12H (F-padded).
# Response DB / EB: 00 or 01; 25 weak/invalid table, 21 no table held at that index.
def _verify_ibm(core: HsmCore, r: Reader, interchange: bool) -> bytes:
    pin_key = r.key("ZPK" if interchange else "TPK")
    pvk = r.key("PVK", untagged=32)
    r.number(2, "maximum PIN length")
    block = r.hex(16, "PIN block")
    fmt = r.digits(2, "PIN block format")
    check_length = r.number(2, "check length")
    pan = pan_of_account(r.digits(12, "account number"))
    table = r.text(4 if r.peek() == "K" else 16, "decimalisation table")
    data = r.text(12, "PIN validation data")
    offset = r.text(12, "offset").rstrip("Ff")
    r.end()
    ok = core.verify_pin_ibm(
        pin_key, pvk, block, pan, offset, table, data, check_length, fmt, interchange
    )
    return b"00" if ok else b"01"


def cmd_da(core: HsmCore, r: Reader) -> bytes:
    return _verify_ibm(core, r, interchange=False)


def cmd_ea(core: HsmCore, r: Reader) -> bytes:
    return _verify_ibm(core, r, interchange=True)


# ---- BA / NG / DG: PINs under the LMK (authorised state) ------------------------------------
# BA request: PIN (4-12 digits, F-padded) | account number 12N. Response BB: 00 | PIN 16H.
# NG request: account number 12N | PIN under LMK 16H. Response NH: 00 | PIN F-padded to 13.
# DG request: PVK | PIN under LMK 16H | account number 12N | PVKI 1N. Response DH: 00 | PVV 4N.
# (The emulator's PIN under LMK is a format 0 block under LMK 02-03, always 16H.)
def cmd_ba(core: HsmCore, r: Reader) -> bytes:
    field = r.text(len(r.data) - 12, "PIN").rstrip("Ff")
    pan = pan_of_account(r.digits(12, "account number"))
    r.end()
    return _b("00" + core.encrypt_pin(field, pan))


def cmd_ng(core: HsmCore, r: Reader) -> bytes:
    pan = pan_of_account(r.digits(12, "account number"))
    lmk_pin = r.text(16, "PIN under LMK")
    r.end()
    return _b("00" + core.decrypt_pin(lmk_pin, pan).ljust(13, "F"))


def cmd_dg(core: HsmCore, r: Reader) -> bytes:
    pvk = r.key("PVK", untagged=32)
    lmk_pin = r.text(16, "PIN under LMK")
    pan = pan_of_account(r.digits(12, "account number"))
    pvki = r.number(1, "PVKI")
    r.end()
    return _b("00" + core.generate_pvv(pvk, lmk_pin, pan, pvki))


# ---- CW / CY: card verification values ------------------------------------------------------
# CW request: CVK A/B | PAN (up to 19N) | ';' | expiry YYMM 4N | service code 3N.
#   Response CX: 00 | CVV 3N.
# CY request: CVK A/B | CVV 3N | PAN | ';' | expiry 4N | service code 3N. Response CZ: 00 / 01.
def cmd_cw(core: HsmCore, r: Reader) -> bytes:
    cvk = r.key("CVK", untagged=32)
    pan = r.until(b";", "PAN", 19)
    expiry = r.digits(4, "expiry date")
    service_code = r.digits(3, "service code")
    r.end()
    return _b("00" + core.generate_cvv(cvk, pan, expiry, service_code))


def cmd_cy(core: HsmCore, r: Reader) -> bytes:
    cvk = r.key("CVK", untagged=32)
    cvv = r.digits(3, "CVV")
    pan = r.until(b";", "PAN", 19)
    expiry = r.digits(4, "expiry date")
    service_code = r.digits(3, "service code")
    r.end()
    return b"00" if core.verify_cvv(cvk, pan, expiry, service_code, cvv) else b"01"


# ---- KQ: verify an ARQC and generate the ARPC -----------------------------------------------
# Request: mode flag 1N (0 verify only, 1 verify and generate ARPC) | scheme ID 1N (emulator:
#   1 = EMV 4.x common session key with ARPC method 1, 2 = ARPC method 2) | MK-AC |
#   PAN/PAN sequence 8B (BCD of the rightmost 16 digits of PAN||PSN) | ATC 2B | UN 4B |
#   transaction data length 2H | transaction data nB | ';' | ARQC 8B |
#   ARC 2B (method 1) or CSU 4B (method 2).
# Response KR: 00 | ARPC 8B (method 1) / 4B (method 2), none in mode 0; 01 = ARQC failure.
def cmd_kq(core: HsmCore, r: Reader) -> bytes:
    mode = r.text(1, "mode flag")
    scheme = r.text(1, "scheme ID")
    if mode not in ("0", "1") or scheme not in ("1", "2"):
        fail(errors.INVALID_INPUT, "mode flag (0/1) or scheme ID (1/2)")
    mk_ac = r.key("MK-AC", untagged=32)
    pan_psn = r.raw(8, "PAN/PAN sequence number").hex()
    if not pan_psn.isdigit():
        fail(errors.INVALID_INPUT, "PAN/PAN sequence number: not BCD")
    atc = r.raw(2, "ATC")
    un = r.raw(4, "unpredictable number")
    length = int.from_bytes(r.hex(2, "transaction data length"), "big")
    data = r.raw(length, "transaction data")
    if r.raw(1, "delimiter") != b";":
        fail(errors.INVALID_INPUT, "delimiter: expected ';' after the transaction data")
    arqc = r.raw(8, "ARQC")
    method = int(scheme)
    arc = r.raw(2, "ARC") if method == 1 else b""
    csu = r.raw(4, "CSU") if method == 2 else None
    r.end()
    arpc = core.verify_arqc(
        mk_ac, pan_psn[:-2], pan_psn[-2:], atc, un, data, arqc, arc, method, csu
    )
    if arpc is None:
        return b"01"
    return b"00" + (arpc if mode == "1" else b"")


# ---- M6 / M8: generate / verify a MAC -------------------------------------------------------
# Request: mode flag 1N (0 only block, 1 first, 2 middle, 3 last block of a multi-block
#   message) | input format flag 1N (0 binary, 1 hex-encoded binary, 2 text) |
#   MAC size 1N (0 = 8H, 1 = 16H) | MAC algorithm 1N (1 = ISO 9797-1 alg 1, 3 = alg 3) |
#   padding method 1N (0 none: a multiple of 8 bytes, 1 zeros, 2 0x80, 3 length block, mode 0
#   only) | key type 3H (003 TAK, 008 ZAK, FFF = the key block's usage) | key |
#   [IV 16H, modes 2 and 3: the value the previous block's call returned] |
#   message length 4H (characters of the next field) | message | (M8, modes 0 and 3) MAC.
# Response M7: 00 | MAC 8H/16H (modes 0, 3) or IV 16H (modes 1, 2; encrypted under LMK 16-17
#   variant 1, opaque to the host). Response M9: 00 / 01. Modes 1 and 2 take whole 8-byte
#   blocks (else 80); padding applies to the last block.
def _mac_fields(r: Reader) -> tuple[int, str, str, bytes, int, int, int, bytes | None]:
    mode = r.text(1, "mode flag")
    if mode not in ("0", "1", "2", "3"):
        fail(errors.INVALID_INPUT, "mode flag: expected 0, 1, 2 or 3")
    input_format = r.text(1, "input format flag")
    mac_size = r.text(1, "MAC size")
    algorithm = r.number(1, "MAC algorithm")
    padding = r.number(1, "padding method")
    type_code = r.text(3, "key type")
    key = r.key("key")
    iv = r.hex(16, "IV") if mode in ("2", "3") else None
    length = int.from_bytes(r.hex(4, "message length"), "big")
    if input_format == "0":
        message = r.raw(length, "message")
    elif input_format == "1":
        message = r.hex(length, "message")
    elif input_format == "2":
        message = r.text(length, "message").encode("ascii")
    else:
        fail(errors.INVALID_INPUT, "input format flag: expected 0, 1 or 2")
    if mac_size not in ("0", "1"):
        fail(errors.INVALID_INPUT, "MAC size: expected 0 or 1")
    size = 4 if mac_size == "0" else 8
    return int(mode), type_code, key, message, algorithm, padding, size, iv


def cmd_m6(core: HsmCore, r: Reader) -> bytes:
    mode, type_code, key, message, algorithm, padding, size, iv = _mac_fields(r)
    r.end()
    mac = core.generate_mac(type_code, key, message, algorithm, padding, mode, iv)
    return _b("00" + (mac if mode in (1, 2) else mac[:size]).hex().upper())


def cmd_m8(core: HsmCore, r: Reader) -> bytes:
    mode, type_code, key, message, algorithm, padding, size, iv = _mac_fields(r)
    if mode in (1, 2):  # no MAC to check yet: chain like M6
        r.end()
        out = core.generate_mac(type_code, key, message, algorithm, padding, mode, iv, "M8")
        return _b("00" + out.hex().upper())
    mac = r.hex(size * 2, "MAC")
    r.end()
    ok = core.verify_mac(type_code, key, message, mac, algorithm, padding, mode, iv)
    return b"00" if ok else b"01"


# ---- B2: echo ---------------------------------------------------------------------------------
# The keep-alive many host clients send. Request: length 4H | data (that many characters).
# Response B3: 00 | the data.
def cmd_b2(core: HsmCore, r: Reader) -> bytes:
    length = int.from_bytes(r.hex(4, "length of data"), "big")
    data = r.raw(length, "data")
    r.end()
    core.audit.record("B2", errors.OK)
    return b"00" + data


Handler = Callable[[HsmCore, Reader], bytes]
HANDLERS: dict[bytes, Handler] = {
    b"NC": cmd_nc,
    b"A0": cmd_a0,
    b"BU": cmd_bu,
    b"A6": cmd_a6,
    b"A8": cmd_a8,
    b"FK": cmd_fk,
    b"CA": cmd_ca,
    b"CC": cmd_cc,
    b"DC": cmd_dc,
    b"EC": cmd_ec,
    b"DA": cmd_da,
    b"EA": cmd_ea,
    b"BA": cmd_ba,
    b"NG": cmd_ng,
    b"DG": cmd_dg,
    b"CW": cmd_cw,
    b"CY": cmd_cy,
    b"KQ": cmd_kq,
    b"M6": cmd_m6,
    b"M8": cmd_m8,
    b"B2": cmd_b2,
}


def response_code(command: bytes) -> bytes:
    """payShield's response code: the command's second character + 1 (NC -> ND)."""
    return bytes((command[0], command[1] + 1))


def execute(core: HsmCore, command: bytes, fields: bytes) -> bytes:
    """Run one command; returns ``response code | error code | fields``. Never raises for
    bad input: an unknown command answers 68, a malformed one its payShield error code."""
    rc = response_code(command)
    handler = HANDLERS.get(command)
    if handler is None:
        core.audit.record(command.decode("ascii", "replace"), errors.COMMAND_DISABLED)
        return rc + errors.COMMAND_DISABLED.encode()
    try:
        return rc + handler(core, Reader(fields))
    except HsmError as exc:
        if not isinstance(exc, AuditedHsmError):
            core.audit.record(command.decode("ascii"), exc.code)
        return rc + exc.code.encode("ascii")
    except Exception:  # a bug must not take the connection down: answer 41 and log it
        log.exception("HSM command %s failed unexpectedly", command.decode("ascii"))
        core.audit.record(command.decode("ascii"), errors.INTERNAL_ERROR)
        return rc + errors.INTERNAL_ERROR.encode("ascii")
