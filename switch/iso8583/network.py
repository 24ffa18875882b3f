"""0800 network management: sign-on, sign-off, echo test (field 70).

Answers are 0810 with fields 7, 11, 70 (and 41/32 when sent) echoed and 39 = 00. Field 70
codes: 001 sign-on, 002 sign-off, 301 echo test, 101 key change. An unknown or missing field 70
is answered 30 (format error) naming the field in the log.

Key change (101): field 41 names the terminal, field 48 carries ``TPK:<key>:<kcv>`` or
``TAK:<key>:<kcv>`` -- the new key encrypted under the listener's zone master key (ZMK) and its
check value. The HSM imports it (A6) under the LMK, the check value must match, then
``core.set_terminal_keys`` stores it: the clear key never exists outside the HSM. A listener
without a ZMK answers 12; a bad field 48 or a refused import answers 30.
"""

from __future__ import annotations

import hmac
import logging

from switch.core.model import ResponseCode
from switch.core.service import SwitchCore
from switch.hsm.client import HsmError, KeyType
from switch.iso8583.message import Message

__all__ = ["handle_network"]

log = logging.getLogger("switch.iso8583.network")

SIGN_ON = "001"
SIGN_OFF = "002"
KEY_CHANGE = "101"
ECHO = "301"

_ECHO_FIELDS = (7, 11, 32, 33, 41, 70)


async def handle_network(core: SwitchCore, msg: Message, zmk: str = "") -> Message:
    """The 0810 answering the 0800 ``msg`` (``zmk``: the ZMK under the LMK, for 101)."""
    out = Message("0810", {n: msg.fields[n] for n in _ECHO_FIELDS if n in msg.fields})
    code = msg.fields.get(70)
    if code in (SIGN_ON, SIGN_OFF, ECHO):
        tid = msg.fields.get(41)
        log.info("network management %s from terminal %s", code, tid if tid else "-")
        out.fields[39] = ResponseCode.APPROVED.value
    elif code == KEY_CHANGE:
        out.fields[39] = await _key_change(core, msg, zmk)
    else:
        log.warning("format error in 0800: field 70: %r is not 001, 002, 101 or 301", code)
        out.fields[39] = ResponseCode.FORMAT_ERROR.value
    return out


_KEY_TYPES = {"TPK": KeyType.TPK, "TAK": KeyType.TAK}


async def _key_change(core: SwitchCore, msg: Message, zmk: str) -> str:
    if not zmk:
        log.warning("key change (0800/101) refused: this listener has no zone master key -> 12")
        return ResponseCode.INVALID_TRANSACTION.value
    tid = msg.fields.get(41)
    terminal = core.terminal(tid.strip()) if isinstance(tid, str) else None
    if terminal is None:
        log.warning("format error in 0800/101: field 41: unknown or missing terminal -> 30")
        return ResponseCode.FORMAT_ERROR.value
    parts = str(msg.fields.get(48, "")).split(":")
    if len(parts) != 3 or parts[0] not in _KEY_TYPES or len(parts[2]) != 6:
        log.warning("format error in 0800/101: field 48: expected TPK|TAK:<key>:<kcv> -> 30")
        return ResponseCode.FORMAT_ERROR.value
    kind, key_under_zmk, kcv = parts
    try:
        imported = await core.hsm.import_key(_KEY_TYPES[kind], zmk, key_under_zmk)
    except HsmError as exc:
        log.warning("format error in 0800/101: field 48: the HSM refused the key (%s) -> 30", exc)
        return ResponseCode.FORMAT_ERROR.value
    if not hmac.compare_digest(imported.check_value.upper(), kcv.upper()):
        log.warning("format error in 0800/101: field 48: check value mismatch -> 30")
        return ResponseCode.FORMAT_ERROR.value
    if kind == "TPK":
        await core.set_terminal_keys(terminal.terminal_id, tpk=imported.key_under_lmk)
    else:
        await core.set_terminal_keys(terminal.terminal_id, tak=imported.key_under_lmk)
    log.info("key change: new %s for terminal %s, KCV %s", kind, terminal.terminal_id, kcv)
    return ResponseCode.APPROVED.value
