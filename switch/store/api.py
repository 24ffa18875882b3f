"""The storage interface the core codes against (SQLite now, PostgreSQL later).

The core owns the live copy of the cards and accounts it has touched and asks the store for
two things only: *reads* of records it has not loaded yet, and *commits* of a ``Changes``
unit (journal row, balanced postings, new balances, holds, the idempotency answer, SMS alert
rows) that must be durable before the answer leaves. ``commit`` may batch many units into
one database transaction (group commit) but resolves each awaiting caller only after that
transaction is durable. Nothing here depends on SQLite semantics: reads are by key, writes
are plain inserts/updates of whole rows, and each unit is all-or-nothing.

Hot-path methods are ``async`` (a PostgreSQL backend awaits its driver there). The plain
methods run at start-up (loading terminals, routes, today's limit usage), for seeding and
operators, and for the SMS worker (``AlertOutbox`` is a blocking contract run in its own
thread); a networked backend may implement them with a synchronous connection.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol

from switch.core.domain import (
    Account,
    Bill,
    Biller,
    BinRoute,
    Card,
    Hold,
    Merchant,
    Terminal,
)
from switch.notify.outbox import AlertOutbox


class StoreError(Exception):
    """The store could not read or commit; the core answers 96 and stops approving."""


class Conflict(Exception):
    """A unit's guards did not hold at commit: another node (or an earlier unit of this one
    that did not commit) changed a row the unit was decided on. Nothing of the unit was
    written; the core reloads those rows and decides again (docs/architecture.md §7). Not a
    ``StoreError``: the store is fine and keeps committing."""


#: ``Changes.guards`` row kinds
GUARD_ACCOUNT: Final = 0
GUARD_CARD: Final = 1


def stamp_source() -> Callable[[], int]:
    """New row versions for one process: a random 30-bit prefix (never 0, the version of a
    row nobody has written since migration 0011) above a 32-bit counter. Stamps, not
    increments: a unit that expects the version an earlier unit of its node was to write
    must conflict when that unit did not commit, even if another node wrote the row in
    between (an increment would give both writes the same number)."""
    base = (secrets.randbits(30) | 1) << 32
    return itertools.count(base + 1).__next__


class JournalRow(NamedTuple):
    txn_id: str
    created_at: float
    business_day: int
    txn_type: str
    channel: str
    response_code: str
    auth_code: str | None
    card_id: int | None
    account_id: int | None
    masked_pan: str
    amount: int
    fee: int
    currency: int
    categories: str
    acquirer_id: str
    terminal_id: str
    stan: str
    transmission: str
    rrn: str
    merchant_id: str
    original_txn_id: str | None
    counter_account_id: int | None
    route: str
    message: str
    # Answered with an error, not a transaction (``switch.core.refusals``): kept for the
    # operator, never shown to a merchant, no idempotency key spent on it.
    refused: bool = False


class IdempotencyRow(NamedTuple):
    key: str
    fingerprint: str
    txn_id: str
    result: str  # JSON of the AuthResult
    created_at: float


class AlertRow(NamedTuple):
    """An SMS to send. Either ``text`` is given, or it is rendered from the posting facts
    (``kind`` ... ``available``) when the delivery worker claims the row."""

    msisdn: str
    text: str
    txn_id: str | None
    created_at: float
    kind: str = ""
    masked_pan: str = ""
    amount: int = 0
    currency: int = 0
    place: str = ""
    available: int = 0


class MerchantEventRow(NamedTuple):
    """A notification to POST to a merchant (``merchant_events``; built by
    ``switch.merchant_notify.events``): ``body`` is the exact JSON sent, signed at send time."""

    event_id: str
    merchant_id: str
    event_type: str
    payment_id: str
    body: str
    created_at: float


class PaymentOrderRow(NamedTuple):
    """The merchant API's facts of a payment (``payment_orders``): its public id, the
    merchant's order reference and metadata (a JSON object of strings)."""

    txn_id: str
    payment_id: str
    merchant_id: str
    order_reference: str
    metadata: str
    created_at: float


class OpenHold(NamedTuple):
    """An open pre-authorization hold with what its expiry needs from the pre-authorization's
    journal row (when it was placed, under which card product and limit categories)."""

    txn_id: str
    account_id: int
    amount: int
    remaining: int
    placed_at: float  # the pre-authorization's journal created_at
    business_day: int
    categories: str
    card_id: int | None
    product: str  # the card's product code ('' if the card row is gone)
    channel: str
    merchant_id: str
    masked_pan: str
    currency: int
    counter_account_id: int | None


@dataclass(slots=True)
class Changes:
    """Everything one authorization writes; committed atomically, durable before the answer.

    Balances and card counters are *snapshots* taken when the unit is built, so a group
    commit never persists the effect of an authorization that is not in the same batch.

    Guards (several nodes over one store, docs/architecture.md §7): ``guards`` holds
    ``(kind, row id, expected version, new version)`` for every account and card the unit
    was decided on, in the order the decisions were made; ``new == expected`` for a row only
    read. The commit writes the unit only if each row's version is the expected one (a unit
    earlier in the same batch that was written counts: versions chain), sets the rows it
    writes to their last new version, and otherwise fails the unit with ``Conflict``. A row
    in ``accounts``/``cards`` without a guard is written unguarded with a version the store
    makes up (so every copy of it elsewhere is stale). ``account_deltas`` are added to the
    rows unguarded: the internal and settlement accounts every unit credits, on which no
    decision rests. ``bill_guards`` holds the paid mark each bill change expects, and
    ``idempotency_expects`` what the key's slot may hold: the unit conflicts if another node
    answered the key first (see ``IdempotencyExpect``).
    """

    journal: JournalRow | None = None
    postings: list[tuple[str, int, int, int]] = field(default_factory=list)
    # txn_id, leg, account_id, amount
    accounts: list[tuple[int, int, int]] = field(default_factory=list)  # id, balance, held
    cards: list[tuple[int, str, int, int, float | None]] = field(default_factory=list)
    # card_id, status, pin_tries, otp_tries, activated_at
    holds: list[tuple[str, int, int, int, str]] = field(default_factory=list)
    # txn_id, account_id, amount, remaining, status
    bills: list[tuple[str, str, str | None]] = field(default_factory=list)  # biller, ref, paid
    otps: list[tuple[int, bytes, float]] = field(default_factory=list)  # card, hash, expires
    otp_deletes: list[int] = field(default_factory=list)
    otp_sends: list[tuple[int, str, float]] = field(default_factory=list)
    # card_id, merchant_id, sent at: a code sent for a merchant (its rate limits count these)
    idempotency: IdempotencyRow | None = None
    alerts: list[AlertRow] = field(default_factory=list)
    guards: list[tuple[int, int, int, int]] = field(default_factory=list)
    # kind (GUARD_ACCOUNT / GUARD_CARD), id, expected version, new version
    account_deltas: list[tuple[int, int, int]] = field(default_factory=list)
    # account_id, balance change, held change (unguarded: internal and settlement accounts)
    bill_guards: list[tuple[str, str, str | None]] = field(default_factory=list)
    # biller, reference, the paid mark expected before the unit's change
    idempotency_expects: IdempotencyExpect | None = None
    # Called exactly once with the outcome (None = durable) when the commit completes, even
    # if whoever awaited the commit was cancelled meanwhile.
    on_settled: Callable[[BaseException | None], object] | None = None
    # An operator's action recorded with the change it made (``switch.operator.audit``)
    audit: list[AuditRow] = field(default_factory=list)
    # A batch of ``switch import`` applied by a running switch (``switch.cardbase.live``)
    cardbase: CardBaseRows | None = None
    # Notifications to merchants (``switch.merchant_notify``): outbox rows written with the
    # payment or order change they report, and the merchant API's order facts of a payment
    merchant_events: list[MerchantEventRow] = field(default_factory=list)
    payment_orders: list[PaymentOrderRow] = field(default_factory=list)


class IdempotencyExpect(NamedTuple):
    """What the idempotency slot of a unit's key may hold for the unit to be written: no row,
    a row older than ``since`` (an expired key, taken over), or the row of ``txn_id`` (a
    stale answer the unit replaces). Anything else is another node's answer: ``Conflict``."""

    since: float
    txn_id: str | None = None


@dataclass(slots=True)
class CardBaseRows:
    """New and changed cards and accounts of one import batch, with the file's progress row,
    in the row layouts of ``switch.store.sqlite_cardbase`` (``write_cardbase_rows``): written
    in the unit's transaction, so the batch and its progress are durable together."""

    new_accounts: list[tuple[object, ...]] = field(default_factory=list)
    account_updates: list[tuple[str, str, int]] = field(default_factory=list)
    new_cards: list[tuple[object, ...]] = field(default_factory=list)
    card_updates: list[tuple[object, ...]] = field(default_factory=list)
    progress: tuple[object, ...] | None = None


@dataclass(frozen=True, slots=True)
class OriginalSummary:
    """What later operations (reversal, capture, refund, void) need about an earlier txn."""

    txn_id: str
    txn_type: str
    channel: str
    response_code: str
    card_id: int | None
    account_id: int | None
    amount: int
    fee: int
    currency: int
    categories: str
    business_day: int
    merchant_id: str
    counter_account_id: int | None  # the account credited (merchant, ATM cash, biller)
    reversed: int  # principal already given back by reversals/voids
    refunded: int
    captured: int
    fee_reversed: int
    route: str
    parent_txn_id: str | None = None  # what this one referred to (a completion's pre-auth)


class Store(AlertOutbox, Protocol):
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""
        ...

    async def close(self) -> None: ...

    def is_empty(self) -> bool:
        """True for a freshly created store (no accounts): the caller may seed demo data."""
        ...

    async def commit(self, changes: Changes) -> None:
        """Persist ``changes`` atomically; return only once durable (group-committed)."""
        ...

    def submit(self, changes: Changes) -> asyncio.Future[None]:
        """Queue ``changes`` for the next group commit; the future completes once durable
        (or fails with ``StoreError``). Cancelling a waiter does not withdraw the unit, and
        ``changes.on_settled`` still runs when the outcome is known."""
        ...

    # -- reads -----------------------------------------------------------------------------
    async def card_by_pan_hash(self, pan_hash: bytes) -> Card | None: ...
    async def card_by_id(self, card_id: int) -> Card | None: ...
    async def account(self, account_id: int) -> Account | None: ...
    async def account_by_number(self, number: str) -> Account | None: ...
    async def bill(self, biller_id: str, reference: str) -> Bill | None: ...
    async def hold(self, txn_id: str) -> Hold | None: ...
    async def bill_paid_by(self, txn_id: str) -> Bill | None: ...
    async def otp(self, card_id: int) -> tuple[bytes, float] | None: ...
    async def idempotent(self, key: str) -> IdempotencyRow | None: ...
    async def otp_sends_since(
        self, card_id: int, merchant_id: str, since: float
    ) -> tuple[int, int]:
        """Codes sent since ``since``: (for this card, by any merchant; by this merchant)."""
        ...

    async def original(self, txn_id: str) -> OriginalSummary | None: ...
    async def txn_id_for_key(self, key: str) -> str | None: ...
    async def journal_for_merchant(self, merchant_id: str, limit: int) -> list[JournalRow]: ...
    async def journal_entry(self, txn_id: str) -> JournalRow | None: ...
    async def open_holds_placed_before(
        self, cutoff: float, after_txn_id: str, limit: int
    ) -> list[OpenHold]:
        """Open holds whose pre-authorization was placed at or before ``cutoff``, in txn_id
        order after ``after_txn_id`` (pages of ``limit``), for the periodic expiry."""
        ...

    def terminals(self) -> list[Terminal]: ...
    def merchants(self) -> list[Merchant]: ...
    def billers(self) -> list[Biller]: ...
    def bin_routes(self) -> list[BinRoute]: ...
    def recent_idempotency_keys(self, since: float) -> list[str]: ...
    def limit_usage(self, business_day: int) -> list[tuple[int, str, int, int]]:
        """Today's limit consumption to rebuild the counters at start:
        (card_id, categories, net amount, count 0/1) per approved debit of ``business_day``."""
        ...

    def max_journal_seq(self) -> int: ...
    def reserve_txn_ids(self, count: int) -> int:
        """Reserve ``count`` transaction numbers for this node, durably, and return the
        number before the first (several nodes allocate from one sequence: blocks never
        overlap, and start above every journal row)."""
        ...

    async def card_limit_usage(self, card_id: int, business_day: int) -> list[tuple[str, int, int]]:
        """One card's limit consumption on ``business_day``, as ``limit_usage`` (categories,
        net amount, count 0/1 per approved debit): a node reloading a card another node
        changed. Read *after* the card row, so the usage is at least as new as its version."""
        ...

    def setting(self, name: str) -> str | None: ...

    # -- administration / seeding (not on the hot path) --------------------------------------
    def insert_account(self, account: Account) -> None: ...
    def insert_card(self, card: Card) -> None: ...
    def insert_terminal(self, terminal: Terminal) -> None: ...
    def insert_merchant(self, merchant: Merchant) -> None: ...
    def insert_biller(self, biller: Biller) -> None: ...
    def insert_bill(self, bill: Bill) -> None: ...
    def insert_bin_route(self, route: BinRoute) -> None: ...
    def put_setting(self, name: str, value: str) -> None: ...
    def update_terminal_keys(self, terminal_id: str, tpk: str, tak: str) -> None:
        """Durably replace a terminal's key cryptograms (key change)."""
        ...

    def flush_admin(self) -> None:
        """Commit the administrative inserts above (durably)."""
        ...


class AuditRow(NamedTuple):
    """One operator action (``operator_audit``): who, when, what, on what, and how it ended."""

    created_at: float
    operator_id: str
    action: str
    target: str
    outcome: str
    detail: str = ""
