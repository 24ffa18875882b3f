"""The delivery worker: claims due notifications, POSTs them signed, marks the outcome.

Guarantees (README "Merchant notifications"):

* **Never lost.** The event row commits with the payment; it leaves ``pending`` only when the
  merchant answered 2xx (``delivered``) or retrying was given up (``failed``, kept for an
  operator: ``python -m switch.merchant_notify retry-failed``). A worker killed mid-batch
  leaves its rows leased; when the lease ends another worker (or the same, restarted) sends
  them.
* **At least once, with a dedupe key.** A crash between the merchant's 2xx and the mark sends
  the event again: same body, same ``event_id`` (``X-Switch-Event-Id``), a fresh signature.
* **Not twice at once.** Claims lease rows (``outbox.MerchantOutbox``), so several workers may
  run on one outbox; the lease is checked to outlast a whole batch's HTTP timeouts.
* **Bounded retries.** Any answer but 2xx (3xx included: redirects are not followed), a
  timeout or a refused connection schedules the next attempt after an exponential back-off
  with jitter (``DeliveryPolicy``); after ``max_attempts`` or once the event is older than
  ``max_age`` it is marked ``failed``. An event whose merchant has no enabled callback, or
  whose secret does not open, fails at once: retrying cannot help.

The outbox is blocking (SQLite) and runs in a one-thread executor; the POSTs run on the event
loop with aiohttp, ``concurrency`` at a time. The clock is injected (``clock``): claims, back-off,
the signature's ``t`` and the age limit all read it, so tests drive retries without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp

from switch.merchant_notify.events import json_body
from switch.merchant_notify.outbox import (
    Callback,
    ClaimedEvent,
    Delivered,
    Failed,
    MerchantOutbox,
)
from switch.merchant_notify.secrets_seal import CallbackSeal, SecretSealError
from switch.merchant_notify.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
USER_AGENT = "switch-merchant-notify/1"
MAX_ANSWER = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Timeouts and retries. Back-off after attempt n: ``base * 2**(n-1)`` capped at ``cap``,
    minus up to ``jitter`` of itself at random; defaults retry for about a day (10 s, 20 s,
    ... 1 h) and never past ``max_age`` (3 days)."""

    timeout: float = 10.0  # whole request: connect, send, answer
    base: float = 10.0
    cap: float = 3600.0
    jitter: float = 0.2
    max_attempts: int = 30
    max_age: float = 3 * 86400.0
    lease: float = 120.0  # how long a claim keeps other workers off a row

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.base <= 0 or self.cap < self.base:
            raise ValueError("timeout and base must be > 0, cap >= base")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")
        if self.max_attempts < 1 or self.max_age <= 0:
            raise ValueError("max_attempts must be >= 1 and max_age > 0")

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, 62))
        return ceiling * (1.0 - self.jitter * rng.random())


@dataclass(slots=True)
class NotifyStats:
    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    errors: list[str] = field(default_factory=list)


class MerchantNotifyWorker:
    """Drains a ``MerchantOutbox`` over HTTP; see the module docstring."""

    def __init__(
        self,
        outbox: MerchantOutbox,
        seal: CallbackSeal,
        *,
        policy: DeliveryPolicy | None = None,
        batch_size: int = 32,
        concurrency: int = 8,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be >= 1")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        self.policy = policy or DeliveryPolicy()
        rounds = math.ceil(batch_size / concurrency)
        if self.policy.lease <= rounds * self.policy.timeout:
            raise ValueError(
                f"lease ({self.policy.lease} s) must outlast a batch: {rounds} round(s) of "
                f"{self.policy.timeout} s timeouts"
            )
        self.outbox = outbox
        self.seal = seal
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats = NotifyStats()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="merchant-notify")
        self._session: aiohttp.ClientSession | None = None

    async def _blocking(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def run_once(self) -> int:
        """Claim one batch of due events, deliver them, mark them; returns how many."""
        token = secrets.token_hex(16)
        now = self.clock()
        events = await self._blocking(
            self.outbox.claim_due_events, now, self.batch_size, self.policy.lease, token
        )
        if not events:
            return 0
        callbacks = await self._blocking(self.outbox.callbacks, [e.merchant_id for e in events])
        gate = asyncio.Semaphore(self.concurrency)

        async def one(event: ClaimedEvent) -> Delivered | Failed:
            async with gate:
                return await self._deliver(event, callbacks.get(event.merchant_id))

        outcomes = await asyncio.gather(*(one(e) for e in events))
        delivered = [o for o in outcomes if isinstance(o, Delivered)]
        failed = [o for o in outcomes if isinstance(o, Failed)]
        # Only now: the merchants answered. A crash before this commit sends these again.
        await self._blocking(self.outbox.mark_events, token, self.clock(), delivered, failed)
        self._count(delivered, failed)
        return len(events)

    async def _deliver(self, event: ClaimedEvent, callback: Callback | None) -> Delivered | Failed:
        if callback is None or not callback.enabled:
            return self._failed(event, "no enabled callback for this merchant", 0, final=True)
        try:
            secret = self.seal.open(callback.merchant_id, callback.url, callback.secret_sealed)
        except SecretSealError as exc:
            return self._failed(event, str(exc), 0, final=True)
        try:  # the stored body, or its compact form made into the JSON (the same each time)
            body = json_body(event.body).encode("utf-8")
        except ValueError as exc:  # a damaged row: no attempt can send it
            return self._failed(event, f"stored body: {exc}", 0, final=True)
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event.event_id,
            EVENT_TYPE_HEADER: event.event_type,
            SIGNATURE_HEADER: signature_header(secret, int(self.clock()), body),
        }
        try:
            async with self._http().post(
                callback.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                # whatever the merchant answers, at most MAX_ANSWER bytes of it are read
                await resp.content.read(MAX_ANSWER)
        except TimeoutError:
            return self._failed(event, f"no answer within {self.policy.timeout:g} s", 0)
        except aiohttp.ClientError as exc:
            return self._failed(event, f"{type(exc).__name__}: {exc}"[:300], 0)
        except ValueError as exc:  # an URL aiohttp cannot use
            return self._failed(event, f"callback URL: {exc}"[:300], 0, final=True)
        if 200 <= status < 300:
            return Delivered(event.event_id, status)
        return self._failed(event, f"HTTP {status}", status)

    def _failed(
        self, event: ClaimedEvent, error: str, status: int, *, final: bool = False
    ) -> Failed:
        attempt = event.attempts + 1
        next_at = self.clock() + self.policy.delay(attempt, self.rng)
        give_up = (
            final
            or attempt >= self.policy.max_attempts
            or next_at - event.created_at > self.policy.max_age
        )
        return Failed(event.event_id, error, status, next_at, give_up)

    def _count(self, delivered: Sequence[Delivered], failed: Sequence[Failed]) -> None:
        self.stats.delivered += len(delivered)
        for f in failed:
            self.stats.failed_attempts += 1
            self.stats.errors = [*self.stats.errors[-19:], f.error]
            if f.give_up:
                self.stats.given_up += 1
                log.warning("merchant event %s failed for good: %s", f.event_id, f.error)
            else:
                log.info("merchant event %s attempt failed (%s); will retry", f.event_id, f.error)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set: a full batch is followed at once by the next, else
        wait ``poll_interval``; while the outbox itself fails, back off."""
        failures = 0
        while not stop.is_set():
            try:
                handled = await self.run_once()
                failures = 0
            except Exception:
                failures += 1
                log.exception("merchant event outbox unavailable (%d in a row)", failures)
                handled = 0
            if handled >= self.batch_size and not failures:
                continue
            pause = self.poll_interval
            if failures:
                pause = max(pause, min(60.0, self.poll_interval * 2.0**failures))
            try:
                await asyncio.wait_for(stop.wait(), timeout=pause)
            except TimeoutError:
                pass

    async def close(self) -> None:
        """Close the HTTP session and the executor (after ``run`` returned)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._executor.shutdown(wait=True)
