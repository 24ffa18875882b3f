"""Per-request working state and the identifiers derived from a request.

``Ctx`` carries one authorization through the pipeline; ``Decline`` ends it with a response
code; ``OriginalState`` is the live view of an earlier transaction that a reversal, capture,
void or refund refers to. The idempotency key and fingerprint decide what counts as a
retransmission (docs/architecture.md §4).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field

from switch.core.domain import ONUS, Account, Card
from switch.core.model import AuthRequest, AuthResult, ResponseCode, TxnType
from switch.store.api import Changes

DEBIT_TYPES = frozenset(
    {
        TxnType.CASH_WITHDRAWAL,
        TxnType.PURCHASE,
        TxnType.PREAUTH,
        TxnType.BILL_PAYMENT,
        TxnType.TRANSFER,
    }
)
REFERRING_TYPES = frozenset({TxnType.COMPLETION, TxnType.REFUND, TxnType.VOID, TxnType.REVERSAL})


class Decline(Exception):
    """Raised inside a step to answer with ``code`` (journaled like any other answer)."""

    def __init__(self, code: ResponseCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Stale(Exception):
    """Raised before a decision section whose cached copies may be older than the rows the
    pipeline reloaded meanwhile (another node's change, docs/architecture.md §7): the
    attempt starts again, nothing was changed yet."""


@dataclass(slots=True)
class OriginalState:
    """Live view of an earlier transaction that later operations refer to."""

    txn_id: str
    txn_type: TxnType
    approved: bool
    card_id: int | None
    account_id: int | None
    amount: int
    fee: int
    currency: int
    categories: tuple[int, ...]
    business_day: int
    merchant_id: str
    counter_account_id: int | None
    route: str
    reversed: int = 0
    refunded: int = 0
    captured: int = 0
    fee_reversed: int = 0
    parent_txn_id: str | None = None  # a completion's pre-authorization


@dataclass(slots=True)
class Ctx:
    """Per-request working state."""

    req: AuthRequest
    now: float
    day: int
    key: str
    fingerprint: str
    txn_id: str = ""
    pan_hash: bytes = b""
    card: Card | None = None
    account: Account | None = None
    fee: int = 0
    categories: tuple[int, ...] = ()
    counter_account_id: int | None = None
    # the live counter account, held until the request settles (the card and account caches
    # are bounded: an object a request still references is never loaded twice)
    counter_account: Account | None = None
    original_txn_id: str | None = None
    route: str = ONUS
    changes: Changes = field(default_factory=Changes)
    issuer_script: bytes | None = None
    arqc_inputs: tuple[object, ...] | None = None
    # retransmissions of this request wait on ``inflight``; once the unit went to the store
    # (``submitted``) only the commit's completion settles it, even if the caller is cancelled
    inflight: asyncio.Future[tuple[str, AuthResult]] | None = None
    submitted: bool = False
    # a 96 whose outcome elsewhere is unknown (a remote issuer's unreadable answer): unlike
    # every other 96 it stays the key's answer, so a retry cannot move the money twice
    outcome_unknown: bool = False
    # several nodes (docs/architecture.md §7): the attempt number (a unit refused by its
    # guards is decided again on reloaded rows), the first attempt's context (whose caller
    # gets ``answer``), the pipeline's reload count when the attempt started (a follow-up
    # decided on copies older than a reload is redone), and the stored answer of a key that
    # this attempt replaces (a stale 96)
    attempt: int = 0
    first: Ctx | None = None
    answer: AuthResult | None = None
    epoch: int = 0
    replaces: str | None = None


_YYMM: dict[int, str] = {}
_CAT_TEXT: dict[tuple[int, ...], str] = {}


def categories_text(cats: tuple[int, ...]) -> str:
    s = _CAT_TEXT.get(cats)
    if s is None:
        s = _CAT_TEXT[cats] = ",".join(str(int(c)) for c in cats)
    return s


def yymm(day: int) -> str:
    """YYMM of a business day number (cards are valid to the end of their expiry month)."""
    s = _YYMM.get(day)
    if s is None:
        d = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        s = _YYMM[day] = f"{d.year % 100:02d}{d.month:02d}"
    return s


def iso_key(acquirer: str, terminal: str, stan: str, transmission: str, cls: str) -> str:
    return f"iso:{cls}:{acquirer}:{terminal}:{stan}:{transmission}"


def idempotency_key(req: AuthRequest) -> str:
    """(acquirer, terminal, STAN, transmission date) -- or the merchant's idempotency key."""
    if req.idempotency_key is not None:
        return f"api:{req.merchant_id or req.acquirer_id}:{req.idempotency_key}"
    cls = "rev" if req.txn_type is TxnType.REVERSAL else "fin"
    return iso_key(req.acquirer_id, req.terminal_id, req.stan, req.transmission, cls)


def fingerprint(req: AuthRequest, pan_hash: bytes) -> str:
    """What must be equal for a retransmission to be the same request (no secrets in clear)."""
    o = req.original
    ref = "" if o is None else f"{o.transaction_id}|{o.stan}|{o.transmission}"
    text = (
        f"{req.txn_type._value_}|{req.channel._value_}|{pan_hash.hex()}|{req.amount}|"
        f"{req.currency}|{req.merchant_id or ''}|{ref}|{req.biller_id or ''}|"
        f"{req.bill_reference or ''}|{req.destination_account or ''}"
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def new_otp() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"
