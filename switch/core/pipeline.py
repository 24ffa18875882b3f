"""The authorization pipeline: ``AuthRequest`` -> checks -> ledger -> ``AuthResult``.

Steps (docs/architecture.md §1): validate (Luhn, amounts, currency, duplicates) -> route by BIN
-> card and account -> security through the ``HsmClient`` (PIN by PVV, CVV2, ARQC/ARPC, OTP)
-> limits and velocity (the compiled ``LimitsEngine``) -> ledger (balanced postings, holds,
SMS alert) -> answer, sent only once the store says the unit is durable.

Concurrency model: one event loop owns the live copy of every card and account it has
loaded. Between two ``await`` points nothing else runs, so the decision section (limits,
balance, postings) has no ``await`` in it: it checks and applies in one go, then hands the
snapshot of the changes to the store's group commit and waits. A retransmission that arrives
while its first copy is still in flight waits for that copy's answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import random
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from switch.config import Product, Schedule, SwitchConfig
from switch.core.business_day import day_number
from switch.core.card_checks import check_track2_rules, verify_track2_cvv
from switch.core.categories import N_CATEGORIES, LimitCategory, categories_for
from switch.core.context import (
    DEBIT_TYPES,
    REFERRING_TYPES,
    Ctx,
    Decline,
    OriginalState,
    Stale,
    categories_text,
    fingerprint,
    idempotency_key,
    yymm,
)
from switch.core.domain import (
    Account,
    Biller,
    Card,
    CardStatus,
    Hold,
    Merchant,
    Terminal,
    luhn_ok,
    mask_pan,
)
from switch.core.emv import TlvError, arqc_transaction_data, encode_tlv, parse_tlv
from switch.core.followups import referring
from switch.core.hmac_sha256 import HmacSha256
from switch.core.interchange import AcquirerConfig, PinKey, is_our_terminal, pin_key
from switch.core.ledger_accounts import GL_FEES, GL_INTERBANK_ATM, GL_INTERBANK_POS
from switch.core.limits import LimitsEngine
from switch.core.live_cache import DEFAULT_CAPACITY, LiveCache
from switch.core.model import AuthRequest, AuthResult, Channel, ResponseCode, TxnType
from switch.core.refusals import is_merchant_refusal
from switch.core.remote import BinTable, RemoteIssuer
from switch.core.results import decode_result, encode_result
from switch.digits import is_ascii_digits
from switch.hsm.client import HsmClient, HsmError
from switch.store.api import (
    GUARD_ACCOUNT,
    GUARD_CARD,
    AlertRow,
    Changes,
    Conflict,
    IdempotencyExpect,
    IdempotencyRow,
    JournalRow,
    Store,
    StoreError,
    stamp_source,
)

log = logging.getLogger("switch.core")

RC = ResponseCode
MAX_AMOUNT: Final = 10**12  # minor units; anything above is a malformed amount
IDEMPOTENCY_WINDOW_S: Final = 2 * 86400
OTP_TTL_S: Final = 300.0
#: Attempts of one request whose unit the store refused (another node changed a row it was
#: decided on): after that many, 96 (gRPC UNAVAILABLE, "retry") rather than a wrong answer.
MAX_ATTEMPTS: Final = 8
#: Transaction numbers a node reserves at a time when several share the store.
TXN_ID_BLOCK: Final = 10_000
# payShield errors meaning "not a valid PIN block under that key" (20: PIN block invalid,
# 23: format, 24: PIN length): for the cardholder that is a 55, not a system error.
BAD_PIN_BLOCK_CODES: Final = frozenset({"20", "23", "24"})
# IBM 3624 offsets (cards without a PVV): the table is the one the HSM holds at index 000
# (``K000``, payShield user storage form), so no table travels to the HSM in clear and the
# HSM never has to trust one from a host. DECIMALISATION_TABLE is what it holds by default.
DECIMALISATION_TABLE: Final = "0123456789012345"
DECIMALISATION_TABLE_REF: Final = "K000"


def ibm_validation_data(pan: str) -> str:
    """IBM 3624 PIN validation data a payShield's DA/EA can carry: the first 11 of the 12
    account digits (the rightmost 12 without the check digit) and the last 5 of them, which
    is its 12A field ``11 digits + N`` expanded (the TCP client writes it so). The whole PAN
    (the former choice) does not fit that field: over a TCP HSM every IBM-offset PIN failed
    with error 15."""
    account = pan[:-1][-12:]
    return account[:11] + account[-5:]


ALLOWED_CHANNELS: dict[TxnType, frozenset[Channel]] = {
    TxnType.CASH_WITHDRAWAL: frozenset({Channel.ATM, Channel.COUNTER}),
    TxnType.BALANCE_INQUIRY: frozenset({Channel.ATM, Channel.COUNTER, Channel.POS}),
    TxnType.PURCHASE: frozenset({Channel.POS, Channel.ECOMMERCE}),
    TxnType.PREAUTH: frozenset({Channel.POS, Channel.ECOMMERCE}),
    TxnType.BILL_PAYMENT: frozenset(Channel),
    TxnType.TRANSFER: frozenset(Channel),
}
ALERT_KIND: dict[TxnType, str] = {
    TxnType.CASH_WITHDRAWAL: "withdrawal",
    TxnType.PURCHASE: "payment",
    TxnType.PREAUTH: "payment",
    TxnType.BILL_PAYMENT: "bill_payment",
    TxnType.TRANSFER: "transfer",
    TxnType.REFUND: "refund",
}


def retryable(ctx: Ctx, result: AuthResult) -> bool:
    """Whether ``result`` must not become the answer to the request's key.

    A 96 means the switch could not decide (the HSM or the store was unreachable, the HSM
    failed, a record was missing, the issuer answered 96): nothing was posted, and the gRPC
    API tells the merchant to retry with the same key. Were the 96 stored, that retry would
    get it back forever. The one exception is a 96 whose outcome at a remote issuer is
    unknown: it stays, so a retransmission is never forwarded twice.
    """
    return result.response_code is RC.SYSTEM_MALFUNCTION and not ctx.outcome_unknown


#: The end of the message of the one 96 a key keeps (a remote issuer's unreadable answer).
BAD_ANSWER: Final = ": bad answer"


def stale_96(first: AuthResult) -> bool:
    """A stored 96 that ``retryable`` would not have stored: an earlier release remembered
    every 96 as the key's answer, so a merchant's "retry with the same key" got UNAVAILABLE
    for two days. Such a key is processed afresh instead of replayed."""
    return first.response_code is RC.SYSTEM_MALFUNCTION and not first.message.endswith(BAD_ANSWER)


class Pipeline:
    def __init__(
        self,
        *,
        store: Store,
        hsm: HsmClient,
        config: SwitchConfig,
        pan_key: bytes,
        clock: Callable[[], float] = time.time,
        cache_size: int = DEFAULT_CAPACITY,
        shared: bool = False,
    ) -> None:
        self.store = store
        # Other nodes write the same store (docs/architecture.md §7): transaction numbers
        # come in reserved blocks, a card loaded from the store brings its limit usage along,
        # and a unit's idempotency row is guarded against another node's answer.
        self.shared = shared
        self.hsm = hsm
        self.config = config
        self._pan_key = pan_key
        self._pan_hmac = HmacSha256(pan_key)
        self.clock = clock
        self.tz = config.timezone
        self.limits = LimitsEngine(N_CATEGORIES)
        # Bounded (``cache_size`` entries each, plus those pinned by units not yet durable
        # and those a request in flight still holds): switch.core.live_cache says why.
        self.cards: LiveCache[bytes, Card] = LiveCache(cache_size)
        # every live card by id (only those alive: a card found nowhere is read from the store)
        self.cards_by_id: weakref.WeakValueDictionary[int, Card] = weakref.WeakValueDictionary()
        self.accounts: LiveCache[int, Account] = LiveCache(cache_size)
        self.terminals: dict[str, Terminal] = {}
        self.merchants: dict[str, Merchant] = {}
        self.billers: dict[str, Biller] = {}
        self.bins = BinTable([])
        self.remote: dict[str, RemoteIssuer] = {}
        self.acquirers: dict[str, AcquirerConfig] = {}  # interchange acquirers (field 32)
        self.originals: dict[str, OriginalState] = {}
        self.holds: dict[str, Hold] = {}
        self.bills_paid: dict[tuple[str, str], str | None] = {}
        self._bill_due: dict[tuple[str, str], int] = {}
        self._inflight: dict[str, asyncio.Future[tuple[str, AuthResult]]] = {}
        # Keys answered recently, so a new request costs no idempotency read. Two generations
        # (current and previous window, at least IDEMPOTENCY_WINDOW_S): a key older than that
        # is a new request (ISO 8583 dates repeat yearly) and takes its stored slot over.
        self._done_keys: set[str] = set()
        self._done_prev: set[str] = set()
        self._done_rotated = 0.0
        self._seq = 0
        self._seq_end = 1 << 62  # the last number of the reserved block (shared store)
        self._stamp = stamp_source()  # new row versions (guards, docs/architecture.md §7)
        self._resident: set[int] = set()  # accounts credited by deltas, never decided on
        self.refresh_epoch = 0  # rows reloaded after a conflict (follow-ups check it)
        self.conflicts = 0  # statistics: units refused by their guards
        # rows another node wrote (its notifications): reloaded by one task (_reload_stale)
        self._stale_accounts: dict[int, int] = {}
        self._stale_cards: dict[int, int] = {}
        self._reloader: asyncio.Task[None] | None = None
        self._reloads_stopped = False
        # account id -> ids of its cards made live (shared mode only; may name cards gone since)
        self._cards_of: dict[int, list[int]] = {}
        self.reloads = 0  # statistics: live accounts and cards reloaded on a notification
        self._retries: set[asyncio.Task[None]] = set()
        self._sched_cache: dict[tuple[str, int], Schedule] = {}
        self.gl: dict[str, int] = {}
        self.halted: str | None = None
        # called with each unit before it is queued (SwitchCore.add_unit_observer)
        self.unit_observers: tuple[Callable[[Changes], None], ...] = ()

    # -- start -------------------------------------------------------------------------------
    async def load(self) -> None:
        s = self.store
        self.terminals = {t.terminal_id: t for t in s.terminals()}
        self.merchants = {m.merchant_id: m for m in s.merchants()}
        self.billers = {b.biller_id: b for b in s.billers()}
        self.bins = BinTable(s.bin_routes())
        self._seq = s.max_journal_seq()
        if self.shared:
            self._reserve_txn_ids()
        now = self.clock()
        self._done_keys = set(s.recent_idempotency_keys(now - IDEMPOTENCY_WINDOW_S))
        self._done_rotated = now
        for code in (GL_FEES, GL_INTERBANK_ATM, GL_INTERBANK_POS):
            acct = await s.account_by_number(code)
            if acct is None:
                raise StoreError(f"internal account {code} is missing from the store")
            self.accounts.resident(acct.account_id, acct)
            self._resident.add(acct.account_id)
            self.gl[code] = acct.account_id
        # The settlement accounts the decision section credits by id live in memory for good
        # (resident: never evicted). Cardholders' cards and accounts load on first use only.
        settlement = [t.settlement_account_id for t in self.terminals.values()]
        settlement += [m.settlement_account_id for m in self.merchants.values()]
        settlement += [b.settlement_account_id for b in self.billers.values()]
        for account_id in settlement:
            acct = await self.account(account_id)
            if acct is None:
                raise StoreError(f"settlement account {account_id} is missing from the store")
            self.accounts.resident(account_id, acct)
            self._resident.add(account_id)
        self.rebuild_limits(day_number(now, self.tz))

    def rebuild_limits(self, day: int) -> None:
        import numpy as np

        cards: list[int] = []
        cats: list[int] = []
        amounts: list[int] = []
        counts: list[int] = []
        for card_id, categories, amount, count in self.store.limit_usage(day):
            for c in categories.split(","):
                cards.append(card_id)
                cats.append(int(c))
                amounts.append(max(amount, 0))
                counts.append(count)
        n = len(cards)
        self.limits.rebuild(
            np.asarray(cards, dtype=np.int64),
            np.asarray(cats, dtype=np.int32),
            np.asarray(amounts, dtype=np.int64),
            np.full(n, day, dtype=np.int32),
            counts=np.asarray(counts, dtype=np.int64),
            today=day,
        )

    # -- helpers -----------------------------------------------------------------------------
    def pan_hash(self, pan: str) -> bytes:
        return self._pan_hmac.digest(pan.encode())

    def _next_txn_id(self) -> str:
        self._seq += 1
        if self._seq > self._seq_end:
            self._reserve_txn_ids()
        return f"{self._seq:012d}"

    def _reserve_txn_ids(self) -> None:
        """A block of numbers no other node uses (a short blocking write every 10,000)."""
        start = self.store.reserve_txn_ids(TXN_ID_BLOCK)
        self._seq = start + 1
        self._seq_end = start + TXN_ID_BLOCK

    def schedule(self, product: Product, day: int) -> Schedule:
        k = (product.code, day)
        s = self._sched_cache.get(k)
        if s is None:
            s = product.schedule_on(dt.date(1970, 1, 1) + dt.timedelta(days=day))
            self._sched_cache[k] = s
        return s

    async def card(self, pan_hash: bytes) -> Card | None:
        c = self.cards.get(pan_hash)
        if c is None:
            both = None if self.shared else getattr(self.store, "card_and_account", None)
            if both is not None:  # one statement for the card and its account (a cold load)
                got = await both(pan_hash)
                if got is None:
                    return None
                loaded, acct = got
                if acct is not None:  # unless a live copy exists: then that one stays
                    self.accounts.setdefault(acct.account_id, acct)
            else:
                loaded = await self.store.card_by_pan_hash(pan_hash)
            if loaded is None:
                return None
            if self.shared:
                return await self._adopt_card(loaded)
            c = self.cards.setdefault(pan_hash, loaded)  # a concurrent load may have won
            self.cards_by_id.setdefault(c.card_id, c)
        return c

    async def _adopt_card(self, loaded: Card) -> Card:
        """A card read from a shared store becomes live with today's limit usage, read once
        its account is live: another node may have used the card since this node's
        counters were built, and the account's version is what covers the usage (every
        change of a card's usage writes its account), so the usage must be no older than
        the account copy it will be decided with."""
        account = await self.account(loaded.account_id)
        day = self._usage_day()
        for _ in range(8):  # the account reloaded meanwhile (a notification): read it again
            seen = None if account is None else account.version
            usage = await self.store.card_limit_usage(loaded.card_id, day)
            if account is None or account.version == seen:
                break
        c = self.cards.get(loaded.pan_hash)
        if c is not None:  # a concurrent load won
            return c
        self._set_usage(loaded.card_id, usage, day)
        c = self.cards.setdefault(loaded.pan_hash, loaded)
        self.cards_by_id[c.card_id] = c
        if self.shared:  # only a shared store's refresh and reloads look cards up by account
            self._index_card_by_account(c)
        return c

    def _index_card_by_account(self, c: Card) -> None:
        cards_of = self._cards_of
        cards_of.setdefault(c.account_id, []).append(c.card_id)
        if len(cards_of) > 2 * self.cards.capacity:  # ids of cards gone: rebuilt now and then
            self._cards_of = {}
            for live in list(self.cards_by_id.values()):
                self._cards_of.setdefault(live.account_id, []).append(live.card_id)

    def _usage_day(self) -> int:
        today = day_number(self.clock(), self.tz)
        current = self.limits.current_day
        return today if current is None else max(today, current)

    def _set_usage(self, card_id: int, usage: list[tuple[str, int, int]], day: int) -> None:
        """The card's counters of ``day`` become the store's (``card_limit_usage`` rows)."""
        totals: dict[int, tuple[int, int]] = {}
        for categories, amount, count in usage:
            for c in categories.split(","):
                if c:
                    a, n = totals.get(int(c), (0, 0))
                    totals[int(c)] = (a + max(amount, 0), n + count)
        eng = self.limits
        for cat in range(N_CATEGORIES):
            want = totals.get(cat, (0, 0))
            have = eng.usage(card_id, cat, day)
            if have == want:
                continue
            eng.release(card_id, cat, have[0], day, have[1])
            amount, count = want
            if amount or count:  # the engine counts one per reservation
                eng.check_and_reserve(card_id, cat, amount, day, 1 << 62, 1 << 30)
                for _ in range(count - 1):
                    eng.check_and_reserve(card_id, cat, 0, day, 1 << 62, 1 << 30)
                if count == 0:
                    eng.release(card_id, cat, 0, day, 1)

    async def card_by_id(self, card_id: int) -> Card | None:
        """The live card with this id, read from the store if none is alive."""
        c = self.cards_by_id.get(card_id)
        if c is not None:
            return self.cards.setdefault(c.pan_hash, c)  # marked recently used
        loaded = await self.store.card_by_id(card_id)
        if loaded is None:
            return None
        if self.shared:
            return await self._adopt_card(loaded)
        c = self.cards.setdefault(loaded.pan_hash, loaded)
        self.cards_by_id.setdefault(c.card_id, c)
        return c

    async def account(self, account_id: int) -> Account | None:
        a = self.accounts.get(account_id)
        if a is None:
            loaded = await self.store.account(account_id)
            if loaded is None:
                return None
            a = self.accounts.setdefault(account_id, loaded)
        return a

    async def account_by_number(self, number: str) -> Account | None:
        loaded = await self.store.account_by_number(number)
        if loaded is None:
            return None
        live = self.accounts.setdefault(loaded.account_id, loaded)
        if self.shared and loaded.account_id in self._resident:
            # a GL or settlement account: every node credits it (PostgreSQL: each its own
            # shard row, summed by the read), so this node's copy misses the others' credits
            return loaded
        return live

    # -- entry point -------------------------------------------------------------------------
    async def authorize(self, req: AuthRequest) -> AuthResult:
        try:
            result = await self._authorize(req)
        except Decline as d:  # a validation failure before anything was journaled
            result = AuthResult(d.code, d.message)
        except Exception:  # never crash the caller: 96, and the reason in the log
            log.exception("authorization failed unexpectedly (txn type %s)", req.txn_type)
            result = AuthResult(RC.SYSTEM_MALFUNCTION, "internal error")
        return result  # counted, timed and traced by SwitchCore.authorize (switch.observe)

    async def _authorize(self, req: AuthRequest) -> AuthResult:
        if self.halted is not None:
            return AuthResult(RC.SYSTEM_MALFUNCTION, f"switch halted: {self.halted}")
        pan_hash = self.pan_hash(req.pan) if req.pan and isinstance(req.pan, str) else b""
        # A PAN whose card is already loaded passed the Luhn check when it was loaded.
        self._validate(req, pan_hash in self.cards)
        key = idempotency_key(req)
        fp = fingerprint(req, pan_hash)

        pending = self._inflight.get(key)
        if pending is not None:
            first_fp, first = await asyncio.shield(pending)
            return self._replay(first_fp, fp, first)
        replaces: str | None = None
        if key in self._done_keys or key in self._done_prev:
            row = await self.store.idempotent(key)
            if row is not None:
                first = decode_result(row.result)
                if not stale_96(first):
                    return self._replay(row.fingerprint, fp, first)
                replaces = row.txn_id  # processed afresh; the new answer takes the slot over

        now = self.clock()
        ctx = Ctx(req=req, now=now, day=day_number(now, self.tz), key=key, fingerprint=fp)
        ctx.pan_hash = pan_hash
        ctx.replaces = replaces
        ctx.epoch = self.refresh_epoch
        ctx.txn_id = self._next_txn_id()
        fut: asyncio.Future[tuple[str, AuthResult]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = ctx.inflight = fut
        try:
            return await self._process(ctx)
        except BaseException as exc:
            if not ctx.submitted:  # nothing reached the store: waiters see the failure
                del self._inflight[key]
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: waiters get it, nobody else needs to
            raise  # (once submitted, _settle runs when the commit completes, cancelled or not)

    @staticmethod
    def _replay(first_fp: str, fp: str, first: AuthResult) -> AuthResult:
        if not hmac.compare_digest(first_fp, fp):
            return AuthResult(
                RC.DUPLICATE_TRANSMISSION,
                "duplicate transmission: same identifiers as an earlier, different request",
            )
        if first.replayed:
            return first
        return AuthResult(
            first.response_code,
            first.message,
            first.auth_code,
            first.transaction_id,
            first.available_balance,
            first.ledger_balance,
            first.currency,
            first.approved_amount,
            first.issuer_script,
            replayed=True,
        )

    def _validate(self, req: AuthRequest, known_pan: bool = False) -> None:
        if not isinstance(req.txn_type, TxnType):
            raise Decline(RC.INVALID_TRANSACTION, "txn_type: unknown transaction type")
        if not isinstance(req.channel, Channel):
            raise Decline(RC.INVALID_TRANSACTION, "channel: unknown channel")
        if not isinstance(req.amount, int) or isinstance(req.amount, bool):
            raise Decline(RC.INVALID_AMOUNT, "amount: must be an integer in minor units")
        if req.amount < 0 or req.amount > MAX_AMOUNT:
            raise Decline(RC.INVALID_AMOUNT, "amount: out of range")
        if req.idempotency_key is None and (not req.stan or not req.transmission):
            raise Decline(RC.FORMAT_ERROR, "stan/transmission: required without idempotency key")
        if not req.acquirer_id or not req.terminal_id:
            raise Decline(RC.FORMAT_ERROR, "acquirer_id/terminal_id: required")
        referring = req.txn_type in REFERRING_TYPES
        if (req.pan or not referring) and not known_pan:
            if not isinstance(req.pan, str) or not luhn_ok(req.pan):
                raise Decline(RC.INVALID_CARD_NUMBER, "pan: not a valid card number (Luhn)")
        if referring and req.original is None:
            raise Decline(RC.FORMAT_ERROR, "original: required for this transaction type")
        if req.pin_block is not None and len(req.pin_block) not in (8, 16):
            raise Decline(RC.FORMAT_ERROR, "pin_block: must be 8 or 16 bytes")
        if req.expiry is not None and not (len(req.expiry) == 4 and is_ascii_digits(req.expiry)):
            raise Decline(RC.FORMAT_ERROR, "expiry: must be YYMM")
        if req.cvv2 is not None and not (len(req.cvv2) == 3 and is_ascii_digits(req.cvv2)):
            raise Decline(RC.FORMAT_ERROR, "cvv2: must be 3 digits")
        if req.otp is not None and not (len(req.otp) == 6 and is_ascii_digits(req.otp)):
            raise Decline(RC.FORMAT_ERROR, "otp: must be 6 digits")
        if req.txn_type in DEBIT_TYPES and req.amount == 0:
            raise Decline(RC.INVALID_AMOUNT, "amount: must be positive")

    # -- processing --------------------------------------------------------------------------
    async def _process(self, ctx: Ctx) -> AuthResult:
        req = ctx.req
        try:
            if req.txn_type in REFERRING_TYPES:
                result = await self._referring(ctx)
            else:
                route = self.bins.route(req.pan)
                if route is None:
                    raise Decline(RC.INVALID_CARD_NUMBER, "pan: no BIN route for this card")
                if not route.on_us:
                    ctx.route = route.destination
                    result = await self._remote(ctx, route.destination)
                else:
                    result = await self._on_us(ctx)
        except Decline as d:
            result = AuthResult(d.code, d.message, transaction_id=ctx.txn_id)
            if ctx.arqc_inputs is not None:  # the ARPC must carry the decline's ARC
                result = await self._with_arpc(ctx, result)
        except (OSError, TimeoutError) as exc:  # a TCP HSM that is down or too slow
            log.error("HSM unreachable during %s: %s", req.txn_type, type(exc).__name__)
            result = AuthResult(RC.SYSTEM_MALFUNCTION, "HSM unavailable", transaction_id=ctx.txn_id)
        except HsmError as exc:
            log.error("HSM error %s during %s", exc.code, req.txn_type)
            result = AuthResult(
                RC.SYSTEM_MALFUNCTION, f"HSM error {exc.code}", transaction_id=ctx.txn_id
            )
        return await self._finish(ctx, result)

    async def _referring(self, ctx: Ctx) -> AuthResult:
        """A follow-up, started again while rows it read were reloaded meanwhile (``Stale``)."""
        for _ in range(MAX_ATTEMPTS):
            try:
                return await referring(self, ctx)
            except Stale:
                ctx.epoch = self.refresh_epoch
        raise Decline(RC.SYSTEM_MALFUNCTION, "concurrent updates on another node: retry")

    async def _finish(self, ctx: Ctx, result: AuthResult) -> AuthResult:
        req = ctx.req
        card = ctx.card
        ch = ctx.changes
        approved = result.response_code is RC.APPROVED
        retry = retryable(ctx, result)
        refused = retry or is_merchant_refusal(req, result)
        ch.journal = JournalRow(
            txn_id=ctx.txn_id,
            created_at=ctx.now,
            business_day=ctx.day,
            # plain str, not the StrEnum member: sqlite3 binds an exact str much faster
            txn_type=req.txn_type._value_,
            channel=req.channel._value_,
            response_code=result.response_code._value_,
            auth_code=result.auth_code,
            card_id=None if card is None else card.card_id,
            account_id=None if ctx.account is None else ctx.account.account_id,
            masked_pan=mask_pan(req.pan) if req.pan else "",
            amount=(result.approved_amount or 0) if approved else req.amount,
            fee=ctx.fee if approved else 0,
            currency=req.currency,
            categories=categories_text(ctx.categories) if approved else "",
            acquirer_id=req.acquirer_id,
            terminal_id=req.terminal_id,
            stan=req.stan,
            transmission=req.transmission,
            rrn=req.rrn or ctx.txn_id,  # none from the acquirer: ours (field 37 of the answer)
            merchant_id=req.merchant_id or "",
            original_txn_id=ctx.original_txn_id,
            counter_account_id=ctx.counter_account_id,
            route=ctx.route,
            message=result.message,
            refused=refused,
        )
        if retry:
            # "Could not decide" (HSM or store unreachable, an HSM failure): nothing moved, so
            # the attempt is journaled for the operator but is not the key's answer -- a retry
            # (same merchant key, or an ATM's retransmission) is processed afresh once the
            # fault is gone. A one-time code it verified stays usable for that retry.
            ch.otp_deletes.clear()
        if not refused:  # a refused call records nothing the caller sees, its key included
            ch.idempotency = IdempotencyRow(
                ctx.key, ctx.fingerprint, ctx.txn_id, encode_result(result), ctx.now
            )
            if self.shared:  # another node may answer the same key first
                ch.idempotency_expects = IdempotencyExpect(
                    ctx.now - IDEMPOTENCY_WINDOW_S, ctx.replaces
                )
        if not retry:
            # the card and account the answer was decided on, if the unit does not write them
            self._read_guards(ch, card, ctx.account)
        # Bookkeeping rides on the commit itself, not on this coroutine: a caller cancelled
        # while waiting (a gRPC deadline) must not leave a durable posting without its
        # idempotency entry, or the client's retry would post twice.
        ch.on_settled = lambda error: self._settle(ctx, result, error)
        try:
            committed = self.submit(ch)
        except StoreError as exc:
            return self._settle(ctx, result, exc)
        ctx.submitted = True
        try:
            await committed
        except StoreError:
            return AuthResult(RC.SYSTEM_MALFUNCTION, "store unavailable", transaction_id=ctx.txn_id)
        except Conflict:  # decided again on reloaded rows (_retry): its answer is the answer
            assert ctx.inflight is not None
            _, last = await asyncio.shield(ctx.inflight)
            answer = (ctx.first or ctx).answer
            return last if answer is None else answer
        return result

    def submit(self, ch: Changes) -> asyncio.Future[None]:
        """``store.submit``, with every card and account the unit snapshots pinned in the
        caches until the unit settles: until then the store still holds their old rows, so an
        evicted entry read back would lose the change. Every unit that snapshots a live card
        or account goes through here (or ``commit``)."""
        for observe in self.unit_observers:  # rows that must commit with the unit
            observe(ch)
        pinned_accounts = self.accounts.pin_all([a[0] for a in ch.accounts])
        pan_hashes: list[bytes] = []
        if ch.cards:  # rare on the hot path: only a PIN-try or status change snapshots a card
            by_id = self.cards_by_id
            found = [by_id.get(c[0]) for c in ch.cards]
            pan_hashes = self.cards.pin_all([c.pan_hash for c in found if c is not None])
        if not pinned_accounts and not pan_hashes:
            return self.store.submit(ch)
        accounts, cards = self.accounts, self.cards
        settled = ch.on_settled

        def on_settled(error: BaseException | None) -> object:
            try:
                return None if settled is None else settled(error)
            finally:
                accounts.unpin_all(pinned_accounts)
                cards.unpin_all(pan_hashes)

        ch.on_settled = on_settled
        try:
            return self.store.submit(ch)
        except BaseException:
            ch.on_settled = settled  # never called: the store refused the unit outright
            accounts.unpin_all(pinned_accounts)
            cards.unpin_all(pan_hashes)
            raise

    async def commit(self, ch: Changes) -> None:
        """``submit`` and wait until the unit is durable."""
        await self.submit(ch)

    def _settle(self, ctx: Ctx, result: AuthResult, error: BaseException | None) -> AuthResult:
        """The unit is durable (or failed): answer retransmissions and remember the key.
        Refused by its guards (``Conflict``): nobody is answered yet, the request is decided
        again on reloaded rows (``_retry``), whether or not its caller still waits."""
        if isinstance(error, Conflict):
            self.conflicts += 1
            task = asyncio.get_running_loop().create_task(self._retry(ctx))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return result
        if error is None:
            if ctx.changes.idempotency is not None:  # a retryable answer remembers no key
                self._done_keys.add(ctx.key)
            if ctx.now - self._done_rotated > IDEMPOTENCY_WINDOW_S:
                self._done_prev, self._done_keys = self._done_keys, set()
                self._done_rotated = ctx.now
        else:
            self.halted = str(error)
            log.critical("store commit failed, approvals stopped: %s", error)
            result = AuthResult(
                RC.SYSTEM_MALFUNCTION, "store unavailable", transaction_id=ctx.txn_id
            )
        (ctx.first or ctx).answer = result
        if self._inflight.get(ctx.key) is ctx.inflight:
            del self._inflight[ctx.key]
        if ctx.inflight is not None and not ctx.inflight.done():
            ctx.inflight.set_result((ctx.fingerprint, result))
        return result

    # -- several nodes: guards, conflicts, reloads (docs/architecture.md §7) -------------------
    def _read_guards(self, ch: Changes, card: Card | None, account: Account | None) -> None:
        """Guard the rows an answer rests on that the unit does not write (a decline, an
        inquiry): another node's change to them refuses the unit."""
        guards = ch.guards
        if card is not None:
            cid = card.card_id
            for g in guards:
                if g[1] == cid and g[0] == GUARD_CARD:
                    break
            else:
                guards.append((GUARD_CARD, cid, card.version, card.version))
        if account is not None:
            aid = account.account_id
            for g in guards:
                if g[1] == aid and g[0] == GUARD_ACCOUNT:
                    break
            else:
                if aid not in self._resident:
                    guards.append((GUARD_ACCOUNT, aid, account.version, account.version))

    async def _retry(self, old: Ctx) -> None:
        """Decide ``old``'s request again after its unit was refused: reload the rows it was
        decided on, answer with the key's stored answer if another node gave one, else run
        it afresh (a new transaction number); after MAX_ATTEMPTS, 96."""
        first = old.first or old
        fut = old.inflight
        assert fut is not None
        try:
            # a short random pause, growing with the attempts, so two nodes that keep
            # deciding on the same account stop colliding in step
            await asyncio.sleep(random.uniform(0, 0.002) * old.attempt)
            await self.refresh(old.changes)
            now = self.clock()
            ctx = Ctx(req=old.req, now=now, day=day_number(now, self.tz), key=old.key,
                      fingerprint=old.fingerprint)  # fmt: skip
            ctx.pan_hash = old.pan_hash
            ctx.attempt = old.attempt + 1
            ctx.first = first
            ctx.inflight = fut
            ctx.epoch = self.refresh_epoch
            ctx.replaces = old.replaces
            row = await self.store.idempotent(old.key)
            if row is not None and row.created_at >= now - IDEMPOTENCY_WINDOW_S:
                stored = decode_result(row.result)
                if not stale_96(stored):  # another node answered the key: that is the answer
                    first.answer = self._replay(row.fingerprint, old.fingerprint, stored)
                    self._done_keys.add(old.key)
                    if self._inflight.get(old.key) is fut:
                        del self._inflight[old.key]
                    if not fut.done():
                        fut.set_result((row.fingerprint, stored))
                    return
                ctx.replaces = row.txn_id
            ctx.txn_id = self._next_txn_id()
            if ctx.attempt >= MAX_ATTEMPTS:
                log.warning("txn %s: %d conflicting attempts, answered 96", ctx.txn_id,
                            ctx.attempt)  # fmt: skip
                busy = "concurrent updates on another node: retry"
                await self._finish(ctx, AuthResult(RC.SYSTEM_MALFUNCTION, busy,
                                                   transaction_id=ctx.txn_id))  # fmt: skip
            else:
                await self._process(ctx)
        except Exception:
            log.exception("retry of a conflicting unit failed")
            if not fut.done():
                first.answer = AuthResult(RC.SYSTEM_MALFUNCTION, "internal error")
                if self._inflight.get(old.key) is fut:
                    del self._inflight[old.key]
                fut.set_result((old.fingerprint, first.answer))

    async def refresh(self, ch: Changes) -> None:
        """Reload from the store every account and card ``ch`` was decided on, into the live
        objects in place (a request holding one sees the new values), with a card's limit
        usage read after its row. Cached follow-up state of those accounts (originals,
        holds) is dropped and ``refresh_epoch`` moves, so a follow-up decided on older
        copies is redone; bills the unit guarded are read again."""
        account_ids = {g[1] for g in ch.guards if g[0] == GUARD_ACCOUNT}
        card_ids = {g[1] for g in ch.guards if g[0] == GUARD_CARD}
        by_id = self.cards_by_id  # every live card of those accounts: their usage is covered too
        if self.shared:  # cards made live by _adopt_card, indexed by account
            for aid in account_ids:
                card_ids.update(i for i in self._cards_of.get(aid, ()) if i in by_id)
        elif account_ids:
            for card in list(by_id.values()):
                if card.account_id in account_ids:
                    card_ids.add(card.card_id)
        accounts = [await self.store.account(i) for i in sorted(account_ids)]
        day = self._usage_day()
        cards: list[tuple[Card, list[tuple[str, int, int]]]] = []
        for i in sorted(card_ids):  # after the accounts: usage no older than their versions
            row = await self.store.card_by_id(i)
            if row is not None:
                cards.append((row, await self.store.card_limit_usage(i, day)))
        # -- no await from here: every copy moves to the store's rows at once ---------------
        self.refresh_epoch += 1
        for a in accounts:
            if a is None:
                continue
            live = self.accounts.get(a.account_id)
            if live is not None:
                live.balance, live.held, live.version = a.balance, a.held, a.version
        if account_ids:
            for txn_id, o in list(self.originals.items()):
                if o.account_id in account_ids:
                    del self.originals[txn_id]
            for txn_id, h in list(self.holds.items()):
                if h.account_id in account_ids:
                    del self.holds[txn_id]
        for row, usage in cards:
            live_card = self.cards_by_id.get(row.card_id)
            if live_card is not None:
                for name in Card.__dataclass_fields__:
                    setattr(live_card, name, getattr(row, name))
            self._set_usage(row.card_id, usage, day)
        for biller, ref, _ in ch.bill_guards:
            self.bills_paid.pop((biller, ref), None)
            self._bill_due.pop((biller, ref), None)

    def rows_written_elsewhere(self, accounts: dict[int, int], cards: dict[int, int]) -> None:
        """Another node committed these rows (id -> the version it wrote; its notification,
        ``store.postgres_notify``): the live copies that differ are reloaded by a task of
        their own, between requests, so the next decision on them needs no conflict first.
        Rows not live here are not read: their next use reads them anyway."""
        live_accounts = self.accounts
        stale_a = self._stale_accounts
        for aid, version in accounts.items():
            if aid in self._resident or aid not in live_accounts:
                continue
            a = live_accounts.get(aid)
            if a is not None and a.version != version:
                stale_a[aid] = version
        by_id = self.cards_by_id
        stale_c = self._stale_cards
        for cid, version in cards.items():
            c = by_id.get(cid)
            if c is not None and c.version != version:
                stale_c[cid] = version
        if (stale_a or stale_c) and self._reloader is None and not self._reloads_stopped:
            self._reloader = asyncio.get_running_loop().create_task(self._reload_stale())

    def stop_reloads(self) -> None:
        """Cancel the reload of other nodes' rows in progress, and any later one (the core
        is closing: its store's reads are going)."""
        self._reloads_stopped = True
        if self._reloader is not None:
            self._reloader.cancel()
        self._stale_accounts, self._stale_cards = {}, {}

    async def _reload_stale(self) -> None:
        """Reload the rows ``rows_written_elsewhere`` marked, in batches, until none is left.
        A copy is replaced only if no unit of this node changed it meanwhile: it must still
        have the version it had before the read and no unit not yet durable may snapshot it
        (its row in the store is older than the copy). Otherwise it is left alone: its guard
        settles it at commit, as without notifications. A card's limit usage is covered by
        its account's version, so it is reloaded with (and only with) its account."""
        try:
            while self._stale_accounts or self._stale_cards:
                account_ids = sorted(self._stale_accounts)
                card_ids = set(self._stale_cards)
                self._stale_accounts, self._stale_cards = {}, {}
                await self._reload_rows(account_ids, card_ids)
        except Exception:  # a store error: the guards still refuse what is stale
            log.exception("reloading rows written by another node failed")
        finally:
            self._reloader = None

    async def _reload_rows(self, account_ids: list[int], card_ids: set[int]) -> None:
        accounts_seen: dict[int, int] = {}
        for aid in account_ids:  # a copy a unit in flight snapshots is left to its guard
            a = self.accounts.get(aid)
            if a is not None and not self.accounts.is_pinned(aid):
                accounts_seen[aid] = a.version
        usage_of: set[int] = set()
        by_id = self.cards_by_id
        for aid in accounts_seen:  # every live card of those accounts: their usage too
            ids = self._cards_of.get(aid)
            if ids:
                live_ids = [i for i in ids if i in by_id]
                usage_of.update(live_ids)
                if len(live_ids) < len(ids):
                    self._cards_of[aid] = live_ids
        cards_seen: dict[int, int] = {}  # cards whose row may be taken (none in flight)
        for cid in card_ids | usage_of:
            c = self.cards_by_id.get(cid)
            if c is not None:
                cards_seen[cid] = -1 if self.cards.is_pinned(c.pan_hash) else c.version
        store = self.store
        day = self._usage_day()
        bulk = getattr(store, "rows_for_reload", None)
        rows: list[Account | None]
        cards: list[tuple[Card, list[tuple[str, int, int]] | None]] = []
        if bulk is not None:  # PostgreSQL: three statements for all the rows
            got_a, got_c, usage = await bulk(
                list(accounts_seen), sorted(cards_seen), sorted(usage_of), day
            )
            rows = list(got_a)
            cards = [(row, usage.get(row.card_id)) for row in got_c]
        else:
            rows = [await store.account(i) for i in accounts_seen]
            for cid in sorted(cards_seen):  # after the accounts: usage no older than them
                row = await store.card_by_id(cid)
                if row is not None:
                    use = await store.card_limit_usage(cid, day) if cid in usage_of else None
                    cards.append((row, use))
        # -- no await from here: the copies move to the store's rows at once ---------------
        moved: set[int] = set()
        for a in rows:
            if a is None:
                continue
            aid = a.account_id
            live = self.accounts.get(aid)
            if (live is None or live.version != accounts_seen[aid]
                    or self.accounts.is_pinned(aid)):  # fmt: skip
                continue
            live.balance, live.held, live.version = a.balance, a.held, a.version
            moved.add(aid)
        if moved:
            self.refresh_epoch += 1  # a follow-up decided across this starts again
            for txn_id, o in list(self.originals.items()):
                if o.account_id in moved:
                    del self.originals[txn_id]
            for txn_id, h in list(self.holds.items()):
                if h.account_id in moved:
                    del self.holds[txn_id]
        for row, usage in cards:
            live_card = self.cards_by_id.get(row.card_id)
            if live_card is None:
                continue
            if (live_card.version == cards_seen[row.card_id]
                    and not self.cards.is_pinned(live_card.pan_hash)):  # fmt: skip
                for name in Card.__dataclass_fields__:
                    setattr(live_card, name, getattr(row, name))
                self.reloads += 1
            if usage is not None and live_card.account_id in moved:
                self._set_usage(row.card_id, usage, day)
        self.reloads += len(moved)

    # -- on-us debits and inquiries ----------------------------------------------------------
    async def _on_us(self, ctx: Ctx) -> AuthResult:
        req = ctx.req
        t = req.txn_type
        if req.channel not in ALLOWED_CHANNELS.get(t, ()):
            raise Decline(
                RC.INVALID_TRANSACTION, f"{t.value} is not possible on channel {req.channel.value}"
            )
        card = await self.card(ctx.pan_hash)
        if card is None:
            raise Decline(RC.INVALID_CARD_NUMBER, "pan: unknown card")
        ctx.card = card
        account = await self.account(card.account_id)
        if account is None:
            raise Decline(RC.SYSTEM_MALFUNCTION, "card account missing")
        ctx.account = account
        product = self.config.product(card.product)
        sched = self.schedule(product, ctx.day)
        self._check_card(ctx, card, product)
        if req.currency != account.currency:
            raise Decline(
                RC.INVALID_AMOUNT, f"currency: {req.currency:03d} is not the account currency"
            )
        if t is TxnType.TRANSFER and not product.allow_transfers:
            raise Decline(RC.NOT_PERMITTED_TO_CARDHOLDER, "transfers are not allowed for this card")
        if req.channel is Channel.ECOMMERCE and not product.allow_ecommerce:
            raise Decline(RC.NOT_PERMITTED_TO_CARDHOLDER, "e-commerce is not allowed for this card")
        if (
            t is TxnType.CASH_WITHDRAWAL
            and req.channel is Channel.ATM
            and req.amount < sched.min_atm_withdrawal
        ):
            raise Decline(
                RC.INVALID_AMOUNT,
                f"amount: below the minimum ATM withdrawal {sched.min_atm_withdrawal}",
            )
        ctx.categories = categories_for(req)
        for c in ctx.categories:
            lim = sched.limits[c]
            if lim.per_txn and req.amount > lim.per_txn:
                raise Decline(
                    RC.EXCEEDS_AMOUNT_LIMIT,
                    f"amount: above the per-transaction limit ({LimitCategory(c).config_name})",
                )
        # Type-specific lookups that need the store (before the decision section).
        bill_key: tuple[str, str] | None = None
        dest: Account | None = None
        if t is TxnType.BILL_PAYMENT:
            bill_key = await self._check_bill(ctx)
        elif t is TxnType.TRANSFER:
            dest = await self._check_transfer(ctx, account)
        await self._security(ctx, card, product)
        return self._decide(ctx, card, account, sched, bill_key, dest)

    def _check_card(self, ctx: Ctx, card: Card, product: Product) -> None:
        st = card.status
        if st is not CardStatus.ACTIVE:
            if st is CardStatus.LOST:
                raise Decline(RC.LOST_CARD, "card reported lost")
            if st is CardStatus.STOLEN:
                raise Decline(RC.STOLEN_CARD, "card reported stolen")
            if st is CardStatus.EXPIRED:
                raise Decline(RC.EXPIRED_CARD, "card expired")
            if st in (CardStatus.ORDERED, CardStatus.DELIVERED):
                raise Decline(RC.RESTRICTED_CARD, "card not activated yet")
            raise Decline(RC.RESTRICTED_CARD, "card blocked")
        if card.expiry < yymm(ctx.day):
            raise Decline(RC.EXPIRED_CARD, "card expired")
        req = ctx.req
        if req.expiry is not None and not hmac.compare_digest(req.expiry, card.expiry):
            raise Decline(RC.EXPIRED_CARD, "expiry: does not match the card")
        check_track2_rules(req, card, product)  # service code, chip fallback (track 2 only)
        if card.pin_tries >= product.pin_tries and (
            req.pin_block is not None or req.channel in (Channel.ATM, Channel.COUNTER)
        ):
            raise Decline(RC.PIN_TRIES_EXCEEDED, "PIN tries exceeded")

    async def _check_bill(self, ctx: Ctx) -> tuple[str, str]:
        req = ctx.req
        biller = self.billers.get(req.biller_id or "")
        if biller is None:
            raise Decline(RC.INVALID_TRANSACTION, "biller_id: unknown biller")
        ref = req.bill_reference or ""
        if not re.fullmatch(biller.reference_pattern, ref, re.ASCII):  # \d: 0-9 only
            raise Decline(RC.FORMAT_ERROR, "bill_reference: does not match the biller's format")
        key = (biller.biller_id, ref)
        if key not in self._bill_due:
            bill = await self.store.bill(*key)
            if bill is None:
                raise Decline(RC.INVALID_TRANSACTION, "bill_reference: no such bill")
            self.bills_paid.setdefault(key, bill.paid_txn)
            self._bill_due[key] = bill.amount_due
        if self.bills_paid[key] is not None:
            raise Decline(RC.INVALID_TRANSACTION, "bill already paid")
        if req.amount != self._bill_due[key]:
            raise Decline(RC.INVALID_AMOUNT, f"amount: the bill is for {self._bill_due[key]}")
        ctx.counter_account_id = biller.settlement_account_id
        await self.account(biller.settlement_account_id)
        return key

    async def _check_transfer(self, ctx: Ctx, source: Account) -> Account:
        number = ctx.req.destination_account or ""
        if not number:
            raise Decline(RC.FORMAT_ERROR, "destination_account: required for a transfer")
        dest = await self.account_by_number(number)
        if dest is None or dest.kind.value != "ccp":
            raise Decline(RC.INVALID_TRANSACTION, "destination_account: no such CCP account")
        if dest.account_id == source.account_id:
            raise Decline(RC.INVALID_TRANSACTION, "destination_account: same as the source")
        if dest.currency != source.currency:
            raise Decline(RC.INVALID_TRANSACTION, "destination_account: other currency")
        ctx.counter_account_id = dest.account_id
        ctx.counter_account = dest
        return dest

    async def _security(self, ctx: Ctx, card: Card, product: Product) -> None:
        """Track 2 CVV / iCVV and PIN (card-present), CVV2 (card-not-present), OTP, ARQC --
        all through the HSM."""
        req = ctx.req
        ch = req.channel
        # With track 2 and field 55, the ARQC goes first: a declined iCVV still gets its ARPC.
        arqc_first = req.track2 is not None and bool(req.emv_data)
        if arqc_first:
            await self._verify_arqc(ctx, card)
        await verify_track2_cvv(self.hsm, req, card)  # before the PIN: a fake spends no try
        if req.pin_block is not None:
            await self._verify_pin(ctx, card, product)
        elif ch in (Channel.ATM, Channel.COUNTER):
            raise Decline(RC.FORMAT_ERROR, "pin_block: required for this channel")
        if ch is Channel.ECOMMERCE:
            if req.cvv2 is None:
                raise Decline(RC.FORMAT_ERROR, "cvv2: required for card-not-present")
            ok = await self.hsm.verify_cvv(card.cvk, req.pan, card.expiry, "000", req.cvv2)
            if not ok:
                raise Decline(RC.DO_NOT_HONOUR, "card security code mismatch")
        if req.otp is not None:
            await self._verify_otp(ctx, card, product)
        if req.emv_data:
            if not arqc_first:
                await self._verify_arqc(ctx, card)
        elif ch is Channel.POS and req.pin_block is None:
            raise Decline(RC.FORMAT_ERROR, "pin_block or emv_data: required at a POS")

    async def _verify_pin(self, ctx: Ctx, card: Card, product: Product) -> None:
        req = ctx.req
        # Our terminal's TPK, or the ZPK of the interchange acquirer (field 32) it came from.
        aid = req.acquirer_id
        key = pin_key(
            self.terminals.get(req.terminal_id), aid, self.acquirers.get(aid), req.pin_block_format
        )
        if key is None:
            raise Decline(RC.INVALID_TRANSACTION, "terminal_id: unknown terminal, no PIN key")
        if card.pin_tries >= product.pin_tries:
            raise Decline(RC.PIN_TRIES_EXCEEDED, "PIN tries exceeded")
        try:
            ok = await self._pin_matches(req, key, card)
        except HsmError as exc:
            if exc.code not in BAD_PIN_BLOCK_CODES:
                raise
            # Not a PIN at all under this key (keys out of sync, a corrupted field): decline
            # as a PIN failure without spending one of the cardholder's tries.
            where = "acquirer zone key" if key.interchange else "terminal key"
            raise Decline(RC.INCORRECT_PIN, f"PIN block not valid under the {where}") from None
        if ok:
            if card.pin_tries:
                card.pin_tries = 0
                self._snapshot_card(ctx.changes, card)
            return
        card.pin_tries += 1
        self._snapshot_card(ctx.changes, card)
        if card.pin_tries >= product.pin_tries:
            raise Decline(RC.PIN_TRIES_EXCEEDED, "incorrect PIN; PIN tries exceeded, capture card")
        raise Decline(RC.INCORRECT_PIN, "incorrect PIN")

    async def _pin_matches(self, req: AuthRequest, key: PinKey, card: Card) -> bool:
        """PVV (DC under a TPK, EC under a ZPK) or IBM 3624 offset (DA / EA), in the HSM."""
        assert req.pin_block is not None
        if card.pvv:
            return await self.hsm.verify_pin_pvv(
                key.key, card.pvk, req.pin_block, req.pan, card.pvki, card.pvv,
                key.pin_block_format, key.interchange,
            )  # fmt: skip
        if card.ibm_offset:
            return await self.hsm.verify_pin_ibm(
                key.key, card.pvk, req.pin_block, req.pan, card.ibm_offset,
                DECIMALISATION_TABLE_REF, ibm_validation_data(req.pan), len(card.ibm_offset),
                key.pin_block_format, key.interchange,
            )  # fmt: skip
        raise Decline(RC.NOT_PERMITTED_TO_CARDHOLDER, "no PIN on file for this card")

    async def _verify_otp(self, ctx: Ctx, card: Card, product: Product) -> None:
        otp = ctx.req.otp or ""
        if card.otp_tries >= product.otp_tries:
            raise Decline(RC.PIN_TRIES_EXCEEDED, "secret code tries exceeded")
        stored = await self.store.otp(card.card_id)
        if stored is None or stored[1] < ctx.now:
            raise Decline(RC.INCORRECT_PIN, "secret code expired or not requested")
        if hmac.compare_digest(self.otp_hash(card.card_id, otp), stored[0]):
            card.otp_tries = 0
            self._snapshot_card(ctx.changes, card)
            ctx.changes.otp_deletes.append(card.card_id)
            return
        card.otp_tries += 1
        self._snapshot_card(ctx.changes, card)
        if card.otp_tries >= product.otp_tries:
            raise Decline(RC.PIN_TRIES_EXCEEDED, "incorrect secret code; tries exceeded")
        raise Decline(RC.INCORRECT_PIN, "incorrect secret code")

    def otp_hash(self, card_id: int, code: str) -> bytes:
        return hmac.new(self._pan_key, f"otp:{card_id}:{code}".encode(), hashlib.sha256).digest()

    async def _verify_arqc(self, ctx: Ctx, card: Card) -> None:
        req = ctx.req
        assert req.emv_data is not None
        try:
            tags = parse_tlv(req.emv_data)
        except TlvError as exc:
            raise Decline(RC.FORMAT_ERROR, str(exc)) from None
        arqc = tags.get(0x9F26)
        if arqc is None:
            return  # no cryptogram (e.g. a fallback): nothing to verify
        atc = tags.get(0x9F36)
        un = tags.get(0x9F37)
        if atc is None or un is None or len(arqc) != 8:
            raise Decline(RC.FORMAT_ERROR, "emv_data: 9F36/9F37 required with 9F26")
        seq_raw = tags.get(0x5F34)
        pan_seq = f"{seq_raw[0]:02x}" if seq_raw else card.pan_sequence
        data = arqc_transaction_data(tags)
        ctx.arqc_inputs = (card.mk_ac, req.pan, pan_seq, atc, un, data, arqc)
        arpc = await self.hsm.verify_arqc(card.mk_ac, req.pan, pan_seq, atc, un, data, arqc, b"00")
        if arpc is None:
            ctx.arqc_inputs = None
            raise Decline(RC.DO_NOT_HONOUR, "ARQC verification failed")
        ctx.issuer_script = encode_tlv(0x91, arpc + b"00")

    async def _with_arpc(self, ctx: Ctx, result: AuthResult) -> AuthResult:
        """Redo the ARPC with the decline's ARC so the card sees the real decision."""
        mk, pan, seq, atc, un, data, arqc = ctx.arqc_inputs  # type: ignore[misc]
        arc = result.response_code.value.encode()
        arpc = await self.hsm.verify_arqc(mk, pan, seq, atc, un, data, arqc, arc)  # type: ignore[arg-type]
        if arpc is None:
            return result
        return AuthResult(
            result.response_code,
            result.message,
            transaction_id=result.transaction_id,
            issuer_script=encode_tlv(0x91, arpc + arc),
        )

    def _decide(
        self,
        ctx: Ctx,
        card: Card,
        account: Account,
        sched: Schedule,
        bill_key: tuple[str, str] | None,
        dest: Account | None,
    ) -> AuthResult:
        """The decision section: no ``await`` from the limit check to the snapshot."""
        req = ctx.req
        t = req.txn_type
        if card.status is not CardStatus.ACTIVE:  # blocked while the HSM was verifying
            raise Decline(RC.RESTRICTED_CARD, f"card {card.status.value}")
        if t is TxnType.BALANCE_INQUIRY:
            return self._approve(ctx, account, 0)
        amount = req.amount
        fee = 0
        counter: int | None = ctx.counter_account_id
        if t is TxnType.CASH_WITHDRAWAL:
            term = self._own_terminal(req)
            if req.channel is Channel.ATM:  # counter cash at a post office carries no ATM fee
                own = term is not None and term.own
                fee = sched.fee_own_atm if own else sched.fee_other_atm
            counter = term.settlement_account_id if term is not None else self.gl[GL_INTERBANK_ATM]
        elif t in (TxnType.PURCHASE, TxnType.PREAUTH):
            merchant = self.merchants.get(req.merchant_id or "")
            counter = merchant.settlement_account_id if merchant else self.gl[GL_INTERBANK_POS]
        ctx.counter_account_id = counter
        if account.available < amount + fee:
            raise Decline(RC.INSUFFICIENT_FUNDS, "insufficient funds")
        today = self.limits.current_day
        if today is not None and ctx.day < today:
            # In flight across midnight: it arrived on the previous business day, but another
            # request has already opened the new one (whose envelope started at 0). It counts
            # against the day it is checked on, and its journal row says so, so that its
            # reversal releases that day's envelope and a restart rebuilds the same counters.
            ctx.day = today
            sched = self.schedule(self.config.product(card.product), today)
        reserved: list[int] = []
        for c in ctx.categories:
            lim = sched.limits[c]
            rc = self.limits.check_and_reserve(
                card.card_id, c, amount, ctx.day, lim.daily_amount, lim.daily_count
            )
            if rc:
                for r in reserved:
                    self.limits.release(card.card_id, r, amount, ctx.day)
                name = LimitCategory(c).config_name
                if rc == 1:
                    raise Decline(RC.EXCEEDS_AMOUNT_LIMIT, f"daily {name} amount limit exceeded")
                raise Decline(RC.EXCEEDS_COUNT_LIMIT, f"daily {name} count limit exceeded")
            reserved.append(c)
        ch = ctx.changes
        ctx.fee = fee
        if t is TxnType.PREAUTH:
            account.held += amount
            hold = Hold(ctx.txn_id, account.account_id, amount, amount, "open")
            self.holds[ctx.txn_id] = hold
            ch.holds.append(
                (hold.txn_id, hold.account_id, hold.amount, hold.remaining, hold.status)
            )
            self._snapshot_account(ch, account)
        else:
            assert counter is not None
            legs = [(account.account_id, -(amount + fee)), (counter, amount)]
            if fee:
                legs.append((self.gl[GL_FEES], fee))
            self._post(ctx, legs)
        if bill_key is not None:
            ch.bill_guards.append((bill_key[0], bill_key[1], self.bills_paid[bill_key]))
            self.bills_paid[bill_key] = ctx.txn_id
            ch.bills.append((bill_key[0], bill_key[1], ctx.txn_id))
        self._alert(ctx, ALERT_KIND[t], amount + fee, account, card.masked_pan)
        return self._approve(ctx, account, amount)

    def _own_terminal(self, req: AuthRequest) -> Terminal | None:
        """Our record of the request's terminal; None for another acquirer's terminal (ids
        are unique only per acquirer): its cash is settled with the interbank GL account."""
        term = self.terminals.get(req.terminal_id)
        if term is None or not self.acquirers:
            return term
        aid = req.acquirer_id
        return term if is_our_terminal(term, aid, self.acquirers.get(aid)) else None

    def _approve(self, ctx: Ctx, account: Account, amount: int) -> AuthResult:
        return AuthResult(
            RC.APPROVED,
            "approved",
            auth_code=ctx.txn_id[-6:],  # unique within a million transactions
            transaction_id=ctx.txn_id,
            available_balance=account.available,
            ledger_balance=account.balance,
            currency=account.currency,
            approved_amount=amount,
            issuer_script=ctx.issuer_script,
        )

    def _post(self, ctx: Ctx, legs: list[tuple[int, int]]) -> None:
        """Apply balanced legs to the live accounts and snapshot them into the unit (the
        internal and settlement accounts as deltas: no decision rests on them, and every
        node credits them, so a guard there would make every unit conflict)."""
        assert sum(a for _, a in legs) == 0, "unbalanced posting"
        ch = ctx.changes
        resident = self._resident
        for leg, (account_id, amount) in enumerate(legs):
            acct = self.accounts[account_id]
            acct.balance += amount
            ch.postings.append((ctx.txn_id, leg, account_id, amount))
            if account_id in resident:
                ch.account_deltas.append((account_id, amount, 0))
            else:
                self._snapshot_account(ch, acct)

    def _snapshot_account(self, ch: Changes, acct: Account) -> None:
        """The account's new balance and held, guarded by the version it was decided on."""
        new = self._stamp()
        ch.guards.append((GUARD_ACCOUNT, acct.account_id, acct.version, new))
        acct.version = new
        ch.accounts.append((acct.account_id, acct.balance, acct.held))

    def _snapshot_card(self, ch: Changes, card: Card) -> None:
        """The card row, guarded by the version it was decided on."""
        new = self._stamp()
        ch.guards.append((GUARD_CARD, card.card_id, card.version, new))
        card.version = new
        ch.cards.append(
            (card.card_id, card.status.value, card.pin_tries, card.otp_tries, card.activated_at)
        )

    def _alert(self, ctx: Ctx, kind: str, amount: int, account: Account, masked: str) -> None:
        if not account.phone:
            return
        req = ctx.req
        place = req.card_acceptor
        if not place:
            term = self.terminals.get(req.terminal_id)
            merchant = self.merchants.get(req.merchant_id or "")
            place = merchant.name if merchant else term.location if term else req.terminal_id
        ctx.changes.alerts.append(
            AlertRow(account.phone, "", ctx.txn_id, ctx.now, kind, masked, amount,
                     account.currency, place, account.available)
        )  # fmt: skip

    # -- remote issuers ------------------------------------------------------------------------
    async def _remote(self, ctx: Ctx, name: str) -> AuthResult:
        issuer = self.remote.get(name)
        if issuer is None:
            raise Decline(RC.ISSUER_UNAVAILABLE, f"route to remote issuer {name}: not connected")
        # no RRN from the acquirer: ours goes out in field 37, so both sides journal the same
        sent = ctx.req if ctx.req.rrn else replace(ctx.req, rrn=ctx.txn_id)
        result = await issuer.authorize(sent)
        if not isinstance(result, AuthResult):
            ctx.outcome_unknown = True  # it may have approved: never sent again as is
            raise Decline(RC.SYSTEM_MALFUNCTION, f"remote issuer {name}{BAD_ANSWER}")
        return AuthResult(
            result.response_code,
            result.message,
            result.auth_code,
            ctx.txn_id,
            result.available_balance,
            result.ledger_balance,
            result.currency,
            result.approved_amount
            if result.approved_amount is not None
            else (ctx.req.amount if result.approved else None),
            result.issuer_script,
        )
