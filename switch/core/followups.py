"""Operations that refer to an earlier transaction: reversal, void, completion, refund.

A reversal gives back exactly what the original took (amount, fee on a full reversal, the
daily limit envelope, a bill's paid mark, a pre-authorization's hold) and never more than
is left; one for an unknown original is acknowledged and recorded (docs/architecture.md §4).
Functions over the ``Pipeline`` state, kept apart from the debit path they share no code with.

A follow-up of a *remote* original (authorised by another issuer host) goes to that same
issuer, which holds the money; this side checks what it can know from its own journal (the
original was approved, belongs to the same merchant, a completion does not exceed the
pre-authorization nor capture it twice, a refund stays within what was paid) and passes the
issuer client the original's wire identity: ``req.original`` filled with the MTI, STAN,
field 7 and acquirer id the original went out with, and its terminal in
``req.extra[ORIGINAL_TERMINAL]`` -- a merchant's follow-up by payment id knows none of them.
On a shared store (several nodes) the follow-ups of one remote payment take turns across the
nodes, each deciding on the journal's amounts as the previous one left them
(``_hold_remote_original``, docs/architecture.md §7).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from switch.core.context import REFERRING_TYPES, Ctx, Decline, OriginalState, Stale, iso_key
from switch.core.domain import ONUS, Account, Hold
from switch.core.holds import EXPIRED
from switch.core.ledger_accounts import GL_FEES
from switch.core.model import AuthRequest, AuthResult, OriginalRef, ResponseCode, TxnType
from switch.core.remote import HoldsOriginals
from switch.store.api import StoreError

if TYPE_CHECKING:
    from switch.core.pipeline import Pipeline

RC = ResponseCode
log = logging.getLogger("switch.core")

#: ``AuthRequest.extra`` key: the terminal id of a remote follow-up's original.
ORIGINAL_TERMINAL = "original_terminal_id"
#: The MTI a remote original went out with, by its transaction type.
_ORIGINAL_MTI = {TxnType.PREAUTH: "0100", TxnType.COMPLETION: "0220"}


async def original_state(p: Pipeline, txn_id: str) -> OriginalState | None:
    o = p.originals.get(txn_id)
    if o is not None:
        return o
    summary = await p.store.original(txn_id)
    if summary is None:
        return None
    if p.shared and summary.account_id is not None and summary.account_id not in p.accounts:
        # Another node may change what is left of it: read it again once its account (whose
        # version covers it) is live, so the copy is no older than that version.
        await p.account(summary.account_id)
        summary = await p.store.original(txn_id)
        if summary is None:
            return None
    o = p.originals.get(txn_id)  # loaded meanwhile
    if o is not None:
        return o
    o = OriginalState(
        txn_id=summary.txn_id,
        txn_type=TxnType(summary.txn_type),
        approved=summary.response_code == RC.APPROVED.value,
        card_id=summary.card_id,
        account_id=summary.account_id,
        amount=summary.amount,
        fee=summary.fee,
        currency=summary.currency,
        categories=tuple(int(c) for c in summary.categories.split(",") if c),
        business_day=summary.business_day,
        merchant_id=summary.merchant_id,
        counter_account_id=summary.counter_account_id,
        route=summary.route,
        reversed=summary.reversed,
        refunded=summary.refunded,
        captured=summary.captured,
        fee_reversed=summary.fee_reversed,
        parent_txn_id=summary.parent_txn_id,
    )
    p.originals[txn_id] = o
    return o


async def hold_of(p: Pipeline, txn_id: str) -> Hold | None:
    h = p.holds.get(txn_id)
    if h is None:
        loaded = await p.store.hold(txn_id)
        if loaded is None:
            return None
        h = p.holds.setdefault(txn_id, loaded)
    return h


# -- reversals, voids, completions, refunds ------------------------------------------------
async def find_original(p: Pipeline, ctx: Ctx) -> OriginalState | None:
    req = ctx.req
    ref = req.original
    assert ref is not None
    txn_id = ref.transaction_id
    if txn_id is None:
        if not ref.stan or not ref.transmission:
            raise Decline(RC.FORMAT_ERROR, "original: transaction_id or stan+transmission required")
        okey = iso_key(
            ref.acquirer_id or req.acquirer_id,
            req.terminal_id,
            ref.stan,
            ref.transmission,
            "fin",
        )
        pending = p._inflight.get(okey)
        if pending is not None:
            await asyncio.shield(pending)  # let the original finish first
        txn_id = await p.store.txn_id_for_key(okey)
        if txn_id is None:
            return None
    o = await original_state(p, txn_id)
    if o is not None and req.pan and o.card_id is not None:
        card = await p.card_by_id(o.card_id)
        if card is None or not hmac.compare_digest(card.pan_hash, ctx.pan_hash):
            raise Decline(RC.INVALID_TRANSACTION, "pan: does not match the original transaction")
    return o


async def referring(p: Pipeline, ctx: Ctx) -> AuthResult:
    req = ctx.req
    t = req.txn_type
    o = await find_original(p, ctx)
    if o is None:
        if t is TxnType.REVERSAL:
            return AuthResult(
                RC.APPROVED,
                "reversal for an unknown original: recorded",
                transaction_id=ctx.txn_id,
                approved_amount=0,
            )
        raise Decline(RC.INVALID_TRANSACTION, "original: no such transaction")
    # A capture's money is accounted on its pre-authorization (the merchant's payment id):
    # refunds of a completion are refunds of that payment, and reversing a completion
    # un-captures it, so the two ways of giving money back can never add up to more.
    # Reversing a refund gives the refunded payment its refundable amount back.
    parent: OriginalState | None = None
    if o.txn_type in (TxnType.COMPLETION, TxnType.REFUND) and o.parent_txn_id is not None:
        parent = await original_state(p, o.parent_txn_id)
        if parent is not None and o.txn_type is TxnType.COMPLETION and t is TxnType.REFUND:
            o, parent = parent, None
    ctx.original_txn_id = o.txn_id
    if o.route != ONUS:
        ctx.route = o.route
        return await _remote_followup(p, ctx, o, parent)
    if not o.approved:
        if t is TxnType.REVERSAL:
            return AuthResult(
                RC.APPROVED,
                "original was declined: nothing to reverse",
                transaction_id=ctx.txn_id,
                approved_amount=0,
            )
        raise Decline(RC.INVALID_TRANSACTION, "original: was declined")
    if (
        req.merchant_id
        and o.merchant_id
        and req.merchant_id != o.merchant_id
        and t is not TxnType.REVERSAL
    ):
        raise Decline(RC.INVALID_TRANSACTION, "original: belongs to another merchant")
    if o.account_id is None or o.card_id is None:
        raise Decline(RC.INVALID_TRANSACTION, "original: not a card transaction")
    account = await p.account(o.account_id)
    # Held by the request until it settles, so the bounded cache cannot drop it before the
    # decision section posts to it by id (switch.core.live_cache).
    ctx.counter_account = (
        None if o.counter_account_id is None else await p.account(o.counter_account_id)
    )
    card = await p.card_by_id(o.card_id)
    if account is None or card is None:
        raise Decline(RC.SYSTEM_MALFUNCTION, "original: account or card missing")
    ctx.account = account
    ctx.card = card
    hold = await hold_of(p, o.txn_id) if o.txn_type is TxnType.PREAUTH else None
    bill_key: tuple[str, str] | None = None
    if o.txn_type is TxnType.BILL_PAYMENT and t in (TxnType.REVERSAL, TxnType.VOID):
        bill = await p.store.bill_paid_by(o.txn_id)
        bill_key = None if bill is None else (bill.biller_id, bill.reference)
    if req.currency != o.currency:
        raise Decline(RC.INVALID_AMOUNT, "currency: differs from the original")
    if ctx.epoch != p.refresh_epoch:
        # rows were reloaded after a conflict while this one waited: its copies of the
        # original and the hold may be older than its account's version, so start again
        raise Stale()
    # -- decision section: no await below ------------------------------------------------
    if t is TxnType.REVERSAL:
        return _reverse(p, ctx, o, account, hold, bill_key, parent, void=False)
    if t is TxnType.VOID:
        if o.txn_type is TxnType.PREAUTH:
            if hold is None or hold.status != "open":
                raise Decline(RC.INVALID_TRANSACTION, "original: already captured or released")
        elif (
            o.txn_type not in (TxnType.PURCHASE, TxnType.BILL_PAYMENT) or o.business_day != ctx.day
        ):
            raise Decline(
                RC.INVALID_TRANSACTION, "void: only same-day sales and open pre-authorizations"
            )
        if o.reversed or o.refunded:
            raise Decline(RC.INVALID_TRANSACTION, "original: already reversed or refunded")
        return _reverse(p, ctx, o, account, hold, bill_key, parent, void=True)
    if t is TxnType.COMPLETION:
        return _complete(p, ctx, o, account, hold)
    return _refund(p, ctx, o, account)


async def _remote_followup(
    p: Pipeline, ctx: Ctx, o: OriginalState, parent: OriginalState | None
) -> AuthResult:
    """Check a follow-up of a remote original against our journal, then forward it to the
    original's issuer with the original's wire identity (see the module docstring).

    What it takes from the original (captured, refunded, reversed) is reserved before the
    issuer is asked and given back unless approved, so concurrent follow-ups cannot both
    pass; a reversal's approval carries the amount it gives back, as the journal keeps it.
    """
    req = ctx.req
    t = req.txn_type
    if not o.approved:
        if t is TxnType.REVERSAL:  # nothing went through (a time-out queued its own 0420)
            return AuthResult(
                RC.APPROVED,
                "original was declined: nothing to reverse",
                transaction_id=ctx.txn_id,
                approved_amount=0,
            )
        raise Decline(RC.INVALID_TRANSACTION, "original: was declined")
    if req.merchant_id and o.merchant_id and req.merchant_id != o.merchant_id:
        if t is not TxnType.REVERSAL:
            raise Decline(RC.INVALID_TRANSACTION, "original: belongs to another merchant")
    if req.currency != o.currency:
        raise Decline(RC.INVALID_AMOUNT, "currency: differs from the original")
    row = await p.store.journal_entry(o.txn_id)
    if row is None:
        raise Decline(RC.SYSTEM_MALFUNCTION, "original: journal entry missing")
    if p.shared:  # other nodes follow it up too: hold it, then read what they took
        await _hold_remote_original(p, ctx, parent or o)
        await _reread_taken(p, o)
        if parent is not None:
            await _reread_taken(p, parent)
    # -- no await from the checks to the reservation --------------------------------------
    amount = req.amount
    if t is TxnType.COMPLETION:
        if o.txn_type is not TxnType.PREAUTH:
            raise Decline(RC.INVALID_TRANSACTION, "original: not a pre-authorization")
        open_amount = o.amount - o.reversed
        if o.captured or open_amount <= 0:
            raise Decline(RC.INVALID_TRANSACTION, "original: already captured or released")
        if amount <= 0 or amount > open_amount:
            raise Decline(RC.INVALID_AMOUNT, f"amount: must be 1..{open_amount}")
    elif t is TxnType.REFUND:
        if o.txn_type is TxnType.PREAUTH:
            refundable = o.captured - o.refunded
        elif o.txn_type in (TxnType.PURCHASE, TxnType.COMPLETION, TxnType.BILL_PAYMENT):
            refundable = o.amount - o.reversed - o.refunded
        else:
            raise Decline(RC.INVALID_TRANSACTION, "original: cannot be refunded")
        amount = _refund_amount(req, refundable)
    else:  # reversal or void: what the issuer will give back, as the on-us rules count it
        amount = _remote_reversal_amount(o, req.amount, req.replacement_amount, t)
    ref = OriginalRef(
        mti=_ORIGINAL_MTI.get(o.txn_type, "0200"),
        stan=row.stan,
        transmission=row.transmission,
        acquirer_id=row.acquirer_id,
        transaction_id=o.txn_id,
    )
    # (a refund "of the rest" goes out with the amount it came to)
    ctx.req = replace(
        req,
        amount=amount if t is TxnType.REFUND else req.amount,
        original=ref,
        extra={**req.extra, ORIGINAL_TERMINAL: row.terminal_id},
    )
    # Reserve before the issuer is asked, so two concurrent captures (or refunds) cannot
    # both pass.
    captured = amount if t is TxnType.COMPLETION else 0
    refunded = amount if t is TxnType.REFUND else 0
    reversed_ = amount if t in (TxnType.REVERSAL, TxnType.VOID) else 0
    completion = o.txn_type is TxnType.COMPLETION
    uncaptured = reversed_ if parent is not None and completion else 0
    unrefunded = reversed_ if parent is not None and o.txn_type is TxnType.REFUND else 0
    o.captured += captured
    o.refunded += refunded
    o.reversed += reversed_
    if parent is not None:
        parent.captured -= uncaptured
        parent.refunded -= unrefunded
    approved = False
    try:
        result = await p._remote(ctx, o.route)
        approved = result.approved
    finally:
        if not approved:
            o.captured -= captured
            o.refunded -= refunded
            o.reversed -= reversed_
            if parent is not None:
                parent.captured += uncaptured
                parent.refunded += unrefunded
    if t in (TxnType.REVERSAL, TxnType.VOID):
        result = replace(result, approved_amount=reversed_)
    return result


async def _hold_remote_original(p: Pipeline, ctx: Ctx, root: OriginalState) -> None:
    """On a shared store, decide a follow-up of a remote original only while holding it
    across the nodes (``HoldsOriginals``), until the follow-up's unit settles: the in-memory
    reservation below covers this node only, and another node's capture, refund or reversal
    of the same payment is in the journal only once durable. ``root``: the payment whose
    amounts the follow-up changes (a completion's or refund's pre-authorization or purchase),
    so every follow-up of one payment takes turns. The hold is given back when the request's
    answer is settled (``ctx.inflight`` done: durable, failed or given up)."""
    issuer = p.remote.get(root.route)
    if not isinstance(issuer, HoldsOriginals):
        return  # no client (answered 91 below) or one that cannot serialise: as one node
    done = ctx.inflight
    assert done is not None  # set by Pipeline._authorize before any processing
    try:
        release = await issuer.hold_original(root.txn_id, done)
    except TimeoutError:
        raise Decline(
            RC.SYSTEM_MALFUNCTION, "original: follow-up in progress on another node: retry"
        ) from None
    except StoreError as exc:  # the queue's database: nothing decided, the caller retries
        log.error("remote original %s: no hold (%s)", root.txn_id, exc)
        raise Decline(RC.SYSTEM_MALFUNCTION, "original: store unavailable: retry") from None
    done.add_done_callback(lambda _: release())


async def _reread_taken(p: Pipeline, o: OriginalState) -> None:
    """What the journal says was taken from ``o`` (approved captures, refunds, reversals of
    every node), into the cached copy: held, nobody else changes it meanwhile, and this
    node's own earlier follow-ups are durable (a hold is given back only then)."""
    summary = await p.store.original(o.txn_id)
    if summary is not None:
        o.reversed, o.refunded = summary.reversed, summary.refunded
        o.captured, o.fee_reversed = summary.captured, summary.fee_reversed


def _remote_reversal_amount(
    o: OriginalState, requested: int, replacement: int | None, t: TxnType
) -> int:
    """What a reversal or void of a remote original gives back: all that is left for a void
    or a zero/too large amount, the difference for a replacement amount (field 95)."""
    remaining = max(o.amount - o.reversed, 0)
    if t is TxnType.VOID or (replacement is None and (requested == 0 or requested >= remaining)):
        return remaining
    if replacement is not None:
        return max(0, min(o.amount - o.reversed - replacement, remaining))
    return requested


def _reverse(
    p: Pipeline,
    ctx: Ctx,
    o: OriginalState,
    account: Account,
    hold: Hold | None,
    bill_key: tuple[str, str] | None,
    parent: OriginalState | None,
    *,
    void: bool,
) -> AuthResult:
    req = ctx.req
    if o.txn_type in REFERRING_TYPES - {TxnType.COMPLETION, TxnType.REFUND}:
        raise Decline(RC.INVALID_TRANSACTION, "original: cannot reverse a reversal or void")
    if o.txn_type is TxnType.BALANCE_INQUIRY:
        return AuthResult(
            RC.APPROVED, "nothing to reverse", transaction_id=ctx.txn_id, approved_amount=0
        )
    if o.txn_type is TxnType.PREAUTH:
        remaining = hold.remaining if hold is not None and hold.status == "open" else 0
    elif o.txn_type is TxnType.REFUND:
        remaining = o.amount - o.reversed
    else:
        remaining = o.amount - o.reversed - o.refunded
    if parent is not None and o.txn_type is TxnType.COMPLETION:
        # a completion: not what its payment has refunded already
        remaining = min(remaining, parent.captured - parent.refunded)
    if remaining <= 0:
        return AuthResult(
            RC.APPROVED, "already reversed", transaction_id=ctx.txn_id, approved_amount=0
        )
    replacement = None if void else req.replacement_amount
    if replacement is not None and replacement < 0:
        raise Decline(RC.FORMAT_ERROR, "replacement_amount: negative")
    if replacement is not None:
        amount = o.amount - o.reversed - replacement
    elif void or req.amount == 0 or req.amount >= remaining:
        amount = remaining
    else:
        amount = req.amount
    amount = max(0, min(amount, remaining))
    if amount == 0:
        return AuthResult(
            RC.APPROVED, "nothing to reverse", transaction_id=ctx.txn_id, approved_amount=0
        )
    full = amount == o.amount - o.reversed and o.reversed == 0
    fee = o.fee - o.fee_reversed if full else 0
    if o.txn_type is TxnType.PREAUTH:
        assert hold is not None
        hold.remaining -= amount
        account.held -= amount
        if hold.remaining == 0:
            hold.status = "released"
        ctx.changes.holds.append(
            (hold.txn_id, hold.account_id, hold.amount, hold.remaining, hold.status)
        )
        p._snapshot_account(ctx.changes, account)
    elif o.txn_type is TxnType.REFUND:
        if account.available < amount:
            raise Decline(RC.INSUFFICIENT_FUNDS, "refund already spent: cannot reverse")
        assert o.counter_account_id is not None
        p._post(ctx, [(account.account_id, -amount), (o.counter_account_id, amount)])
    else:
        assert o.counter_account_id is not None
        counter = p.accounts[o.counter_account_id]
        if not counter.may_go_negative and counter.available < amount:
            # a transfer whose beneficiary already spent it: no overdraft on their account
            raise Decline(RC.INSUFFICIENT_FUNDS, "credited account no longer holds the amount")
        legs = [(account.account_id, amount + fee), (o.counter_account_id, -amount)]
        if fee:
            legs.append((p.gl[GL_FEES], -fee))
        p._post(ctx, legs)
    for c in o.categories:
        p.limits.release(o.card_id or 0, c, amount, o.business_day, 1 if full else 0)
    if full and bill_key is not None:  # the bill is open again
        p.bills_paid[bill_key] = None
        ctx.changes.bill_guards.append((bill_key[0], bill_key[1], o.txn_id))
        ctx.changes.bills.append((bill_key[0], bill_key[1], None))
    o.reversed += amount
    o.fee_reversed += fee
    if parent is not None:
        if o.txn_type is TxnType.COMPLETION:
            parent.captured -= amount
        else:  # a reversed refund: refundable again
            parent.refunded -= amount
    ctx.fee = fee
    ctx.counter_account_id = o.counter_account_id
    return _answer(p, ctx, account, amount, "reversed" if not void else "voided")


def _complete(
    p: Pipeline, ctx: Ctx, o: OriginalState, account: Account, hold: Hold | None
) -> AuthResult:
    req = ctx.req
    if o.txn_type is not TxnType.PREAUTH or hold is None:
        raise Decline(RC.INVALID_TRANSACTION, "original: not a pre-authorization")
    if hold.status == EXPIRED:
        raise Decline(RC.INVALID_TRANSACTION, "original: pre-authorization expired, hold released")
    if hold.status != "open":
        raise Decline(RC.INVALID_TRANSACTION, "original: already captured or released")
    amount = req.amount
    if amount <= 0 or amount > hold.remaining:
        raise Decline(RC.INVALID_AMOUNT, f"amount: must be 1..{hold.remaining}")
    assert o.counter_account_id is not None
    rest = hold.remaining
    account.held -= rest
    hold.remaining = 0
    hold.status = "captured"
    ctx.changes.holds.append((hold.txn_id, hold.account_id, hold.amount, 0, "captured"))
    p._post(ctx, [(account.account_id, -amount), (o.counter_account_id, amount)])
    if rest > amount:  # the uncaptured part goes back to the daily envelope
        for c in o.categories:
            p.limits.release(o.card_id or 0, c, rest - amount, o.business_day, 0)
    o.captured += amount
    ctx.counter_account_id = o.counter_account_id
    return _answer(p, ctx, account, amount, "captured")


def _refund(p: Pipeline, ctx: Ctx, o: OriginalState, account: Account) -> AuthResult:
    req = ctx.req
    if o.txn_type is TxnType.PREAUTH:
        refundable = o.captured - o.refunded
    elif o.txn_type in (TxnType.PURCHASE, TxnType.COMPLETION, TxnType.BILL_PAYMENT):
        refundable = o.amount - o.reversed - o.refunded
    else:
        raise Decline(RC.INVALID_TRANSACTION, "original: cannot be refunded")
    amount = _refund_amount(req, refundable)
    assert o.counter_account_id is not None
    p._post(ctx, [(o.counter_account_id, -amount), (account.account_id, amount)])
    o.refunded += amount
    ctx.counter_account_id = o.counter_account_id
    card = ctx.card
    if card is not None:
        p._alert(ctx, "refund", amount, account, card.masked_pan)
    return _answer(p, ctx, account, amount, "refunded")


def _refund_amount(req: AuthRequest, refundable: int) -> int:
    """What a refund gives back: its amount, within what is still refundable.

    A merchant's refund without an amount (``0``: the API's "unset") is "everything still
    refundable", decided here, against the live state, rather than by the caller from a
    payment it read earlier: after a partial refund the rest is refunded, and a retry with
    the same key is the same request (amount 0), so it is replayed, not refused.
    """
    amount = req.amount
    if amount == 0 and req.idempotency_key is not None:
        if refundable <= 0:
            raise Decline(RC.INVALID_AMOUNT, "payment_id: nothing left to refund")
        return refundable
    if amount <= 0 or amount > refundable:
        raise Decline(RC.INVALID_AMOUNT, f"amount: refundable is {max(refundable, 0)}")
    return amount


def _answer(p: Pipeline, ctx: Ctx, account: Account, amount: int, message: str) -> AuthResult:
    r = p._approve(ctx, account, amount)
    return AuthResult(
        r.response_code, message, r.auth_code, r.transaction_id, r.available_balance,
        r.ledger_balance, r.currency, amount,
    )  # fmt: skip
