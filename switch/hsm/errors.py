"""payShield error codes the emulator returns, in one place.

The host protocol answers every command with a 2-digit error code; the typed command core raises
``HsmError`` (from ``switch.hsm.client``) with one of these codes so that both transports
(in-process and TCP) report exactly the same failure for the same input.
"""

from __future__ import annotations

from typing import NoReturn

from switch.hsm.client import HsmError

OK = "00"
VERIFICATION_FAILURE = "01"
INVALID_KEY_TYPE = "04"
INVALID_KEY_LENGTH_FLAG = "05"
SOURCE_KEY_PARITY = "10"
DEST_KEY_PARITY = "11"
INVALID_INPUT = "15"
NOT_AUTHORISED = "17"
PIN_BLOCK_INVALID = "20"
INVALID_PVKI = "21"
INVALID_INDEX = "21"  # payShield: invalid index value (user storage)
INVALID_PIN_FORMAT = "23"
PIN_LENGTH = "24"
DEC_TABLE_ERROR = "25"
INVALID_KEY_SCHEME = "26"
INCOMPATIBLE_KEY_LENGTH = "27"
KEY_FUNCTION_NOT_PERMITTED = "29"
INTERNAL_ERROR = "41"
COMMAND_DISABLED = "68"
PIN_FORMAT_DISABLED = "69"
DATA_LENGTH = "80"  # payShield: data length error (MAC blocks not a multiple of 8)


class AuditedHsmError(HsmError):
    """An ``HsmError`` whose audit record (with key check values) the core already wrote."""


def fail(code: str, message: str) -> NoReturn:
    """Raise the one exception type the command core uses for every refusal."""
    raise HsmError(code, message)
