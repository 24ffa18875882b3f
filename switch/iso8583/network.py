"""0800 network management: sign-on, sign-off, echo test (field 70).

Answers are 0810 with fields 7, 11, 70 (and 41/32 when sent) echoed and 39 = 00. Field 70
codes: 001 sign-on, 002 sign-off, 301 echo test. 101 (key change) is answered 12 for now: the
switch holds no zone master key per acquirer yet, and a key must never arrive in the clear.
An unknown or missing field 70 is answered 30 (format error) naming the field in the log.
"""

from __future__ import annotations

import logging

from switch.core.model import ResponseCode
from switch.core.service import SwitchCore
from switch.iso8583.message import Message

__all__ = ["handle_network"]

log = logging.getLogger("switch.iso8583.network")

SIGN_ON = "001"
SIGN_OFF = "002"
KEY_CHANGE = "101"
ECHO = "301"

_ECHO_FIELDS = (7, 11, 32, 33, 41, 70)


async def handle_network(core: SwitchCore, msg: Message) -> Message:
    """The 0810 answering the 0800 ``msg``."""
    out = Message("0810", {n: msg.fields[n] for n in _ECHO_FIELDS if n in msg.fields})
    code = msg.fields.get(70)
    if code in (SIGN_ON, SIGN_OFF, ECHO):
        tid = msg.fields.get(41)
        log.info("network management %s from terminal %s", code, tid if tid else "-")
        out.fields[39] = ResponseCode.APPROVED.value
    elif code == KEY_CHANGE:
        log.warning("key change (0800/101) requested but no zone master key is configured -> 12")
        out.fields[39] = ResponseCode.INVALID_TRANSACTION.value
    else:
        log.warning("format error in 0800: field 70: %r is not 001, 002, 101 or 301", code)
        out.fields[39] = ResponseCode.FORMAT_ERROR.value
    return out
