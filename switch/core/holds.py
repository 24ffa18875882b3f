"""Pre-authorization holds expire: money a merchant never captured comes back by itself.

A pre-authorization (fuel pump, a merchant's Authorize) places a hold on the CCP account;
a completion captures it, a reversal or void releases it. One that gets neither would lock
the cardholder's money for good, so -- as issuers do -- the switch releases an open hold once
its validity has run out: ``preauth_validity_hours`` of the card product's schedule in force
on the pre-authorization's business day (``fuel_preauth_validity_hours`` for a fuel pump's,
MCC 5541/5542), counted from the pre-authorization's journal ``created_at``.

What an expiry writes, in one unit through the group commit (atomic, durable): the hold
with status ``expired`` and nothing remaining, the account's lower ``held``, and a journal
row of type ``reversal`` referring to the pre-authorization (``original_txn_id``), approved,
for the amount released, with no terminal and the message ``hold expired: ...`` -- so an
operator (and the merchant's payment, whose ``reversed`` grows) sees why the money came back,
and every view derived from the journal (what is left to reverse, the daily limit usage
rebuilt at start) counts it like the reversal it stands for. No postings: a hold moves no
money. The cardholder gets an SMS alert (``hold_released``) in the same unit. A later
completion or void of the pre-authorization is declined (12, "expired").

Races: the core is single-threaded asyncio and a hold has one live ``Hold`` object
(``Pipeline.holds``) that completions, reversals and voids check and change with no
``await`` in between; the expiry does the same, so of a completion and an expiry of the same
hold exactly one applies. The store is read only to find candidates; the live object decides.
An expired hold is ``expired`` on disk in the same unit as its journal row, so after a
restart it is never found (or released) again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from switch.config import DEFAULT_PREAUTH_VALIDITY_HOURS, SwitchConfig
from switch.core.business_day import day_number
from switch.core.categories import LimitCategory
from switch.core.domain import ONUS, Account, Hold
from switch.core.model import ResponseCode, TxnType
from switch.store.api import AlertRow, Changes, Conflict, JournalRow, OpenHold, StoreError

if TYPE_CHECKING:
    from switch.core.pipeline import Pipeline

log = logging.getLogger("switch.core.holds")

#: Hold status of a pre-authorization the switch released because its validity ran out.
EXPIRED: Final = "expired"
#: Open holds read from the store at a time (each page is decided and committed in one go).
PAGE_SIZE: Final = 500
#: How often ``switch run`` looks for expired holds, in seconds.
EXPIRY_INTERVAL_S: Final = 60.0

_FUEL: Final = str(int(LimitCategory.FUEL))


def shortest_validity_hours(config: SwitchConfig) -> int:
    """The shortest validity any hold can have: holds placed later cannot have expired."""
    hours = [DEFAULT_PREAUTH_VALIDITY_HOURS]  # the fallback for a product no longer configured
    for product in config.products.values():
        for s in product.schedules:
            hours += [s.preauth_validity_hours, s.fuel_preauth_validity_hours]
    return min(hours)


def validity_hours(p: Pipeline, row: OpenHold) -> int:
    """The validity of ``row``'s hold: its product's schedule on the pre-authorization's day."""
    product = p.config.products.get(row.product)
    if product is None:  # never lock the money because a product left the configuration
        return DEFAULT_PREAUTH_VALIDITY_HOURS
    sched = p.schedule(product, row.business_day)
    if _FUEL in row.categories.split(","):
        return sched.fuel_preauth_validity_hours
    return sched.preauth_validity_hours


async def expire_holds(p: Pipeline, now: float | None = None) -> int:
    """Release every open hold older than its validity; return how many were released.

    Returns once the releases are durable. Raises ``StoreError`` if the store cannot read or
    commit (the switch then halts, as for a failed authorization).
    """
    if p.halted is not None:
        raise StoreError(f"switch halted: {p.halted}")
    now = p.clock() if now is None else now
    cutoff = now - shortest_validity_hours(p.config) * 3600
    released = 0
    after = ""
    while True:
        page = await p.store.open_holds_placed_before(cutoff, after, PAGE_SIZE)
        if not page:
            return released
        page_after, after = after, page[-1].txn_id
        epoch = p.refresh_epoch
        due: list[tuple[OpenHold, int, Account]] = []
        for row in page:
            hours = validity_hours(p, row)
            if row.placed_at + hours * 3600 > now:
                continue
            # the account is live in memory before the decision section
            account = await p.account(row.account_id)
            if account is None:  # one broken row must not block all
                log.error("hold %s: account %s is missing", row.txn_id, row.account_id)
                continue
            if p.shared and row.txn_id not in p.holds:
                # another node may have captured or released it since the page was read:
                # read it again now that the account (whose version covers it) is live
                hold = await p.store.hold(row.txn_id)
                if hold is None or hold.status != "open":
                    continue
                row = row._replace(remaining=hold.remaining)
            due.append((row, hours, account))  # held: the cache may evict meanwhile
        if epoch != p.refresh_epoch:
            after = page_after  # rows were reloaded meanwhile: read the page again
            continue
        released += await _release(p, due, now)
        if len(page) < PAGE_SIZE:
            return released


async def _release(p: Pipeline, due: list[tuple[OpenHold, int, Account]], now: float) -> int:
    # -- decision section: no await until every unit is submitted ----------------------------
    units: list[asyncio.Future[None]] = []
    changes: list[Changes] = []
    for row, hours, account in due:
        hold = p.holds.setdefault(
            row.txn_id, Hold(row.txn_id, row.account_id, row.amount, row.remaining, "open")
        )
        if hold.status != "open" or hold.remaining <= 0:
            continue  # completed, reversed or expired meanwhile: the live object decides
        ch = _expire(p, row, hold, account, hours, now)
        try:
            units.append(p.submit(ch))  # pins the account until durable
        except StoreError as exc:
            _halt(p, exc)
            raise
        changes.append(ch)
    # -- all submitted together: one group commit --------------------------------------------
    outcomes = await asyncio.gather(*units, return_exceptions=True)
    released = 0
    for ch, outcome in zip(changes, outcomes, strict=True):
        if isinstance(outcome, Conflict):
            # another node changed the account or card first (it may have released this very
            # hold): reload them; a hold still open is released at the next run
            await p.refresh(ch)
        elif isinstance(outcome, StoreError):
            _halt(p, outcome)
            raise outcome
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            released += 1
    return released


def _expire(
    p: Pipeline, row: OpenHold, hold: Hold, account: Account, hours: int, now: float
) -> Changes:
    """Apply one expiry to the live state and return its unit (hold, balance, journal)."""
    amount = hold.remaining
    full = amount == hold.amount  # nothing reversed before: the day's count comes back too
    account.held -= amount
    hold.remaining = 0
    hold.status = EXPIRED
    ch = Changes()
    ch.holds.append((hold.txn_id, hold.account_id, hold.amount, 0, EXPIRED))
    p._snapshot_account(ch, account)
    if row.card_id is not None:  # the daily envelope, as a reversal gives it back
        for c in row.categories.split(","):
            if c:
                p.limits.release(row.card_id, int(c), amount, row.business_day, 1 if full else 0)
    o = p.originals.get(hold.txn_id)
    if o is not None:
        o.reversed += amount
    txn_id = p._next_txn_id()
    if account.phone:  # the cardholder sees the money come back, as for a refund
        merchant = p.merchants.get(row.merchant_id)
        ch.alerts.append(
            AlertRow(account.phone, "", txn_id, now, "hold_released", row.masked_pan, amount,
                     account.currency, merchant.name if merchant else "", account.available)
        )  # fmt: skip
    ch.journal = JournalRow(
        txn_id=txn_id,
        created_at=now,
        business_day=day_number(now, p.tz),
        txn_type=TxnType.REVERSAL.value,
        channel=row.channel,
        response_code=ResponseCode.APPROVED.value,
        auth_code=None,
        card_id=row.card_id,
        account_id=hold.account_id,
        masked_pan=row.masked_pan,
        amount=amount,
        fee=0,
        currency=row.currency,
        categories="",
        acquirer_id="",
        terminal_id="",
        stan="",
        transmission="",
        rrn=txn_id,  # the switch's own, as for any request that came without one
        merchant_id=row.merchant_id,
        original_txn_id=hold.txn_id,
        counter_account_id=row.counter_account_id,
        route=ONUS,
        message=f"hold expired: pre-authorization not completed within {hours} h, released",
    )
    return ch


def _halt(p: Pipeline, exc: BaseException) -> None:
    """Memory is ahead of a store that failed: stop approving, as the pipeline does."""
    p.halted = str(exc)
    log.critical("store commit failed during hold expiry, approvals stopped: %s", exc)


async def expire_holds_every(expire: Callable[[], Awaitable[int]], interval: float) -> None:
    """Run ``expire`` now and then every ``interval`` seconds until cancelled; an error is
    logged and the next period tries again (a hold left open one more minute harms no one)."""
    while True:
        try:
            released = await expire()
        except Exception:
            log.exception("hold expiry failed; retrying in %.0f s", interval)
        else:
            if released:
                log.info("released %d expired pre-authorization hold(s)", released)
            else:
                log.debug("no pre-authorization hold has expired")
        await asyncio.sleep(interval)
