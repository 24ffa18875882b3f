"""Amounts typed on the command line: one unit for ``switch pay`` and ``switch atm``.

A person types DZD as they read them on a receipt: ``2500``, ``2500.5`` or ``2500.00`` (at
most 2 decimals). ``--minor`` says the amount is already an integer number of minor units
(centimes: ``250000`` is 2,500.00 DZD), as scripts and the gRPC API count. Both commands take
the same flag and mean the same thing, so an amount never changes meaning between them.

argparse converts a positional before it has seen ``--minor`` (which may come after it), so
the ``type=`` only checks the shape and :func:`resolve` turns the text into minor units once
the whole line is parsed. ASCII digits only: ``Decimal`` or ``float`` would also take
Arabic-Indic digits, ``1e3``, ``NaN`` or ``Infinity``.
"""

from __future__ import annotations

import argparse
import re
from typing import Final

_DZD: Final = re.compile(r"([0-9]+)(?:\.([0-9]{1,2}))?", re.ASCII)
_MINOR: Final = re.compile(r"[0-9]+", re.ASCII)

MINOR_HELP: Final = "amounts are integer minor units (centimes: 250000 = 2,500.00 DZD)"
AMOUNT_HELP: Final = "in DZD, e.g. 2500 or 2500.50 (with --minor: centimes, e.g. 250050)"


class AmountError(ValueError):
    """An amount that is neither DZD with at most 2 decimals nor (``--minor``) an integer."""


def amount_text(text: str) -> str:
    """``argparse`` ``type=``: the text of an amount, checked for its shape only."""
    if _DZD.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: DZD in digits 0-9 with at most 2 decimals (2500, 2500.50), "
            "or with --minor an integer number of centimes"
        )
    return text


def to_minor(text: str, minor: bool) -> int:
    """``text`` (checked by :func:`amount_text`) in minor units; ``minor``: as typed."""
    if minor:
        if _MINOR.fullmatch(text) is None:
            raise AmountError(f"{text!r}: with --minor, an integer number of centimes")
        return int(text)
    m = _DZD.fullmatch(text)
    if m is None:
        raise AmountError(f"{text!r}: DZD in digits 0-9 with at most 2 decimals")
    return int(m[1]) * 100 + int((m[2] or "").ljust(2, "0"))


def resolve(args: argparse.Namespace, *names: str) -> None:
    """Replace each attribute ``names`` of ``args`` (amount text or None) by minor units.

    Raises :class:`AmountError` whose message starts with the option's name."""
    minor = bool(getattr(args, "minor", False))
    for name in names:
        value = getattr(args, name, None)
        if isinstance(value, str):
            try:
                setattr(args, name, to_minor(value, minor))
            except AmountError as exc:
                raise AmountError(f"{name}: {exc}") from None
