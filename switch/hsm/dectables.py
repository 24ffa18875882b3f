"""Decimalisation tables for IBM 3624 PIN verification (DA/EA): the strength rule, the tables
the HSM holds, and tables encrypted under the LMK.

Why: DA/EA decimalise the encrypted validation data through a 16-digit table the host sends.
With a weak table (``0000000000000000``: the natural PIN is always 0000) the offset check
succeeds exactly when the offset equals the PIN, so a host process recovers any PIN in at most
10,000 calls (the decimalisation-table attack). Like a payShield this HSM therefore

* refuses every table with fewer than 8 distinct digits or a digit more than 4 times, or not
  all decimal (error 25, payShield's "decimalisation table error"), whatever form it came in;
* holds tables itself, referenced as ``K`` + 3 hex index (payShield's user storage form), so
  a host need not send a table at all;
* takes tables encrypted under LMK pair 18-19 variant 1 (16 H, payShield's encrypted
  decimalisation tables; ``encrypt`` is the console command ED) when the policy says so.

The policy (``mode``) says which host-supplied tables are taken, besides held ones:
``clear`` (default, existing clients): any strong 16-digit table; ``held``: a clear table
only if it equals a table the HSM holds (IBM CCA's "use stored decimalisation tables only");
``encrypted``: the 16 characters are an encrypted table (payShield with encrypted tables on).
A differential attack with strong but modified tables needs ``held`` or ``encrypted`` to be
stopped; the PIN failure alarm (``switch.hsm.pinwatch``) makes any such probing visible.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Final

import switch_native as native

from switch.hsm import errors
from switch.hsm.client import HsmError
from switch.hsm.errors import fail
from switch.hsm.lmk import Lmk

#: The standard table (hex digit -> its value mod 10); held at index 000 unless configured.
STANDARD_TABLE: Final = "0123456789012345"
#: payShield encrypts decimalisation tables under LMK pair 18-19, variant 1.
LMK_PAIR: Final = 18
LMK_VARIANT: Final = 0xA6
MODES: Final = ("clear", "held", "encrypted")
MIN_DISTINCT: Final = 8
MAX_REPEAT: Final = 4
_DIGITS: Final = frozenset("0123456789")
_HEX: Final = frozenset("0123456789ABCDEFabcdef")


def check_table(table: str) -> str:
    """``table`` if it is 16 decimal digits passing the strength rule, else error 25."""
    if len(table) != 16 or not _DIGITS.issuperset(table):
        fail(errors.DEC_TABLE_ERROR, "decimalisation table: expected 16 decimal digits")
    counts = Counter(table)
    if len(counts) < MIN_DISTINCT or max(counts.values()) > MAX_REPEAT:
        fail(
            errors.DEC_TABLE_ERROR,
            f"decimalisation table: weak (needs at least {MIN_DISTINCT} distinct digits, "
            f"none more than {MAX_REPEAT} times)",
        )
    return table


def _table_key(lmk: Lmk) -> bytes:
    key = bytearray(lmk.pair(LMK_PAIR))
    key[0] ^= LMK_VARIANT
    return bytes(key)


def encrypt(lmk: Lmk, table: str) -> str:
    """ED: a strong table encrypted under LMK pair 18-19 variant 1 (16 H)."""
    check_table(table)
    return native.des_encrypt_ecb(_table_key(lmk), bytes.fromhex(table)).hex().upper()


def decrypt(lmk: Lmk, encrypted: str) -> str:
    """The clear table of an encrypted one; refuses (25) anything that is not a strong table
    once decrypted (a clear table sent where an encrypted one is expected lands here)."""
    if len(encrypted) != 16 or not _HEX.issuperset(encrypted):
        fail(errors.DEC_TABLE_ERROR, "decimalisation table: expected 16 hex (encrypted)")
    clear = native.des_decrypt_ecb(_table_key(lmk), bytes.fromhex(encrypted)).hex()
    return check_table(clear)


def parse_held(items: Mapping[str, str]) -> dict[str, str]:
    """Held tables from configuration (``{"000": "0123456789012345"}``), each checked.

    Raises ``ValueError`` naming the entry, for a configuration error at start."""
    held: dict[str, str] = {}
    for index, table in items.items():
        if len(index) != 3 or not _HEX.issuperset(index):
            raise ValueError(f"decimalisation table index {index!r}: expected 3 hex digits")
        try:
            held[index.upper()] = check_table(table)
        except HsmError as exc:
            reason = exc.message.removeprefix("decimalisation table: ")
            raise ValueError(f"decimalisation table {index.upper()}: {reason}") from None
    return held


class DecTables:
    """The HSM's decimalisation table policy and the tables it holds."""

    __slots__ = ("_held_values", "held", "lmk", "mode")

    def __init__(
        self, lmk: Lmk, mode: str = "clear", held: Mapping[str, str] | None = None
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"decimalisation table mode {mode!r}: expected one of {MODES}")
        self.lmk = lmk
        self.mode = mode
        self.held = parse_held({"000": STANDARD_TABLE} if held is None else held)
        self._held_values = frozenset(self.held.values())

    def resolve(self, field: str) -> str:
        """The clear table to use for a DA/EA table field: ``K`` + index (held), else a
        16-character table taken as the mode says. Every failure is error 25 (21: no such
        index), and the table returned always passes the strength rule."""
        if field[:1] in ("K", "k"):
            table = self.held.get(field[1:].upper())
            if len(field) != 4 or table is None:
                fail(errors.INVALID_INDEX, f"decimalisation table: no table held at {field!r}")
            return table
        if self.mode == "encrypted":
            return decrypt(self.lmk, field)
        table = check_table(field)
        if self.mode == "held" and table not in self._held_values:
            fail(
                errors.DEC_TABLE_ERROR,
                "decimalisation table: not one the HSM holds (mode 'held')",
            )
        return table
