"""Loading cards and accounts in transactional, resumable batches.

A batch is ``batch_size`` records read from the file. Everything it changes -- new rows,
updates, and the file's progress row (offset of the next record, counts) -- is written in one
SQLite transaction, so a crash leaves the store exactly as after the last committed batch,
and rerunning the same command (same file content: the progress row is keyed by its SHA-256)
starts at the first record not committed. Rejected records are reported (line and reason)
once their batch is committed, so a resumed run does not report them twice.

Cards need no HSM call: the PVV or IBM offset comes from the file and the issuer's keys
(PVK, CVK, MK-AC, cryptograms under the LMK) from the keys file, the same for every card.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

from switch.cardbase.reader import RawRecord, read_csv, read_jsonl
from switch.cardbase.records import (
    ACCOUNT_FIELDS,
    ACCOUNT_REQUIRED,
    CARD_FIELDS,
    CARD_REQUIRED,
    AccountRecord,
    CardRecord,
    RecordError,
    parse_account,
    parse_card,
)
from switch.config import SwitchConfig
from switch.core.domain import ALLOWED_TRANSITIONS, CardStatus
from switch.core.hmac_sha256 import HmacSha256
from switch.store.sqlite_cardbase import Progress, SqliteCardBase, StoredAccount, StoredCard

DEFAULT_BATCH = 10_000
#: Below this many bytes left to read, the checking child's start (~0.5 s) costs more than
#: it saves (``switch.cardbase.checker``).
CHILD_MIN_BYTES = 4 * 2**20
FORMATS = ("csv", "jsonl")


@dataclass(frozen=True, slots=True)
class IssuerKeys:
    """The issuer's card keys as cryptograms under the LMK, stored on every new card."""

    pvk: str
    cvk: str
    mk_ac: str


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    reason: str


@dataclass(slots=True)
class Outcome:
    """What one run did, and the file's totals over every run (a resumed import)."""

    file_sha256: str
    loaded: int = 0
    updated: int = 0
    rejected: int = 0
    resumed_at_line: int = 0  # 0: started at the beginning
    already_done: bool = False
    total: Progress | None = field(default=None)


def format_of(path: Path, given: str | None) -> str:
    """``--format`` if given, else the extension: ``.csv`` or ``.jsonl`` / ``.ndjson``."""
    if given is not None:
        return given
    ext = path.suffix.lower()
    if ext == ".csv":
        return "csv"
    if ext in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ValueError(f"--format: cannot tell the format of {path.name!r} (csv or jsonl)")


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _records(fh: BinaryIO, fmt: str, kind: str, start: int, line: int) -> Iterator[RawRecord]:
    known, required = (
        (CARD_FIELDS, CARD_REQUIRED) if kind == "cards" else (ACCOUNT_FIELDS, ACCOUNT_REQUIRED)
    )
    reader = read_csv if fmt == "csv" else read_jsonl
    return reader(fh, known, required, start, line)


def _batches(records: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    batch: list[RawRecord] = []
    for r in records:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Written(NamedTuple):
    loaded: int
    updated: int
    rejects: list[Reject]
    progress: Progress  # the file's totals once this batch is committed


#: A batch after the checks that need no look-up: what to write, and the records rejected.
#: The cards' accounts by number (a cards import creates none: a look-up made by the reader
#: before the batch's transaction holds, except for the SMS number, read again here)
_Accounts = dict[str, StoredAccount]
_Checked = tuple[
    list[tuple[int, CardRecord, bytes]] | list[tuple[int, AccountRecord]], list[Reject]
]


# -- the rules both ways of importing apply (this module's Importer into a stopped switch's
# store, switch.cardbase.live into a running switch): same checks, same reasons ------------


def parse_cards(
    batch: list[RawRecord], config: SwitchConfig, pan_hash: Callable[[str], bytes]
) -> tuple[list[tuple[int, CardRecord, bytes]], list[Reject]]:
    """The checks of a batch of cards that need no look-up (parsing, Luhn, product), and
    each accepted card's PAN hash: (line, record, hash) in file order, and the rejects."""
    rejects: list[Reject] = []
    parsed: list[tuple[int, CardRecord, bytes]] = []
    products = config.products
    for raw in batch:
        if raw.error:
            rejects.append(Reject(raw.line, raw.error))
            continue
        try:
            rec = parse_card(raw.fields)
        except RecordError as exc:
            rejects.append(Reject(raw.line, str(exc)))
            continue
        if rec.product not in products:
            rejects.append(Reject(raw.line, f"product: unknown product {rec.product!r}"))
            continue
        parsed.append((raw.line, rec, pan_hash(rec.pan)))
    return parsed, rejects


def parse_accounts(batch: list[RawRecord]) -> tuple[list[tuple[int, AccountRecord]], list[Reject]]:
    rejects: list[Reject] = []
    parsed: list[tuple[int, AccountRecord]] = []
    for raw in batch:
        if raw.error:
            rejects.append(Reject(raw.line, raw.error))
            continue
        try:
            parsed.append((raw.line, parse_account(raw.fields)))
        except RecordError as exc:
            rejects.append(Reject(raw.line, str(exc)))
    return parsed, rejects


def duplicate_pan(rec: CardRecord, first_line: int) -> str:
    return f"pan: duplicate PAN {rec.masked_pan} in this file (line {first_line})"


def card_account_refused(rec: CardRecord, acct: StoredAccount | None, config: SwitchConfig) -> str:
    """'' if the card's account exists and suits its product, else the reason."""
    if acct is None or acct.kind != "ccp":
        return f"account: unknown account {rec.account}"
    product = config.products[rec.product]
    if product.currency != acct.currency:
        return (
            f"account: currency {acct.currency:03d} differs from product "
            f"{rec.product}'s {product.currency:03d}"
        )
    return ""


def card_update_refused(
    rec: CardRecord, old: StoredCard, acct: StoredAccount, *, update: bool
) -> str:
    """'' if ``rec`` may update the stored (or live) card ``old``, else the reason."""
    if not update:
        return f"pan: duplicate PAN {rec.masked_pan}: already in the store (see --update)"
    if old.account_id != acct.account_id:
        return "account: the card is on another account in the store"
    status = CardStatus(old.status)
    if rec.status is status:
        return ""
    renewal = status is CardStatus.EXPIRED and rec.expiry > old.expiry
    if renewal and rec.status in (CardStatus.DELIVERED, CardStatus.ACTIVE):
        return ""
    if rec.status not in ALLOWED_TRANSITIONS[status]:
        return f"status: {status.value} -> {rec.status.value} is not allowed"
    return ""


def card_update_row(rec: CardRecord, old: StoredCard) -> tuple[object, ...]:
    """``sqlite_cardbase.CARD_UPDATE``'s parameters: a replacement card's new expiry and PIN
    data (its wrong-PIN count cleared when the PIN data changed), its status, its holder."""
    new_pin = (rec.pvki, rec.pvv, rec.ibm_offset) != (old.pvki, old.pvv, old.ibm_offset)
    return (rec.status.value, rec.expiry, rec.holder, rec.service_code, rec.pan_sequence,
            rec.pvki, rec.pvv, rec.ibm_offset, int(new_pin), old.card_id)  # fmt: skip


def new_card_row(
    card_id: int, rec: CardRecord, pan_hash: bytes, acct: StoredAccount, keys: IssuerKeys
) -> tuple[object, ...]:
    """``sqlite_cardbase.CARD_INSERT``'s parameters."""
    return (card_id, pan_hash, rec.pan[:6], rec.pan[-4:], acct.account_id, rec.product,
            rec.expiry, rec.service_code, rec.pan_sequence, rec.pvki, rec.pvv, rec.ibm_offset,
            keys.pvk, keys.cvk, keys.mk_ac, rec.status.value, rec.holder)  # fmt: skip


def account_refused(rec: AccountRecord, old: StoredAccount, *, update: bool) -> str:
    """'' if ``rec`` may update the stored account ``old`` (holder, phone), else the reason."""
    if not update:
        return (f"account: duplicate account {rec.account}: already in the store "
                "(see --update)")  # fmt: skip
    if old.kind != "ccp" or old.currency != rec.currency:
        return f"currency: account {rec.account} is in {old.currency:03d} in the store"
    return ""


def duplicate_account(rec: AccountRecord, first_line: int) -> str:
    return f"account: duplicate account {rec.account} in this file (line {first_line})"


def decide_accounts(
    parsed: list[tuple[int, AccountRecord]],
    stored: dict[str, StoredAccount],
    next_id: int,
    *,
    update: bool,
    rejects: list[Reject],
) -> tuple[list[tuple[object, ...]], list[tuple[AccountRecord, StoredAccount]]]:
    """A batch of accounts decided against the ``stored`` ones, in file order: a number seen
    earlier in the file or an update refused goes to ``rejects``; the others are the new
    accounts (``ACCOUNT_INSERT``'s parameters, ids from ``next_id``) and the updates
    (record, stored account), which each way of importing writes as it must."""
    seen: dict[str, int] = {}
    inserts: list[tuple[object, ...]] = []
    updates: list[tuple[AccountRecord, StoredAccount]] = []
    for line, rec in parsed:
        if rec.account in seen:
            rejects.append(Reject(line, duplicate_account(rec, seen[rec.account])))
            continue
        old = stored.get(rec.account)
        if old is not None:
            why = account_refused(rec, old, update=update)
            if why:
                rejects.append(Reject(line, why))
                continue
            updates.append((rec, old))
        else:
            account_id = next_id + len(inserts)
            inserts.append(
                (account_id, rec.account, rec.holder, rec.phone, rec.currency, rec.balance)
            )
        seen[rec.account] = line
    return inserts, updates


class Importer:
    """One import run of one file into one store (the caller holds the state-dir lock)."""

    def __init__(
        self,
        db: SqliteCardBase,
        *,
        kind: str,
        update: bool,
        config: SwitchConfig,
        pan_key: bytes,
        keys: IssuerKeys | None,
        batch_size: int = DEFAULT_BATCH,
        clock: Callable[[], float] = time.time,
        overlap: bool = True,
        child_min_bytes: int = CHILD_MIN_BYTES,
    ) -> None:
        if kind not in ("cards", "accounts"):
            raise ValueError(f"kind: cards or accounts, not {kind!r}")
        if kind == "cards" and keys is None:
            raise ValueError("keys: required to import cards")
        self.db = db
        self.kind = kind
        self.update = update
        self.config = config
        self.keys = keys
        self.batch_size = batch_size
        self.overlap = overlap  # False: check and write each batch in turn, in this process
        self.child_min_bytes = child_min_bytes
        self._pan_key = pan_key
        self.clock = clock
        self._hmac = HmacSha256(pan_key)
        self.progress_kind = kind + ("+update" if update else "")

    def run(
        self,
        path: Path,
        fmt: str,
        *,
        on_reject: Callable[[Reject], None],
        on_batch: Callable[[int, int, int], None] = lambda offset, loaded, rejected: None,
        digest: str | None = None,
    ) -> Outcome:
        """Import ``path``; ``on_batch(offset, loaded, rejected)`` after each commit."""
        digest = digest or file_sha256(path)
        before = self.db.progress(self.progress_kind, digest)
        out = Outcome(digest, total=before)
        if before is not None and before.done:
            out.already_done = True
            return out
        total = before or Progress(0, 0, 0, 0, 0, False, 0.0)
        out.resumed_at_line = total.next_line if before is not None else 0
        name = str(path)

        def report(w: _Written) -> Progress:
            out.loaded += w.loaded
            out.updated += w.updated
            out.rejected += len(w.rejects)
            for r in w.rejects:
                on_reject(r)
            on_batch(w.progress.next_offset, out.loaded + out.updated, out.rejected)
            return w.progress

        # Two stages: reading and checking batch N+1 (in a child process, on the other core,
        # for a file worth it: switch.cardbase.checker says why not a thread) while this
        # process looks up, writes and commits batch N. Batches are written one at a time,
        # in file order, each seeing the ones before; each commits or rolls back whole (an
        # interrupt included).
        start = (total.next_offset, total.next_line)
        stages: Iterator[tuple[tuple[int, int], _Checked, _Accounts | None]]
        if self.overlap and path.stat().st_size - total.next_offset >= self.child_min_bytes:
            from switch.cardbase.checker import ReadJob, checked_in_child

            job = ReadJob(path, fmt, self.kind, start, self.batch_size, self.config,
                          self._pan_key, self.db.path)  # fmt: skip
            stages = checked_in_child(job)
        else:
            stages = self._checked_here(path, fmt, start)
        try:
            for end, checked, accounts in stages:
                total = report(self._write(end, checked, accounts, digest, name, total))
        finally:
            close = getattr(stages, "close", None)
            if close is not None:
                close()  # stops the child process, closes the file
        total = total._replace(done=True)
        self.db.begin()
        try:
            self.db.save_progress(self.progress_kind, digest, name, total, self.clock())
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise
        out.total = total
        return out

    def _checked_here(
        self, path: Path, fmt: str, start: tuple[int, int]
    ) -> Iterator[tuple[tuple[int, int], _Checked, _Accounts | None]]:
        with path.open("rb") as fh:
            for batch in _batches(_records(fh, fmt, self.kind, *start), self.batch_size):
                last = batch[-1]
                yield (last.end_offset, last.end_line), self._check(batch), None

    def _check(self, batch: list[RawRecord]) -> _Checked:
        """The checks that need no look-up (parsing, Luhn, PAN hash): outside the transaction,
        so the write lock is held only for look-ups and writes (an SMS worker may wait)."""
        if self.kind == "cards":
            digest = self._hmac.digest
            return parse_cards(batch, self.config, lambda pan: digest(pan.encode()))
        return parse_accounts(batch)

    def _write(
        self,
        end: tuple[int, int],
        checked: _Checked,
        accounts: _Accounts | None,
        digest: str,
        name: str,
        before: Progress,
    ) -> _Written:
        """One transaction: the batch's look-ups, writes and progress row; ``end``: where
        the batch ends (byte offset, line); ``accounts``: the cards' accounts if the reader
        looked them up already (``switch.cardbase.checker``)."""
        parsed, rejects = checked
        rejects = list(rejects)
        self.db.begin()
        try:
            if self.kind == "cards":
                loaded, updated = self._cards(parsed, rejects, accounts)  # type: ignore[arg-type]
            else:
                loaded, updated = self._accounts(parsed, rejects)  # type: ignore[arg-type]
            rejects.sort(key=lambda r: r.line)
            p = Progress(
                end[0], end[1], before.loaded + loaded, before.updated + updated,
                before.rejected + len(rejects), False, 0.0,
            )  # fmt: skip
            self.db.save_progress(self.progress_kind, digest, name, p, self.clock())
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise
        return _Written(loaded, updated, rejects, p)

    # -- cards -------------------------------------------------------------------------------
    def _cards(
        self,
        parsed: list[tuple[int, CardRecord, bytes]],
        rejects: list[Reject],
        accounts: _Accounts | None = None,
    ) -> tuple[int, int]:
        """Insert the batch's cards as new ones, then deal with the PANs the store had.

        Every candidate is inserted with ``ON CONFLICT (pan_hash) DO NOTHING`` under card ids
        numbered from the table's next one; the ids then absent from the table are the PANs
        already in the store. That costs one rowid range scan instead of a look-up of every
        PAN hash before the insert (which probes the same index again): a first load, where
        almost no PAN is known, pays for the index once per card.
        """
        looked_up_before = accounts is not None
        if accounts is None:
            accounts = self.db.accounts_by_number(sorted({r.account for _, r, _ in parsed}))
        keys = self.keys
        assert keys is not None
        first_id = next_id = self.db.next_card_id()
        candidates: list[tuple[int, CardRecord, bytes, StoredAccount, int]] = []
        inserts: list[tuple[object, ...]] = []
        seen: dict[bytes, int] = {}
        config = self.config
        currency = {code: p.currency for code, p in config.products.items()}
        for line, rec, h in parsed:
            if h in seen:
                rejects.append(Reject(line, duplicate_pan(rec, seen[h])))
                continue
            acct = accounts.get(rec.account)
            if acct is None or acct.kind != "ccp" or acct.currency != currency[rec.product]:
                rejects.append(Reject(line, card_account_refused(rec, acct, config)))
                continue
            seen[h] = line
            candidates.append((line, rec, h, acct, next_id))
            inserts.append(new_card_row(next_id, rec, h, acct, keys))
            next_id += 1
        self.db.insert_new_cards(inserts)
        present = self.db.card_ids_between(first_id, next_id - 1)
        updates: list[tuple[object, ...]] = []
        accepted: list[tuple[int, CardRecord, bytes, StoredAccount, int]] = candidates
        n_known = len(candidates) - len(present)
        if n_known:  # some PANs were in the store already: updates, or duplicates
            known = [c for c in candidates if c[4] not in present]
            stored = self.db.cards_by_hash([h for _, _, h, _, _ in known])
            accepted = []
            for c in candidates:
                line, rec, h, acct, card_id = c
                if card_id not in present:
                    why = card_update_refused(rec, stored[h], acct, update=self.update)
                    if why:
                        rejects.append(Reject(line, why))
                        continue
                    updates.append(card_update_row(rec, stored[h]))
                accepted.append(c)
        phones: dict[int, tuple[str, str, int]] = {}
        for _, rec, _, acct, _ in accepted:  # in file order: the last card's phone wins
            if rec.phone:
                phones[acct.account_id] = (acct.holder, rec.phone, acct.account_id)
        if phones and looked_up_before:  # an earlier batch may have changed one since
            phone_now = self.db.account_phones(sorted(phones))
        else:
            phone_now = {a.account_id: a.phone for a in accounts.values()}
        changed = [p for p in phones.values() if p[1] != phone_now[p[2]]]
        self.db.update_cards(updates)
        self.db.update_accounts(changed)
        return len(candidates) - n_known, len(updates)

    # -- accounts ------------------------------------------------------------------------------
    def _accounts(
        self, parsed: list[tuple[int, AccountRecord]], rejects: list[Reject]
    ) -> tuple[int, int]:
        stored = self.db.accounts_by_number([r.account for _, r in parsed])
        inserts, updates = decide_accounts(
            parsed, stored, self.db.next_account_id(), update=self.update, rejects=rejects
        )
        self.db.insert_accounts(inserts)
        self.db.update_accounts(
            [(rec.holder, rec.phone or old.phone, old.account_id) for rec, old in updates]
        )
        return len(inserts), len(updates)
