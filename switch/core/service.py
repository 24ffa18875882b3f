"""``SwitchCore``: the one entry point the wire layers (ISO 8583, gRPC) use.

Stable API (other parts code against these names):

``await SwitchCore.open(state_dir, *, hsm=None, durable=True, seed_demo=True, config=None,
clock=time.time)``
    Opens (creating on first start) ``state_dir/switch.db`` (SQLite store, migrations applied),
    ``state_dir/lmk.json`` (development LMK, via ``Lmk.load_or_create``) and
    ``state_dir/pan.key`` (the HMAC key of stored PAN hashes, and the root of the key that
    seals one-time codes in the SMS outbox). The directory is made 0700 and every file in
    it 0600 (``switch.store.files``; an older, looser one is tightened). With ``hsm=None`` an
    ``InProcessHsm`` on that LMK is used. On a fresh store with ``seed_demo`` the demo data
    set (``switch.core.demo``) is loaded through an authorised in-process HSM on the same
    LMK (a given ``hsm`` must therefore use ``state_dir/lmk.json``'s LMK).
    ``durable=False`` turns off fsync (benchmarks only). ``clock`` (epoch seconds) is the
    one source of "now" for the core: the business day the limits engine loads at start,
    request times, hold expiry, OTP and activation times; tests pass a fixed clock. One
    process per ``state_dir`` (the live balances are in its memory): a second ``open``
    raises ``CoreError``.
``await core.authorize(req: AuthRequest) -> AuthResult``
    Never raises for a bad request: declines and errors are results (docs/architecture.md §3).
    Reversals: ``req.original`` (field 90 data or ``transaction_id``); partial reversal via
    ``req.replacement_amount`` (what was really dispensed) or a smaller ``req.amount``.
    Retransmissions (same acquirer, terminal, STAN and field 7; or same merchant + idempotency
    key) get the first answer with ``replayed=True``; the same identifiers on a different
    request get 94. The answer is returned only once its journal row, postings, idempotency
    entry and SMS outbox row are durable. A 96 (HSM or store unreachable: the switch could not
    decide) is never remembered as the answer, nor is a merchant call the API refuses
    (``switch.core.refusals``): a retry is processed afresh, and the journal row of such an
    attempt is marked ``refused`` (the operator's, never shown to a merchant).
``await core.close()``
``await core.expire_holds(now=None) -> int``
    Releases every open pre-authorization hold older than its product's validity
    (``switch.core.holds``); returns how many, once durable. ``switch run`` calls it every
    minute.
``core.terminal(terminal_id) -> Terminal | None``
    ``.tpk`` (TPK under LMK), ``.tak`` (MAC key under LMK, '' if none), ``.pin_block_format``,
    ``.kind``, ``.own``, ``.acquirer_id``, ``.location``.
``core.authenticate_merchant(merchant_id, api_key) -> Merchant | None``
    Constant-time API-key check; ``None`` for an unknown merchant or a wrong key.
``core.merchant(merchant_id) -> Merchant | None``
``await core.payment(merchant_id, transaction_id) -> Payment | None``
``await core.payments(merchant_id, limit=50) -> list[Payment]``  (newest first)
    ``Payment``: the journal entry plus the amounts later captured / refunded / reversed.
``await core.set_terminal_keys(terminal_id, tpk=..., tak=...) -> Terminal``
    Key change (0800/101): stores the new key cryptograms (under the LMK) for the terminal.
``core.route(pan) -> Route | None``
    BIN routing decision: ``.on_us`` or ``.destination`` = remote issuer name.
``core.register_remote_issuer(name, issuer: RemoteIssuer)``
    The ISO issuer client registers itself; unregistered routes answer 91.
``core.register_acquirer(config: AcquirerConfig)`` / ``core.acquirer(acquirer_id)``
    Interchange acquirers (``switch.core.interchange``): other switches that route our BINs
    to us. A request from a terminal that is not ours has its PIN verified under the ZPK of
    the acquirer in field 32 (EC/EA) and, if it has a ZAK, its MAC checked under that.
``await core.start_otp(pan, merchant_name, amount, *, idempotency=None) -> OtpChallenge``
    E-commerce secret code: sent by SMS through the outbox; then ``req.otp`` in authorize.
    ``idempotency=(key, fingerprint)`` stores that idempotency row, answer = the challenge
    (``OtpChallenge.to_json``), in the same commit as the code and its SMS.
``await core.start_verification(pan, merchant, amount, *, idempotency=None) -> OtpChallenge``
    ``start_otp`` for a merchant within the ``[verification]`` rate limits (codes per card and
    per merchant in a window, counted in the store): over one, ``VerificationRateLimited``.
``core.now() -> float``: the clock the core was opened with.
``core.otp_fingerprint(pan, amount, currency) -> str``: a keyed digest of such a request.
``await core.activate_card(pan, place)`` / ``await core.set_card_status(pan, status)`` /
``await core.reset_pin_tries(pan)``: card lifecycle (activation sends an SMS). The last two
    also take the PAN's keyed hash, and ``audit=AuditRow`` committed with the change.
``core.pan_hash(pan)``, ``await core.live_card(pan_hash)`` / ``live_card_by_id(card_id)`` /
``live_account(account_id)`` / ``live_account_by_number(number)``: the records as the running
    switch holds them, for the operator tools.
``core.store``: the ``Store`` (also the ``AlertOutbox`` for the SMS worker).
``core.add_unit_observer(fn)``: ``fn(changes)`` adds rows to every unit before it is queued
    for the group commit, so they are durable exactly when the unit is (merchant notifications).
``core.telemetry``: the metrics registry and transaction trace (``switch.observe.telemetry``);
    every ``authorize`` answer is counted, timed and logged on ``switch.txn`` there, and the
    HSM calls and store commits are timed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from switch.config import SwitchConfig, load_config
from switch.core.context import new_otp
from switch.core.domain import (
    ALLOWED_TRANSITIONS,
    Account,
    AccountKind,
    Card,
    CardStatus,
    Merchant,
    Terminal,
)
from switch.core.holds import expire_holds
from switch.core.interchange import AcquirerConfig
from switch.core.ledger_accounts import GL_FEES, GL_INTERBANK_ATM, GL_INTERBANK_POS
from switch.core.live_cache import DEFAULT_CAPACITY
from switch.core.model import DZD, AuthRequest, AuthResult
from switch.core.otp_rate import check_rate
from switch.core.pipeline import OTP_TTL_S, Pipeline
from switch.core.remote import RemoteIssuer, Route
from switch.hsm.client import HsmClient
from switch.notify.messages import render_alert
from switch.notify.reseal import seal_clear_otp_alerts
from switch.notify.sealing import AlertSeal
from switch.observe.telemetry import Telemetry
from switch.store import SwitchStore, open_store
from switch.store.api import (
    AlertRow,
    AuditRow,
    Changes,
    Conflict,
    IdempotencyRow,
    JournalRow,
    OriginalSummary,
)
from switch.store.files import secure_state_dir
from switch.store.postgres_notify import LISTEN
from switch.store.sqlite import SqliteStore


class CoreError(ValueError):
    """An administrative call was refused (unknown card, forbidden status change...)."""


@dataclass(frozen=True, slots=True)
class Payment:
    """A journal entry as a merchant sees it (no card data beyond the masked PAN)."""

    transaction_id: str
    txn_type: str
    response_code: str
    amount: int
    currency: int
    masked_pan: str
    created_at: float
    original_transaction_id: str | None
    auth_code: str | None
    message: str
    captured: int = 0  # amounts moved so far by later operations on this payment
    refunded: int = 0
    reversed: int = 0  # reversals and voids


@dataclass(frozen=True, slots=True)
class OtpChallenge:
    masked_phone: str
    expires_at: float

    def to_json(self) -> str:
        """The answer as an idempotency row keeps it, so a replay is the very same answer."""
        return json.dumps({"masked_phone": self.masked_phone, "expires_at": self.expires_at})

    @classmethod
    def from_json(cls, text: str) -> OtpChallenge:
        doc = json.loads(text)
        return cls(str(doc["masked_phone"]), float(doc["expires_at"]))


def _payment(j: JournalRow, o: OriginalSummary | None) -> Payment:
    return Payment(
        j.txn_id,
        j.txn_type,
        j.response_code,
        j.amount,
        j.currency,
        j.masked_pan,
        j.created_at,
        j.original_txn_id,
        j.auth_code,
        j.message,
        0 if o is None else o.captured,
        0 if o is None else o.refunded,
        0 if o is None else o.reversed,
    )


def _lock_state_dir(state_dir: Path, shared: bool = False) -> int:
    """One switch process per state directory: the live balances are in its memory. Nodes
    over a shared store (``shared``, docs/architecture.md §7) lock it shared: they may run
    together, but not beside a single-node switch or an import."""
    fd = os.open(state_dir / "switch.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise CoreError(f"state_dir: {state_dir} is in use by another switch process") from None
    return fd


def _load_or_create_secret(path: Path) -> bytes:
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


def _ensure_internal_accounts(store: SwitchStore) -> None:
    """The shared GL accounts every ledger needs (a store created without demo data)."""
    # by number (its unique index): a scan of kind would read every cardholder's account
    codes = (GL_FEES, GL_INTERBANK_ATM, GL_INTERBANK_POS)
    rows = store.query("SELECT number FROM accounts WHERE number IN (?, ?, ?)", codes)
    have = {str(n) for (n,) in rows}
    missing = [c for c in (GL_FEES, GL_INTERBANK_ATM, GL_INTERBANK_POS) if c not in have]
    if not missing:
        return
    next_id = int(store.query("SELECT COALESCE(MAX(account_id), 0) FROM accounts")[0][0]) + 1
    for i, code in enumerate(missing):
        store.insert_account(Account(next_id + i, code, AccountKind.GL, code, "", DZD, 0, 0, True))
    store.flush_admin()


class SwitchCore:
    def __init__(self, pipeline: Pipeline, store: SwitchStore, hsm: HsmClient) -> None:
        self._p = pipeline
        self.store = store
        # every HSM call and store commit is timed, every answer counted and traced
        self.telemetry = Telemetry()
        self.hsm = pipeline.hsm = self.telemetry.timed_hsm(hsm)
        store.on_commit = self.telemetry.store_committed
        self._lock = -1
        # one verification at a time from its rate check to its commit (switch.core.otp_rate)
        self._otp_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        state_dir: Path,
        *,
        hsm: HsmClient | None = None,
        durable: bool = True,
        seed_demo: bool = True,
        config: SwitchConfig | None = None,
        clock: Callable[[], float] = time.time,
        cache_size: int = DEFAULT_CAPACITY,
        store_spec: str | None = None,
        shared: bool = False,
    ) -> SwitchCore:
        """``store_spec``: ``--store`` (a PostgreSQL URL or a SQLite file; default
        ``state_dir/switch.db``); the keys stay in ``state_dir`` either way. ``shared``:
        other nodes write the same store (docs/architecture.md §7)."""
        from switch.hsm.inprocess import InProcessHsm
        from switch.hsm.lmk import Lmk

        state_dir = Path(state_dir)
        secure_state_dir(state_dir)  # 0700, its files 0600 (an older one tightened, logged)
        lock = _lock_state_dir(state_dir, shared)
        lmk = Lmk.load_or_create(state_dir / "lmk.json")
        if hsm is None:
            hsm = InProcessHsm(lmk)
        pan_key = _load_or_create_secret(state_dir / "pan.key")
        store = open_store(store_spec, state_dir, durable=durable)
        # A PostgreSQL store is shared by nature: any node may write it (§7). The state
        # directory's lock stays as asked (one process per directory unless ``shared``).
        nodes = shared or not isinstance(store.path, Path)
        if isinstance(store, SqliteStore):  # alone on the file: no versions to read back (§7)
            store.exclusive = not nodes
        try:
            await store.open()
        except BaseException:
            os.close(lock)
            raise
        try:
            seal_clear_otp_alerts(store, AlertSeal(pan_key))  # an older release's clear codes
            if store.is_empty() and seed_demo:
                from switch.core.demo import seed_demo as seed

                seeder = InProcessHsm(lmk, authorised=True)
                if await seeder.diagnostics() != await hsm.diagnostics():
                    raise CoreError("hsm: its LMK is not the one in state_dir/lmk.json")
                await seed(store, seeder, pan_key)
            _ensure_internal_accounts(store)
            pipeline = Pipeline(
                store=store,
                hsm=hsm,
                config=config or load_config(),
                pan_key=pan_key,
                clock=clock,
                cache_size=cache_size,
                shared=nodes,
            )
            await pipeline.load()
            watch = getattr(store, "watch_rows", None)
            if nodes and watch is not None and LISTEN:  # other nodes' rows (§7, Versions)
                await watch(pipeline.rows_written_elsewhere)
        except BaseException:
            await store.close()
            os.close(lock)
            raise
        core = cls(pipeline, store, hsm)
        core._lock = lock
        return core

    async def authorize(self, req: AuthRequest) -> AuthResult:
        started = time.perf_counter_ns()
        result = await self._p.authorize(req)
        self.telemetry.answered(req, result, started)  # counted, timed, one trace line
        return result

    async def expire_holds(self, now: float | None = None) -> int:
        """Release the holds of pre-authorizations never completed within their validity
        (default: the core's clock), so the cardholder's money is not locked for good."""
        return await expire_holds(self._p, now)

    async def close(self) -> None:
        self._p.stop_reloads()
        await self.store.close()
        if self._lock >= 0:
            os.close(self._lock)  # releases the state directory for the next process
            self._lock = -1

    def add_unit_observer(self, observer: Callable[[Changes], None]) -> None:
        """Call ``observer(changes)`` with every unit the core submits (authorizations, hold
        expiries, card changes), before it is queued for the group commit: rows it appends to
        ``changes`` commit atomically with the unit. ``switch.merchant_notify`` adds a
        payment's order row and its merchant notification this way. Runs on the event loop in
        the submitting task (its context variables are the request's), once per unit -- a unit
        decided again after a ``Conflict`` is a new unit, outside the caller's context. It must
        be quick, do no I/O and never raise: an exception would keep the unit from the store
        (the caller gets a 96), so an observer catches its own failures."""
        self._p.unit_observers += (observer,)

    # -- lookups for the wire layers -----------------------------------------------------------
    def terminal(self, terminal_id: str) -> Terminal | None:
        return self._p.terminals.get(terminal_id)

    def merchant(self, merchant_id: str) -> Merchant | None:
        return self._p.merchants.get(merchant_id)

    def authenticate_merchant(self, merchant_id: str, api_key: str) -> Merchant | None:
        m = self._p.merchants.get(merchant_id)
        if m is None or not m.check_api_key(api_key):
            return None
        return m

    async def payment(self, merchant_id: str, transaction_id: str) -> Payment | None:
        j = await self.store.journal_entry(transaction_id)
        if j is None or j.merchant_id != merchant_id or j.refused:  # refused: not a payment
            return None
        return _payment(j, await self.store.original(transaction_id))

    async def payments(self, merchant_id: str, limit: int = 50) -> list[Payment]:
        rows = await self.store.journal_for_merchant(merchant_id, limit)
        return [_payment(j, await self.store.original(j.txn_id)) for j in rows]

    async def set_terminal_keys(
        self, terminal_id: str, *, tpk: str | None = None, tak: str | None = None
    ) -> Terminal:
        """Key change (ISO 8583 0800/101): new keys, as cryptograms under the LMK."""
        term = self._p.terminals.get(terminal_id)
        if term is None:
            raise CoreError(f"terminal_id: unknown terminal {terminal_id!r}")
        new = replace(
            term, tpk=term.tpk if tpk is None else tpk, tak=term.tak if tak is None else tak
        )
        self.store.update_terminal_keys(terminal_id, new.tpk, new.tak)
        self._p.terminals[terminal_id] = new
        return new

    def route(self, pan: str) -> Route | None:
        return self._p.bins.route(pan)

    def register_remote_issuer(self, name: str, issuer: RemoteIssuer) -> None:
        self._p.remote[name] = issuer

    def register_acquirer(self, config: AcquirerConfig) -> None:
        """An interchange acquirer and its zone keys (replaces an earlier registration)."""
        self._p.acquirers[config.acquirer_id] = config

    def acquirer(self, acquirer_id: str) -> AcquirerConfig | None:
        """The registered interchange acquirer with this field 32 id, if any."""
        return self._p.acquirers.get(acquirer_id)

    def now(self) -> float:
        """The core's clock (epoch seconds): the wire layers' "now" too, so a test's clock
        governs every window the switch applies."""
        return self._p.clock()

    @property
    def halted(self) -> str | None:
        """Why approvals stopped (a failed commit), or ``None`` while healthy."""
        return self._p.halted

    @property
    def config(self) -> SwitchConfig:
        """The configuration the switch runs with (products, limits, time zone): read-only,
        for the layers that apply the same rules outside an authorization (the live import)."""
        return self._p.config

    # -- card lifecycle --------------------------------------------------------------------------
    async def _card(self, pan: str | bytes) -> Card:
        card = await self._p.card(pan if isinstance(pan, bytes) else self._p.pan_hash(pan))
        if card is None:
            raise CoreError("pan: unknown card")
        return card

    async def set_card_status(
        self, pan: str | bytes, status: CardStatus, *, audit: AuditRow | None = None
    ) -> None:
        """``pan``: the PAN, or its keyed hash (``pan_hash``) when an operator named the card
        by id. ``audit`` is committed with the change (alone when there is none)."""
        card = await self._card(pan)
        if status is card.status:
            if audit is not None:
                await self.store.commit(Changes(audit=[audit]))
            return
        if status not in ALLOWED_TRANSITIONS[card.status]:
            raise CoreError(f"status: {card.status.value} -> {status.value} is not allowed")
        card.status = status
        ch = Changes()
        self._p._snapshot_card(ch, card)
        if audit is not None:
            ch.audit.append(audit)
        if not await self._committed(ch):  # another node changed the card: on its new row
            await self.set_card_status(pan, status, audit=audit)

    async def _committed(self, ch: Changes) -> bool:
        """Commit a card lifecycle unit; False when another node changed its rows first
        (``Conflict``): they are reloaded and the caller applies its change again."""
        try:
            await self._p.commit(ch)  # pins the card until durable
        except Conflict:
            await self._p.refresh(ch)
            return False
        return True

    async def activate_card(self, pan: str, place: str) -> None:
        """Activation at a post office: the card becomes usable and the holder gets an SMS."""
        card = await self._card(pan)
        if card.status is CardStatus.ACTIVE:
            return
        if CardStatus.ACTIVE not in ALLOWED_TRANSITIONS[card.status]:
            raise CoreError(f"status: a {card.status.value} card cannot be activated")
        now = self._p.clock()
        card.status = CardStatus.ACTIVE
        card.activated_at = now
        ch = Changes()
        self._p._snapshot_card(ch, card)
        account = await self._p.account(card.account_id)
        if account is not None and account.phone:
            when = dt.datetime.fromtimestamp(now, dt.UTC)
            text = render_alert(
                "activation", card.masked_pan, 0, account.currency, place, when, account.available
            )
            ch.alerts.append(AlertRow(account.phone, text, None, now))
        if not await self._committed(ch):
            await self.activate_card(pan, place)

    async def reset_pin_tries(self, pan: str | bytes, *, audit: AuditRow | None = None) -> None:
        card = await self._card(pan)
        card.pin_tries = 0
        ch = Changes()
        self._p._snapshot_card(ch, card)
        if audit is not None:
            ch.audit.append(audit)
        if not await self._committed(ch):
            await self.reset_pin_tries(pan, audit=audit)

    # -- live records for the operator tools (switch.operator) -----------------------------------
    def pan_hash(self, pan: str) -> bytes:
        """The store's keyed hash of ``pan``: how an operator's PAN finds its card."""
        return self._p.pan_hash(pan)

    async def live_card(self, pan_hash: bytes) -> Card | None:
        """The card as the running switch holds it (what the next request will see)."""
        return await self._p.card(pan_hash)

    async def live_card_by_id(self, card_id: int) -> Card | None:
        row = await self.store.card_by_id(card_id)
        return None if row is None else await self._p.card(row.pan_hash)

    async def live_account(self, account_id: int) -> Account | None:
        """The account with its live balance and holds (balances live in memory)."""
        return await self._p.account(account_id)

    async def live_account_by_number(self, number: str) -> Account | None:
        return await self._p.account_by_number(number)

    def otp_fingerprint(self, pan: str, amount: int, currency: int) -> str:
        """What makes two code requests the same, keyed like the stored PAN hashes: the
        idempotency table must hold nothing a PAN could be guessed back from."""
        text = f"{self._p.pan_hash(pan).hex()}|{amount}|{currency}"
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    async def start_otp(
        self,
        pan: str,
        merchant_name: str,
        amount: int,
        *,
        idempotency: tuple[str, str] | None = None,
        sent_for: str | None = None,
    ) -> OtpChallenge:
        """Send a one-time e-commerce code by SMS; the code itself is never returned or logged.

        ``sent_for``: the merchant id the code is sent for; the same commit records it in
        ``otp_sends``, which the verification rate limits count (``start_verification``).

        The code never reaches the store in clear: the alert's text is sealed here
        (``switch.notify.sealing``, a key derived from ``pan.key``) before the INSERT, so
        neither ``alerts.text`` nor any WAL frame holds it; the SMS worker opens it only to
        hand it to a transport that delivers it. ``otps`` keeps only its HMAC.

        With ``idempotency=(key, fingerprint)`` the row remembering the request rides in the
        same unit as the code and its SMS: a crash leaves both or neither, so a retry after a
        restart finds the key exactly when the cardholder got the code.
        """
        from switch.notify.messages import otp_text

        card = await self._card(pan)
        account = await self._p.account(card.account_id)
        if account is None or not account.phone:
            raise CoreError("pan: no phone number on file for this card")
        code = new_otp()
        now = self._p.clock()
        ch = Changes()
        ch.otps.append((card.card_id, self._p.otp_hash(card.card_id, code), now + OTP_TTL_S))
        sms = otp_text(code, merchant_name, amount, account.currency)
        sealed = AlertSeal(self._p._pan_key).seal(account.phone, sms)
        ch.alerts.append(AlertRow(account.phone, sealed, None, now))
        phone = account.phone
        challenge = OtpChallenge(
            f"{phone[:4]}{'*' * max(len(phone) - 6, 0)}{phone[-2:]}", now + OTP_TTL_S
        )
        if idempotency is not None:
            key, fingerprint = idempotency
            ch.idempotency = IdempotencyRow(key, fingerprint, "", challenge.to_json(), now)
        if sent_for is not None:
            ch.otp_sends.append((card.card_id, sent_for, now))
        await self.store.commit(ch)
        return challenge

    async def start_verification(
        self,
        pan: str,
        merchant: Merchant,
        amount: int,
        *,
        idempotency: tuple[str, str] | None = None,
    ) -> OtpChallenge:
        """``start_otp`` for a merchant, within the verification rate limits (codes per card
        and per merchant in a window, ``[verification]`` of the configuration): raises
        ``VerificationRateLimited`` naming the limit, and sends nothing then.

        The count is read from the store and the code committed under one lock, so two
        concurrent calls cannot both take the last code of a window.
        """
        async with self._otp_lock:
            card = await self._card(pan)
            limits = self._p.config.verification
            now = self._p.clock()
            await check_rate(self.store, limits, card.card_id, merchant.merchant_id, now)
            return await self.start_otp(
                pan, merchant.name, amount, idempotency=idempotency, sent_for=merchant.merchant_id
            )
