"""SATIM/BPC ``ErrorCode`` values and the one exception that carries them.

A REST call that cannot be served is an answer, never an HTTP error: SATIM's client
libraries read ``ErrorCode`` from a 200 JSON body, so every refusal here becomes one, with a
message that names the parameter it is about.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    OK = 0
    DUPLICATE_ORDER = 1  # orderNumber already registered by this merchant
    UNKNOWN_CURRENCY = 3
    MISSING_PARAMETER = 4  # or a parameter that is not valid (the message names it)
    BAD_CREDENTIALS = 5
    UNKNOWN_ORDER = 6  # no such orderId for this merchant (BPC)
    SYSTEM_ERROR = 7  # also: the order is not in a state that allows the operation (BPC)


class GatewayError(Exception):
    """A refused call: ``code`` is what the merchant's client reads, ``message`` why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def missing(name: str) -> GatewayError:
    return GatewayError(ErrorCode.MISSING_PARAMETER, f"{name}: required")


def invalid(name: str, why: str) -> GatewayError:
    return GatewayError(ErrorCode.MISSING_PARAMETER, f"{name}: {why}")
