"""The gateway's operations on orders, over the core's payment operations.

Money moves only through ``SwitchCore.authorize`` -- the same sale, pre-authorization,
capture, void and refund the gRPC servicers call -- so the gateway keeps no ledger: an order
row says which journal entry paid it and what SATIM's status calls must answer.

The merchant is notified (``switch.merchant_notify``) of what the core journals -- paid,
authorized, captured, reversed, refunded -- by the recorder, in the same commit as the
payment: every ``core.authorize`` here runs inside ``payment_order(...)`` with the order's id,
number and ``jsonParams`` as metadata. An order's *decline* is the gateway's to notify, once it
is final (the page lets the cardholder try again after a wrong code, so the core's decline of
one attempt is not the order's): its ``merchant_events`` row is written in the same
transaction as the declined order row (``OrderStore.save(order, events)``), so a crash can
neither lose the notification of a declined order nor notify a decline that was not stored.
An abandoned order (nobody opens its page or asks its status again) is declined by the expiry
sweeper (``expire_due``, every ``sweep_s``) once its session is over, so its merchant is
told without asking.

One order is changed by one coroutine at a time (``OrderLocks``): a cardholder's double
click and a merchant's ``deposit.do`` racing a ``reverse.do`` are serialised per order, while
different orders proceed concurrently. The core's idempotency makes each step safe to retry:
every call to it carries a key derived from the order id and the attempt's number (kept in
the row before the call) or the follow-up itself (``_followup``).

Card data never reaches this module's store or logs: the hosted page passes PAN, expiry and
CVV2 straight into the ``AuthRequest`` (``pay``) and keeps them only in memory in between.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields, replace

from switch.api.mapping import base_request
from switch.core.domain import Merchant
from switch.core.model import AuthRequest, AuthResult, ResponseCode, TxnType
from switch.core.otp_rate import VerificationRateLimited
from switch.core.service import CoreError, SwitchCore
from switch.gateway.errors import ErrorCode, GatewayError, invalid
from switch.gateway.lockout import Locked, LockoutPolicy, LoginGuard
from switch.gateway.orders import (
    DuplicateOrder,
    Order,
    OrderKind,
    OrderStatus,
    OrderStore,
    new_order_id,
)
from switch.gateway.texts import ACTION_CANCELLED, ACTION_EXPIRED, action_code
from switch.merchant_notify import (
    EventType,
    PaymentOrder,
    PaymentStatus,
    build_event,
    payment_order,
)
from switch.merchant_notify.recorder import ensure_recorder
from switch.store.api import StoreError

log = logging.getLogger("switch.gateway")

DEFAULT_SESSION_TIMEOUT_S = 600.0
DEFAULT_MAX_TRIES = 3


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """``switch run --gateway-session-timeout`` / ``--gateway-max-tries``."""

    session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S
    max_tries: int = DEFAULT_MAX_TRIES
    #: the origin formUrl starts with (default: the origin the merchant called register.do on)
    public_url: str | None = None
    #: reverse proxies whose ``X-Forwarded-For`` names the client (``client_address``)
    trusted_proxies: frozenset[str] = frozenset()
    #: seconds between two runs of the expiry sweeper (``expire_due``; 0: never)
    sweep_s: float = 5.0
    #: wrong userName/password pairs allowed per id and per address (``lockout``)
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)


class OrderLocks:
    """One ``asyncio.Lock`` per order id while anyone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, order_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(order_id, (asyncio.Lock(), 0))
        self._locks[order_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[order_id]
            if users == 1:
                del self._locks[order_id]
            else:
                self._locks[order_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class CardRefused(Exception):
    """No code could be sent for this card (unknown card, no phone, too many codes)."""


class TooManyCodes(CardRefused):
    """This order had its ``max_tries`` codes sent already (a try is spent instead)."""


class CodeSends:
    """How many one-time codes each open order had sent, in memory.

    Sending a code costs an SMS and tells whoever typed the card number that it is a card of
    ours with a phone, so the card step cannot repeat for free: an order gets at most
    ``max_tries`` codes; past that each card step spends a try (``send_code``). A restart
    forgets the counts (the core's per-card verification limits still hold). Bounded: entries
    of orders whose session is over are swept when the table is full."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._sent: dict[str, tuple[int, float]] = {}  # order id -> (codes, expires_at)

    def count(self, order_id: str) -> int:
        return self._sent.get(order_id, (0, 0.0))[0]

    def add(self, order: Order, now: float) -> None:
        if order.order_id not in self._sent and len(self._sent) >= self.max_entries:
            for key in [k for k, (_, until) in self._sent.items() if until <= now]:
                del self._sent[key]
            while len(self._sent) >= self.max_entries:
                del self._sent[next(iter(self._sent))]
        self._sent[order.order_id] = (self.count(order.order_id) + 1, order.expires_at)

    def forget(self, order_id: str) -> None:
        self._sent.pop(order_id, None)

    def __len__(self) -> int:
        return len(self._sent)


class GatewayService:
    def __init__(
        self,
        core: SwitchCore,
        orders: OrderStore,
        config: GatewayConfig | None = None,
    ) -> None:
        self.core = core
        self.orders = orders
        self.config = config or GatewayConfig()
        self.locks = OrderLocks()
        self.login_guard = LoginGuard(orders, self.config.lockout)  # counters in the store
        self.code_sends = CodeSends()
        #: (expires_at, order_id) of open orders, soonest first (``expire_due``)
        self._due: list[tuple[float, str]] = []
        # the merchant notifications' recorder on the core (attached by the first caller)
        self.recorder = ensure_recorder(core)

    # -- merchants -------------------------------------------------------------------------
    async def authenticate(self, user_name: str, password: str, address: str) -> Merchant:
        """``userName`` is the merchant id, ``password`` its API key (constant-time check),
        ``address`` the client's: failures are limited per id and per address
        (``switch.gateway.lockout``, counted in the store so all nodes count together); a
        locked id or address is refused whatever the password, with the same answer whether
        the id exists or not. The store unreachable: a system error, never a pass."""
        now = self.core.now()
        try:
            await self.login_guard.check(user_name, address, now)
            merchant = self.core.authenticate_merchant(user_name, password)
            if merchant is None:
                await self.login_guard.failed(user_name, address, now)
                raise GatewayError(ErrorCode.BAD_CREDENTIALS, "userName/password: access denied")
            await self.login_guard.succeeded(merchant.merchant_id, address, now)
        except Locked as e:
            raise GatewayError(
                ErrorCode.BAD_CREDENTIALS,
                "userName/password: access locked after too many failed attempts; "
                f"try again in {e.minutes} min",
            ) from None
        except StoreError as e:
            log.error("gateway: cannot read or count login failures: %s", e)
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "system error; retry later") from None
        return merchant

    def merchant_of(self, order: Order) -> Merchant:
        merchant = self.core.merchant(order.merchant_id)
        if merchant is None:  # removed since the order was registered
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "merchant: no longer configured")
        return merchant

    # -- orders ------------------------------------------------------------------------------
    async def register(
        self,
        merchant: Merchant,
        kind: OrderKind,
        *,
        order_number: str,
        amount: int,
        currency: int,
        return_url: str,
        fail_url: str,
        description: str,
        language: str,
        json_params: dict[str, str],
        session_timeout_s: float | None = None,
    ) -> Order:
        """``session_timeout_s``: the merchant's ``sessionTimeoutSecs`` (default: the
        gateway's ``--gateway-session-timeout``)."""
        now = self.core.now()
        timeout = self.config.session_timeout_s if session_timeout_s is None else session_timeout_s
        order = Order(
            new_order_id(), merchant.merchant_id, order_number, kind, amount, currency,
            return_url, fail_url, description, language, json.dumps(json_params),
            OrderStatus.REGISTERED, 0, now, now + timeout, now,
        )  # fmt: skip
        try:
            await self.orders.insert(order)
        except DuplicateOrder:
            raise GatewayError(
                ErrorCode.DUPLICATE_ORDER,
                f"orderNumber: {order_number} is already registered for this merchant",
            ) from None
        except StoreError as e:
            log.error("gateway: cannot store an order: %s", e)
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "system error; retry later") from None
        heapq.heappush(self._due, (order.expires_at, order.order_id))
        return order

    # -- the expiry sweeper ------------------------------------------------------------------
    async def watch_open_orders(self) -> None:
        """At start: the orders registered before (by an earlier run) that are still open."""
        try:
            found = await self.orders.open_orders()
        except StoreError as e:
            log.error("gateway: cannot read the open orders (not swept until seen): %s", e)
            return
        for entry in found:
            heapq.heappush(self._due, entry)

    async def expire_due(self) -> int:
        """Declines every open order whose session is over, and so notifies its merchant,
        even if nobody asks for it again (an abandoned page); the number declined. Called
        every few seconds by the server (``Gateway``), by tests directly. An order that was
        paid or declined meanwhile is skipped; one the store fails on is tried again later."""
        now = self.core.now()
        declined = 0
        retry: list[tuple[float, str]] = []
        while self._due and self._due[0][0] <= now:
            entry = heapq.heappop(self._due)
            try:
                order = await self.page_order(entry[1])
            except GatewayError:
                retry.append((now + 60.0, entry[1]))
                continue
            if order is None:
                continue
            if order.action_code == ACTION_EXPIRED and order.updated_at >= now:
                declined += 1  # by this call (an order declined before is older)
            elif order.status is OrderStatus.REGISTERED:  # not due after all: later
                retry.append((max(order.expires_at, now + 1.0), order.order_id))
        for entry in retry:
            heapq.heappush(self._due, entry)
        return declined

    async def find(self, merchant: Merchant, order_id: str, *, locked: bool = False) -> Order:
        """The merchant's order, its session expiry applied; ErrorCode 6 when it has none.
        ``locked``: the caller holds the order's lock already."""
        order = await self._load(order_id)
        if order is None or order.merchant_id != merchant.merchant_id:
            raise GatewayError(ErrorCode.UNKNOWN_ORDER, f"orderId: no order {order_id!r}")
        if locked:
            return await self.expire_locked(order)
        return await self.expire_if_due(order)

    async def find_by_number(self, merchant: Merchant, order_number: str) -> Order:
        try:
            order = await self.orders.by_number(merchant.merchant_id, order_number)
        except StoreError as e:
            log.error("gateway: cannot read an order: %s", e)
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "system error; retry later") from None
        if order is None:
            raise GatewayError(ErrorCode.UNKNOWN_ORDER, f"orderNumber: no order {order_number!r}")
        return await self.expire_if_due(order)

    async def _load(self, order_id: str) -> Order | None:
        try:
            return await self.orders.get(order_id)
        except StoreError as e:
            log.error("gateway: cannot read an order: %s", e)
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "system error; retry later") from None

    async def page_order(self, order_id: str) -> Order | None:
        """The order behind a payment page (any merchant's), its expiry applied."""
        order = await self._load(order_id)
        return None if order is None else await self.expire_if_due(order)

    def expired(self, order: Order) -> bool:
        return order.status is OrderStatus.REGISTERED and self.core.now() >= order.expires_at

    async def expire_if_due(self, order: Order) -> Order:
        """An unpaid order past its session is declined (OrderStatus 6, actionCode -2007);
        one whose last attempt the core approved is settled first (``recover``)."""
        if not (self.expired(order) or self._unsettled(order)):
            return order
        async with self.locks.hold(order.order_id):
            fresh = await self._load(order.order_id)
            return order if fresh is None else await self.expire_locked(fresh)

    async def expire_locked(self, order: Order) -> Order:
        """``expire_if_due`` for a caller that holds the order's lock."""
        await self.recover(order)
        if self.expired(order):
            await self._decline(order, "", ACTION_EXPIRED)
        return order

    @staticmethod
    def _unsettled(order: Order) -> bool:
        return order.status is OrderStatus.REGISTERED and order.tries > 0

    async def recover(self, order: Order) -> None:
        """Settle an order whose last attempt the core decided but whose row was not updated
        (the process stopped between the two commits): the journal has the answer under the
        attempt's idempotency key, so the order says paid (or held) as the cardholder was
        charged -- or, for a final decline, is declined now, with its merchant's notification
        in the same transaction (``_decline``), as ``pay`` would have. Called with the
        order's lock held, so never during that attempt itself."""
        if not self._unsettled(order):
            return
        # the core keeps a merchant's key as api:<merchant>:<key> (switch.core.context)
        key = f"api:{order.merchant_id}:gw:{order.order_id}:{order.tries}"
        try:
            txn_id = await self.core.store.txn_id_for_key(key)
            row = None if txn_id is None else await self.core.store.journal_entry(txn_id)
        except StoreError as e:
            log.error("gateway: cannot read the journal: %s", e)
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "system error; retry later") from None
        if row is None:
            return
        if row.response_code != ResponseCode.APPROVED.value:
            if not self._retryable(row.response_code, order.tries):
                self._event(order, "final decline recovered from the journal")
                rc = row.response_code
                order.masked_pan = f"{row.masked_pan[:6]}**{row.masked_pan[-4:]}"
                await self._decline(order, rc, action_code(rc), row.txn_id)
            return
        preauth = order.kind is OrderKind.PREAUTH
        order.status = OrderStatus.PREAUTHORIZED if preauth else OrderStatus.DEPOSITED
        order.payment_id = row.txn_id
        order.approval_code = row.auth_code or ""
        order.response_code = row.response_code
        order.action_code = 0
        order.masked_pan = f"{row.masked_pan[:6]}**{row.masked_pan[-4:]}"
        order.deposit_amount = 0 if preauth else order.amount
        await self._save(order)
        self._event(order, "recovered from the journal")

    def _retryable(self, response_code: str, tries: int) -> bool:
        """May the cardholder try again after this decline of attempt ``tries``? After a
        wrong code, or when the switch could not decide, while tries are left."""
        retry = (ResponseCode.INCORRECT_PIN.value, ResponseCode.SYSTEM_MALFUNCTION.value)
        return response_code in retry and tries < self.config.max_tries

    async def _save(self, order: Order) -> None:
        order.updated_at = self.core.now()
        try:
            await self.orders.save(order)
        except StoreError as e:
            log.error("gateway: cannot store order %s: %s", order.order_id, e)
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "system error; retry later") from None
        if order.final:
            self.code_sends.forget(order.order_id)

    @staticmethod
    def _event(order: Order, event: str) -> None:
        log.info(
            "gateway order %s merchant %s: %s (status %d, rc %s)",
            order.order_id, order.merchant_id, event, order.status, order.response_code or "-",
        )  # fmt: skip

    def _metadata(self, order: Order) -> dict[str, str]:
        meta: dict[str, str] = json.loads(order.json_params)
        return meta

    def _payment_order(
        self, order: Order, *, notify_decline: bool, taken: int, refunded: int
    ) -> PaymentOrder:
        """The notification facts of ``order`` for the ``core.authorize`` about to run."""
        original = self.recorder.ids.public(order.payment_id) if order.payment_id else ""
        return PaymentOrder(
            order.merchant_id, order_reference=order.order_number, order_id=order.order_id,
            metadata=self._metadata(order), original_payment_id=original, taken=taken,
            refunded=refunded, notify_decline=notify_decline,
        )  # fmt: skip

    async def _authorize(
        self,
        order: Order,
        req: AuthRequest,
        *,
        notify_decline: bool = True,
        taken: int = 0,
        refunded: int = 0,
    ) -> AuthResult:
        facts = self._payment_order(
            order, notify_decline=notify_decline, taken=taken, refunded=refunded
        )
        with payment_order(facts):
            return await self.core.authorize(req)

    async def _decline(
        self, order: Order, response_code: str, action: int, txn_id: str = ""
    ) -> None:
        """The order is declined for good: the row and the merchant's notification (if it has
        an enabled callback) in one transaction. ``txn_id``: the journal row of the declined
        attempt, if the core made one. If that transaction fails nothing of it is stored and
        ``order`` is left as it was (ErrorCode 7): the next call declines it again."""
        before = replace(order)
        order.status = OrderStatus.DECLINED
        order.response_code = response_code
        order.action_code = action
        order.updated_at = self.core.now()
        events = []
        if self.recorder.enabled(order.merchant_id):
            events.append(
                build_event(
                    merchant_id=order.merchant_id, event_type=EventType.DECLINED,
                    payment_id=self.recorder.ids.public(txn_id) if txn_id else "",
                    status=PaymentStatus.DECLINED, amount=order.amount,
                    currency=order.currency, response_code=response_code,
                    masked_pan=order.masked_pan, created_at=order.updated_at,
                    order_id=order.order_id, order_reference=order.order_number,
                    operation="authorization" if order.kind is OrderKind.PREAUTH else "sale",
                    metadata=self._metadata(order),
                )
            )  # fmt: skip
        try:
            await self.orders.save(order, events)
        except StoreError as e:
            for f in fields(Order):
                setattr(order, f.name, getattr(before, f.name))
            log.error("gateway: cannot store the decline of order %s: %s", order.order_id, e)
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "system error; retry later") from None
        self.code_sends.forget(order.order_id)
        self._event(order, "declined" if not events else "declined (merchant notified)")

    # -- the hosted page's steps (called with the order's lock held) ---------------------------
    def tries_left(self, order: Order) -> int:
        return max(self.config.max_tries - order.tries, 0)

    async def send_code(self, order: Order, pan: str) -> str:
        """Sends the cardholder's one-time code by SMS; the masked phone it went to.

        Raises ``CardRefused`` (a try is spent; the order is declined once none is left),
        ``TooManyCodes`` once the order had ``max_tries`` codes (``CodeSends``)."""
        merchant = self.merchant_of(order)
        if self.code_sends.count(order.order_id) >= self.config.max_tries:
            await self.spend_try(order, "65")  # exceeds frequency limit
            raise TooManyCodes(f"order {order.order_id}: {self.config.max_tries} codes sent")
        try:
            challenge = await self.core.start_verification(pan, merchant, order.amount)
        except (CoreError, VerificationRateLimited) as e:
            await self.spend_try(order, "14" if "unknown card" in str(e) else "05")
            raise CardRefused(str(e)) from None
        self.code_sends.add(order, self.core.now())
        return challenge.masked_phone

    async def spend_try(self, order: Order, response_code: str) -> None:
        order.tries += 1
        order.response_code = response_code
        if order.tries >= self.config.max_tries:
            await self._decline(order, response_code, action_code(response_code))
        else:
            await self._save(order)

    async def pay(self, order: Order, pan: str, expiry: str, cvv2: str, otp: str) -> AuthResult:
        """The sale or pre-authorization of ``order`` with the card and its one-time code.

        Approved: the order is paid (2) or held (1). An incorrect code with tries left leaves
        it registered (the page asks again); any other decline declines it (6)."""
        merchant = self.merchant_of(order)
        term = self.core.terminal(merchant.terminal_id)
        if term is None:
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "merchant: has no terminal configured")
        txn = TxnType.PREAUTH if order.kind is OrderKind.PREAUTH else TxnType.PURCHASE
        order.tries += 1
        await self._save(order)  # the key below is never reused, even across a crash
        key = f"gw:{order.order_id}:{order.tries}"
        req = base_request(
            merchant, term.acquirer_id, txn, key, order.amount, order.currency,
            pan_=pan, expiry=expiry, cvv2=cvv2, otp=otp,
        )  # fmt: skip
        # a decline is notified by _decline once final, not per attempt (see the docstring)
        r = await self._authorize(order, req, notify_decline=False)
        rc = r.response_code
        order.response_code = rc.value
        order.masked_pan = f"{pan[:6]}**{pan[-4:]}"
        order.expiration = f"20{expiry[:2]}{expiry[2:]}"
        if r.approved:
            order.status = (
                OrderStatus.PREAUTHORIZED if txn is TxnType.PREAUTH else OrderStatus.DEPOSITED
            )
            order.payment_id = r.transaction_id or ""
            order.approval_code = r.auth_code or ""
            order.action_code = 0
            order.deposit_amount = order.amount if txn is TxnType.PURCHASE else 0
            await self._save(order)
            self._event(order, "authorized" if txn is TxnType.PREAUTH else "paid")
            return r
        if self._retryable(rc.value, order.tries):
            order.action_code = action_code(rc.value)
            await self._save(order)
        else:  # the notification names the declined attempt's journal row
            await self._decline(order, rc.value, action_code(rc.value), r.transaction_id or "")
        return r

    async def cancel(self, order: Order) -> None:
        """The cardholder gave up on the page: declined (6), nothing was charged."""
        await self._decline(order, "", ACTION_CANCELLED)

    # -- the merchant's follow-ups -------------------------------------------------------------
    async def _followup(
        self,
        merchant: Merchant,
        order: Order,
        txn: TxnType,
        amount: int,
        operation: str,
        *,
        taken: int = 0,
        refunded: int = 0,
    ) -> AuthResult:
        """``txn`` on the order's payment. ``operation`` names it in the idempotency key, so
        the same call after the process stopped between the core's commit and the order row's
        is the same request for the core, answered once (``replayed``): nothing is captured,
        voided or refunded twice for it. (Once the row is updated, a deposit or reverse again
        is refused by the order's state; a refund again is a new refund, keyed by the new
        refunded total: SATIM's API gives no request id to tell a repeat from a second one.)"""
        term = self.core.terminal(merchant.terminal_id)
        if term is None:
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "merchant: has no terminal configured")
        order.ops += 1  # a count of the follow-ups asked, for the operator
        key = f"gw:{order.order_id}:{operation}"
        req = base_request(
            merchant, term.acquirer_id, txn, key, amount, order.currency,
            original=order.payment_id,
        )  # fmt: skip
        r = await self._authorize(order, req, taken=taken, refunded=refunded)
        if r.response_code is ResponseCode.SYSTEM_MALFUNCTION:
            raise GatewayError(ErrorCode.SYSTEM_ERROR, "system error; retry later")
        if r.response_code is ResponseCode.DUPLICATE_TRANSMISSION:
            raise GatewayError(
                ErrorCode.SYSTEM_ERROR,
                f"orderId: {operation} was already asked with another amount",
            )
        if not r.approved:
            raise GatewayError(ErrorCode.SYSTEM_ERROR, f"orderId: refused: {r.message}")
        return r

    def _state(self, order: Order, allowed: tuple[OrderStatus, ...], what: str) -> None:
        if order.status not in allowed:
            raise GatewayError(
                ErrorCode.SYSTEM_ERROR,
                f"orderId: payment must be in the correct state for {what} "
                f"(OrderStatus {int(order.status)})",
            )

    async def deposit(self, merchant: Merchant, order_id: str, amount: int) -> Order:
        """``deposit.do``: captures a pre-authorized order (``amount`` 0: all of it)."""
        async with self.locks.hold(order_id):
            order = await self.find(merchant, order_id, locked=True)
            self._state(order, (OrderStatus.PREAUTHORIZED,), "a deposit")
            amount = amount or order.amount
            if amount > order.amount:
                raise invalid("amount", f"at most the pre-authorized {order.amount}")
            await self._followup(merchant, order, TxnType.COMPLETION, amount, "deposit")
            order.status = OrderStatus.DEPOSITED
            order.deposit_amount = amount
            await self._save(order)
            self._event(order, "captured")
            return order

    async def reverse(self, merchant: Merchant, order_id: str) -> Order:
        """``reverse.do``: cancels a pre-authorization or a same-day sale (a void)."""
        async with self.locks.hold(order_id):
            order = await self.find(merchant, order_id, locked=True)
            self._state(order, (OrderStatus.PREAUTHORIZED, OrderStatus.DEPOSITED), "a reversal")
            await self._followup(merchant, order, TxnType.VOID, 0, "reverse")
            order.status = OrderStatus.REVERSED
            order.deposit_amount = 0
            await self._save(order)
            self._event(order, "reversed")
            return order

    async def refund(self, merchant: Merchant, order_id: str, amount: int) -> Order:
        """``refund.do``: gives back part or all of what a paid order took."""
        async with self.locks.hold(order_id):
            order = await self.find(merchant, order_id, locked=True)
            self._state(order, (OrderStatus.DEPOSITED, OrderStatus.REFUNDED), "a refund")
            left = order.deposit_amount - order.refunded_amount
            if amount > left:
                raise invalid("amount", f"at most {left} is left to refund")
            # keyed by what was refunded before: a retry of this refund is the same request
            await self._followup(
                merchant, order, TxnType.REFUND, amount,
                f"refund:{order.refunded_amount}:{amount}",
                taken=order.deposit_amount, refunded=order.refunded_amount,
            )  # fmt: skip
            order.status = OrderStatus.REFUNDED
            order.refunded_amount += amount
            await self._save(order)
            self._event(order, "refunded")
            return order
