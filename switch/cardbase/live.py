"""The card base import applied by a running switch (``Operator.ImportCards|ImportAccounts``).

``switch import cards|accounts FILE`` while a ``switch run`` holds the state directory reads
the file and sends its records here in batches. The running switch must apply them itself:
it holds the live copy of the cards and accounts it uses (a row changed under it would be
overwritten by its next snapshot of that card, or a status change missed until the card left
its cache), and it is the store's one writer. So each batch is:

1. checked with the offline import's rules (``switch.cardbase.importer``: the same parser,
   the same look-ups, the same rejection reasons and line numbers);
2. decided against the *live* card or account where one exists (its status as the switch
   holds it, which may be ahead of the store by a commit in flight);
3. applied, with no ``await`` in between, to the live objects (status, expiry, PIN data,
   phone: the very next authorization sees the change) and handed to the store as one unit:
   new rows, changed rows, the file's progress row and the operator's audit row, in one of
   the group commit's transactions (``Changes.cardbase``);
4. answered once that unit is durable.

Exactly once: a batch names the offset it starts at, which must be the file's committed
``next_offset`` (``import_progress``, shared with the offline import: a file begun one way
can be finished the other); a batch whose end is already committed is a retry and changes
nothing. Batches are applied one at a time (one lock per switch, and a lock every process
sharing the store takes turns on: PostgreSQL nodes, ``switch.cardbase.live_pg``; the workers
of ``switch run --workers`` over one SQLite file, ``switch.cardbase.file_locks``), so the
look-ups of one see every row of the one before, whichever process applied it. The
look-ups go through the store's own import interface (``SqliteCardBase`` read-only, or
``PostgresCardBase``).
New rows need no cache work: nothing can hold a card that was not in the store, and the
core reads a card it does not hold on first use.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from switch.cardbase.importer import (
    IssuerKeys,
    Reject,
    card_account_refused,
    card_update_refused,
    card_update_row,
    decide_accounts,
    duplicate_pan,
    new_card_row,
    parse_accounts,
    parse_cards,
)
from switch.cardbase.reader import RawRecord
from switch.cardbase.records import CardRecord
from switch.config import SwitchConfig
from switch.core.domain import Account, Card
from switch.store.api import AuditRow, CardBaseRows, Changes, StoreError
from switch.store.sqlite_cardbase import (
    Progress,
    SqliteCardBase,
    StoredAccount,
    StoredCard,
    progress_row,
)

KINDS = ("cards", "accounts")
MAX_BATCH = 5_000  # records per call: one group-commit unit must stay short
_SHA256 = re.compile(r"[0-9a-f]{64}")
_T = TypeVar("_T")
_DRIVERS = ("sqlite3", "psycopg")  # their errors are the store's (StoreError)


class LiveImportError(ValueError):
    """The batch is refused as a whole; ``str`` names the field. ``precondition``: the batch
    does not start where the file's import stands (resend from ``expected``)."""

    def __init__(self, message: str, *, precondition: bool = False) -> None:
        super().__init__(message)
        self.precondition = precondition


@dataclass(frozen=True, slots=True)
class FileRef:
    kind: str  # cards | accounts
    sha256: str
    name: str
    update: bool

    @property
    def progress_kind(self) -> str:
        return self.kind + ("+update" if self.update else "")

    def check(self) -> None:
        if self.kind not in KINDS:
            raise LiveImportError("kind: cards or accounts")
        if not _SHA256.fullmatch(self.sha256):
            raise LiveImportError("file.file_sha256: 64 lower-case hex digits expected")
        if not self.name or len(self.name) > 500 or not self.name.isprintable():
            raise LiveImportError("file.file_name: 1 to 500 printable characters")


@dataclass(frozen=True, slots=True)
class _Batch:
    """One call's batch, as ``LiveImport.apply`` was given it."""

    ref: FileRef
    start_offset: int
    records: list[RawRecord]
    end: tuple[int, int]  # byte offset, line
    last: bool
    keys: IssuerKeys | None
    audit: Callable[[str], AuditRow]
    now: float


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    loaded: int
    updated: int
    rejects: list[Reject]
    total: Progress
    replayed: bool = False


class LiveCore(Protocol):
    """What the live import needs of the running core (``SwitchCore`` has it)."""

    def pan_hash(self, pan: str) -> bytes: ...
    async def live_card(self, pan_hash: bytes) -> Card | None: ...
    async def live_account(self, account_id: int) -> Account | None: ...


class BatchLock(Protocol):
    """A lock shared by every process writing the store (``switch.cardbase.live_pg``,
    ``switch.cardbase.file_locks``), held from a batch's look-ups until its unit is durable;
    blocking calls (run on a worker thread)."""

    def acquire(self) -> None: ...
    def release(self) -> None: ...


class LiveImport:
    """The running switch's side of ``switch import``: one batch at a time.

    ``open_reads`` opens the look-up connection to the store's database (the importer's
    ``SqliteCardBase`` interface: a read-only SQLite connection, or ``PostgresCardBase``);
    it is opened on first use and reopened after a failed read. ``batch_lock``: the lock of
    a store other processes may share (PostgreSQL nodes, SQLite workers), so their batches
    take turns with this one's."""

    def __init__(
        self,
        core: LiveCore,
        commit: Callable[[Changes], Awaitable[None]],
        config: SwitchConfig,
        open_reads: Callable[[], SqliteCardBase],
        batch_lock: BatchLock | None = None,
    ) -> None:
        self._batch_lock = batch_lock
        self._core = core
        self._commit = commit  # the store's group commit: durable on return
        self.config = config
        self._open_reads = open_reads
        self._db: SqliteCardBase | None = None
        self._lock = asyncio.Lock()
        self._running: set[asyncio.Future[BatchOutcome]] = set()  # batches under way
        self._reads_lock = threading.Lock()

    async def _read(self, look_up: Callable[[SqliteCardBase], _T]) -> _T:
        """``look_up(db)`` on a worker thread. It ends the read transaction (PostgreSQL's
        connection would otherwise stay idle in one until the next batch); a failure closes
        the connection (the next call reopens it) and is the store's: ``StoreError``."""

        def run() -> _T:
            with self._reads_lock:  # a progress request beside a batch's look-ups
                if self._db is None:  # the store exists and is migrated once the switch runs
                    self._db = self._open_reads()
                try:
                    return look_up(self._db)
                finally:
                    self._db.rollback()

        try:
            return await asyncio.to_thread(run)
        except StoreError:
            self.close()
            raise
        except Exception as exc:
            if not type(exc).__module__.startswith(_DRIVERS):
                raise  # a bug: not to be answered as "store unavailable"
            self.close()
            raise StoreError(f"import look-ups: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self._reads_lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()  # neither driver raises closing a broken connection

    async def progress(self, ref: FileRef) -> Progress:
        ref.check()
        p = await self._read(lambda db: db.progress(ref.progress_kind, ref.sha256))
        return p or Progress(0, 0, 0, 0, 0, False, 0.0)

    async def apply(
        self,
        ref: FileRef,
        start_offset: int,
        records: list[RawRecord],
        end: tuple[int, int],
        last: bool,
        *,
        keys: IssuerKeys | None,
        audit: Callable[[str], AuditRow],
        now: float,
    ) -> BatchOutcome:
        """Check, decide, apply and commit one batch that ends at ``end`` (byte offset, line);
        ``audit(summary)`` gives its audit row."""
        ref.check()
        end_offset, end_line = end
        if end_offset < start_offset or (records and end_line < records[-1].line):
            raise LiveImportError("end_offset: before the batch's start or its last record")
        if len(records) > MAX_BATCH:
            raise LiveImportError(f"records: at most {MAX_BATCH} a batch")
        if ref.kind == "cards" and keys is None:
            raise LiveImportError("file.pvk: the issuer keys are required to import cards")
        # A call given up (its deadline) does not stop its batch half-way: the batch runs
        # to its end in a task of its own, holding both locks until its unit is durable (a
        # lock let go earlier would let the next batch read the progress before it), and
        # the client's resend is recognised by its offsets.
        batch = _Batch(ref, start_offset, records, end, last, keys, audit, now)
        task = asyncio.ensure_future(self._locked(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    async def _locked(self, batch: _Batch) -> BatchOutcome:
        async with self._lock:
            if self._batch_lock is None:
                return await self._apply(batch)
            await asyncio.to_thread(self._batch_lock.acquire)
            try:
                return await self._apply(batch)
            finally:
                await asyncio.to_thread(self._batch_lock.release)

    async def _apply(self, batch: _Batch) -> BatchOutcome:
        ref, start_offset, records, keys = batch.ref, batch.start_offset, batch.records, batch.keys
        end_offset, end_line = batch.end
        before = await self.progress(ref)
        if before.done or (start_offset < before.next_offset and end_offset <= before.next_offset):
            return BatchOutcome(0, 0, [], before, replayed=True)
        if start_offset != before.next_offset:
            raise LiveImportError(
                f"start_offset: the import of this file stands at offset "
                f"{before.next_offset} (line {before.next_line}), not {start_offset}",
                precondition=True,
            )
        rows = CardBaseRows()
        ch = Changes(cardbase=rows)
        # The live objects changed, held until the unit is durable: an object nobody
        # holds may leave the cache, and read back before the commit it would come back
        # without the change.
        keep: list[Card | Account] = []
        if ref.kind == "cards":
            assert keys is not None
            loaded, updated, rejects = await self._cards(ref, records, keys, ch, keep)
        else:
            loaded, updated, rejects = await self._accounts(ref, records, ch, keep)
        rejects.sort(key=lambda r: r.line)
        total = Progress(
            end_offset, end_line, before.loaded + loaded, before.updated + updated,
            before.rejected + len(rejects), batch.last, 0.0,
        )  # fmt: skip
        rows.progress = progress_row(ref.progress_kind, ref.sha256, ref.name, total, batch.now)
        first = records[0].line if records else before.next_line
        done = "; file done" if batch.last else ""
        ch.audit.append(
            batch.audit(
                f"lines {first}-{total.next_line}: {loaded} loaded, {updated} updated, "
                f"{len(rejects)} rejected{done}"
            )
        )
        await self._commit(ch)
        del keep
        return BatchOutcome(loaded, updated, rejects, total)

    # -- cards -------------------------------------------------------------------------------
    async def _cards(
        self,
        ref: FileRef,
        records: list[RawRecord],
        keys: IssuerKeys,
        ch: Changes,
        keep: list[Card | Account],
    ) -> tuple[int, int, list[Reject]]:
        # off the event loop's thread: the loop (authorizations) runs in between
        parsed, rejects = await asyncio.to_thread(
            parse_cards, records, self.config, self._core.pan_hash
        )
        numbers = sorted({r.account for _, r, _ in parsed})
        hashes = [h for _, _, h in parsed]
        accounts, stored, next_id = await self._read(
            lambda db: (db.accounts_by_number(numbers), db.cards_by_hash(hashes), db.next_card_id())
        )
        # the live cards of the PANs the store has (loaded now, so the decisions below run
        # with no await: nothing else changes them meanwhile)
        live: dict[bytes, Card] = {}
        for h in stored:
            card = await self._core.live_card(h)
            if card is not None:
                live[h] = card
        # the live accounts whose SMS number a card may change (few: most cards give none,
        # or the account's own)
        phone_changes = set()
        for _, rec, _ in parsed:
            acct = accounts.get(rec.account)
            if rec.phone and acct is not None and rec.phone != acct.phone:
                phone_changes.add(acct.account_id)
        live_accounts = await self._live_accounts(sorted(phone_changes))
        # -- from here on: no await until the unit is submitted --------------------------------
        rows = ch.cardbase
        assert rows is not None
        seen: dict[bytes, int] = {}
        loaded = updated = 0
        changed: list[tuple[Card, CardRecord]] = []
        new_phones: dict[int, tuple[StoredAccount, str]] = {}
        for line, rec, h in parsed:
            if h in seen:
                rejects.append(Reject(line, duplicate_pan(rec, seen[h])))
                continue
            acct = accounts.get(rec.account)
            why = card_account_refused(rec, acct, self.config)
            if why:
                rejects.append(Reject(line, why))
                continue
            assert acct is not None
            card = live.get(h)
            if h in stored:
                if card is None:  # in the store, yet not loadable: refuse rather than guess
                    rejects.append(Reject(line, f"pan: card {rec.masked_pan} is unreadable"))
                    continue
                old = _stored(card)
                why = card_update_refused(rec, old, acct, update=ref.update)
                if why:
                    rejects.append(Reject(line, why))
                    continue
                rows.card_updates.append(card_update_row(rec, old))
                changed.append((card, rec))
                updated += 1
            else:
                rows.new_cards.append(new_card_row(next_id, rec, h, acct, keys))
                next_id += 1
                loaded += 1
            seen[h] = line
            if rec.phone:  # in file order: the last card's phone wins
                new_phones[acct.account_id] = (acct, rec.phone)
        for card, rec in changed:
            _apply_card(card, rec)
            keep.append(card)
            ch.cards.append(
                (card.card_id, card.status.value, card.pin_tries, card.otp_tries,
                 card.activated_at)
            )  # fmt: skip
        for account_id, (acct, phone) in new_phones.items():
            live_acct = live_accounts.get(account_id)
            current = acct.phone if live_acct is None else live_acct.phone
            if phone == current:
                continue
            if live_acct is not None:
                live_acct.phone = phone
                keep.append(live_acct)
            rows.account_updates.append((acct.holder, phone, account_id))
        return loaded, updated, rejects

    async def _live_accounts(self, account_ids: list[int]) -> dict[int, Account]:
        out: dict[int, Account] = {}
        for account_id in account_ids:
            a = await self._core.live_account(account_id)
            if a is not None:
                out[account_id] = a
        return out

    # -- accounts ----------------------------------------------------------------------------
    async def _accounts(
        self, ref: FileRef, records: list[RawRecord], ch: Changes, keep: list[Card | Account]
    ) -> tuple[int, int, list[Reject]]:
        parsed, rejects = await asyncio.to_thread(parse_accounts, records)
        numbers = [r.account for _, r in parsed]
        stored, next_id = await self._read(
            lambda db: (db.accounts_by_number(numbers), db.next_account_id())
        )
        live_accounts = await self._live_accounts(
            sorted({stored[r.account].account_id for _, r in parsed if r.account in stored})
        )
        # -- from here on: no await until the unit is submitted --------------------------------
        rows = ch.cardbase
        assert rows is not None
        new, updates = decide_accounts(parsed, stored, next_id, update=ref.update, rejects=rejects)
        rows.new_accounts.extend(new)
        for rec, old in updates:
            live_acct = live_accounts.get(old.account_id)
            phone = rec.phone or (old.phone if live_acct is None else live_acct.phone)
            if live_acct is not None:
                live_acct.holder = rec.holder
                live_acct.phone = phone
                keep.append(live_acct)
            rows.account_updates.append((rec.holder, phone, old.account_id))
        return len(new), len(updates), rejects


def _stored(card: Card) -> StoredCard:
    """The live card in the shape the shared rules compare against."""
    return StoredCard(card.card_id, card.account_id, card.status.value, card.expiry, card.pvki,
                      card.pvv, card.ibm_offset)  # fmt: skip


def _apply_card(card: Card, rec: CardRecord) -> None:
    """The live card takes the record's status, expiry and PIN data (as ``CARD_UPDATE``
    writes them): the next authorization uses them."""
    if (rec.pvki, rec.pvv, rec.ibm_offset) != (card.pvki, card.pvv, card.ibm_offset):
        card.pin_tries = 0
    card.status = rec.status
    card.expiry = rec.expiry
    card.service_code = rec.service_code
    card.pan_sequence = rec.pan_sequence
    card.pvki = rec.pvki
    card.pvv = rec.pvv
    card.ibm_offset = rec.ibm_offset
