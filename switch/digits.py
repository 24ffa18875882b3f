"""ASCII digits: the only digits a card number, an expiry, a CVV2 or a port is written with.

Python's own digit tests are Unicode-wide: ``str.isdigit``, ``str.isdecimal`` and ``\\d`` in a
``str`` pattern accept Arabic-Indic (``٣٠١٢``), Devanagari, full-width... digits, and ``int()``
converts them. Such text passes a check and then breaks whatever comes next (an HSM command,
``hmac.compare_digest``, an ISO 8583 field) or silently turns into a number. Every check on
external text uses these instead, so it is refused at the edge with the field named.
"""

from __future__ import annotations

import argparse
import re
from typing import Final

#: ``[0-9]+`` and nothing else (``re.ASCII`` so a ``\\d`` inside would mean the same).
ASCII_DIGITS: Final = re.compile(r"[0-9]+", re.ASCII)


def is_ascii_digits(value: str) -> bool:
    """True for a non-empty string of ``0``-``9`` only."""
    return value.isascii() and value.isdigit()


def ascii_int(text: str) -> int:
    """An ``argparse`` ``type=`` for an integer written in ASCII digits (``-`` allowed: the
    range is the option's own business, checked where it is used, as with ``int``).

    argparse prefixes the message with the option (``argument --port: ...``), so the error
    names the field; plain ``int`` would accept Arabic-Indic ``8583`` as 8583, and ``1_0``.
    """
    if not is_ascii_digits(text.removeprefix("-")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number written in digits 0-9")
    return int(text)


_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def ascii_seconds(text: str) -> float:
    """An ``argparse`` ``type=`` for a positive duration in seconds (``10``, ``2.5``) in ASCII
    digits: plain ``float`` would also take Arabic-Indic digits, ``nan`` and ``inf``."""
    if _SECONDS.fullmatch(text) is None or float(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return float(text)
