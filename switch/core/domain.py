"""Domain records: CCP accounts, cards, terminals, merchants, billers, BIN routes.

Cards and accounts are mutable because the core keeps the live copy in memory (one writer
process per issuer partition) and persists each change through the store in the same
transaction as the journal entry that caused it. Everything secret is stored as the HSM
gives it: PINs only as PVV / IBM offset, keys only as cryptograms under the LMK, the PAN
only as a keyed hash plus first 6 / last 4 digits.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass


class CardStatus(enum.StrEnum):
    """Card lifecycle: ordered -> delivered -> active -> blocked / lost / stolen / expired."""

    ORDERED = "ordered"
    DELIVERED = "delivered"
    ACTIVE = "active"
    BLOCKED = "blocked"
    LOST = "lost"
    STOLEN = "stolen"
    EXPIRED = "expired"


ALLOWED_TRANSITIONS: dict[CardStatus, frozenset[CardStatus]] = {
    CardStatus.ORDERED: frozenset({CardStatus.DELIVERED, CardStatus.LOST, CardStatus.STOLEN}),
    CardStatus.DELIVERED: frozenset(
        {CardStatus.ACTIVE, CardStatus.BLOCKED, CardStatus.LOST, CardStatus.STOLEN}
    ),
    CardStatus.ACTIVE: frozenset(
        {CardStatus.BLOCKED, CardStatus.LOST, CardStatus.STOLEN, CardStatus.EXPIRED}
    ),
    CardStatus.BLOCKED: frozenset(
        {CardStatus.ACTIVE, CardStatus.LOST, CardStatus.STOLEN, CardStatus.EXPIRED}
    ),
    CardStatus.LOST: frozenset(),
    CardStatus.STOLEN: frozenset(),
    CardStatus.EXPIRED: frozenset(),
}


class AccountKind(enum.StrEnum):
    CCP = "ccp"  # a customer's postal current account
    GL = "gl"  # an internal ledger account (ATM cash, fees, settlement)


@dataclass(slots=True, weakref_slot=True)  # indexed weakly by switch.core.live_cache
class Account:
    account_id: int
    number: str
    kind: AccountKind
    holder: str
    phone: str
    currency: int
    balance: int
    held: int = 0
    may_go_negative: bool = False
    # the store row's write stamp this copy was read at or last wrote (docs/architecture.md §7)
    version: int = 0

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(slots=True, weakref_slot=True)  # indexed weakly by switch.core.live_cache
class Card:
    card_id: int
    pan_hash: bytes
    pan_first6: str
    pan_last4: str
    account_id: int
    product: str
    expiry: str  # YYMM
    service_code: str
    pan_sequence: str
    pvki: int
    pvv: str
    ibm_offset: str
    pvk: str
    cvk: str
    mk_ac: str
    status: CardStatus
    pin_tries: int = 0
    otp_tries: int = 0
    activated_at: float | None = None
    # the store row's write stamp this copy was read at or last wrote (docs/architecture.md §7)
    version: int = 0

    @property
    def masked_pan(self) -> str:
        return f"{self.pan_first6}******{self.pan_last4}"


@dataclass(frozen=True, slots=True)
class Terminal:
    terminal_id: str
    kind: str  # atm | pos | counter | virtual
    acquirer_id: str
    own: bool  # our own ATM: the lower withdrawal fee
    location: str
    tpk: str  # TPK under the LMK
    tak: str  # MAC key under the LMK ('' when the terminal does not MAC)
    pin_block_format: str  # payShield format code, "01" = ISO 9564 format 0
    settlement_account_id: int


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    name: str
    mcc: str
    city: str
    settlement_account_id: int
    api_key_hash: bytes
    terminal_id: str

    def check_api_key(self, api_key: str) -> bool:
        return hmac.compare_digest(hash_api_key(api_key), self.api_key_hash)


@dataclass(frozen=True, slots=True)
class Biller:
    biller_id: str
    name: str
    category: str  # electricity_gas | water | telephone
    settlement_account_id: int
    reference_pattern: str


@dataclass(slots=True)
class Bill:
    biller_id: str
    reference: str
    amount_due: int
    paid_txn: str | None = None


@dataclass(frozen=True, slots=True)
class BinRoute:
    prefix: str
    destination: str  # "onus" or a remote issuer's name

    @property
    def on_us(self) -> bool:
        return self.destination == ONUS


ONUS = "onus"


@dataclass(slots=True)
class Hold:
    txn_id: str
    account_id: int
    amount: int
    remaining: int
    status: str  # open | captured | released


def hash_api_key(api_key: str) -> bytes:
    """API keys are random 32-byte tokens, so an unsalted SHA-256 is enough to store them."""
    return hashlib.sha256(api_key.encode()).digest()


_LUHN_DOUBLE = {str(d): (2 * d if d < 5 else 2 * d - 9) for d in range(10)}


def luhn_ok(pan: str) -> bool:
    if not (12 <= len(pan) <= 19 and pan.isdigit() and pan.isascii()):
        return False
    rev = pan[::-1]
    dbl = _LUHN_DOUBLE
    total = sum(map(int, rev[0::2])) + sum(dbl[c] for c in rev[1::2])
    return total % 10 == 0


def luhn_complete(partial: str) -> str:
    """Append the Luhn check digit to ``partial``."""
    for d in "0123456789":
        if luhn_ok(partial + d):
            return partial + d
    raise ValueError("partial: not digits")  # unreachable for digit strings


def mask_pan(pan: str) -> str:
    """First 6 / last 4, the most of a PAN that may appear in logs and on screens."""
    if len(pan) < 13:
        return "*" * len(pan)
    return f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}"
