"""The outbox worker: claims due alerts, sends them, marks them; retries with back-off.

Delivery guarantees (docs/architecture.md §4):

* **Never lost.** The alert row is written in the same transaction as its posting; the worker
  marks it ``sent`` only *after* the transport accepted the SMS. A crash anywhere before that
  leaves the row ``pending`` and a later run sends it.
* **Not sent twice in normal operation.** Each claimed alert is sent once and then marked;
  a failed send is marked failed with its next attempt time, so it is not claimed again
  before its back-off expires. Across a crash *between* the transport's acceptance and the
  ``mark_alerts_sent`` commit the SMS is sent again (at-least-once is the only honest promise
  without a two-phase commit with the SMS centre). To let the far side drop such a repeat,
  every send carries the outbox row id as its ``reference`` ("alert-<id>"): the SMPP
  transport puts it in ``user_message_reference`` and the concatenation reference, the
  console transport writes it on the line.
* **A dead link is not a bad message.** A ``LinkDown`` (connect/bind failed, connection lost)
  stops the batch at that alert and the whole worker backs off; a refusal of one message
  (``TransportError``) only delays that alert and the batch goes on.
* **Bounded retries.** A ``TransportError`` (or any unexpected exception from the transport,
  logged as a bug) schedules the next attempt after an exponential back-off with jitter,
  capped; after ``max_attempts`` the alert is *parked* for an operator instead of retried
  forever.

* **Secrets opened only to be sent.** A text whose one-time code is sealed
  (``switch.notify.sealing``) is opened with ``seal`` right before ``transport.send``, and
  only for a transport that delivers it (``shows_secrets``); a console or file transport gets
  the code masked. A text that does not open (another key, an edited row) is parked at once:
  retrying cannot help. Nothing here logs a text.

Blocking work (the SQLite outbox, smpplib's socket calls) runs in a one-thread executor, so
the event loop serving authorizations never waits on an SMS centre.

How many workers: on **SQLite**, one per outbox -- its ``claim_due_alerts`` reads due rows
without leasing them, so two workers would both send the rows they see
(``switch.notify.worker_lock`` enforces it for the ways the project runs a worker). On
**PostgreSQL** a claim leases its rows (``PostgresOutbox``, ``CLAIM_LEASE_S``), so any number
of workers, one per node, deliver side by side, none getting another's rows. A batch must end
inside its lease, or another worker could claim a row this one is still sending: so a batch
starts no send more than ``batch_time_limit`` (half the lease) after its claim; the rows it
did not reach are given back by the next claim.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from switch.notify.errors import LinkDown
from switch.notify.outbox import CLAIM_LEASE_S, Alert, AlertOutbox
from switch.notify.sealing import AlertSeal, SealError, is_sealed, masked
from switch.notify.transport import SmsTransport, TransportError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off: ``base * 2**(attempt-1)`` capped at ``cap``, minus up to
    ``jitter`` of itself at random (so a burst of failures does not retry in lockstep)."""

    base: float = 5.0
    cap: float = 900.0
    jitter: float = 0.5
    max_attempts: int = 12  # at most ~1.4 h of retries (5 s ... 15 min) before parking

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("base must be > 0 and cap >= base")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, 62))
        return ceiling * (1.0 - self.jitter * rng.random())


@dataclass(slots=True)
class _BatchOutcome:
    attempted: int = 0
    sent: int = 0
    reached: bool = False  # the SMS centre answered at least once (accepted or refused)
    link_down: bool = False
    failures: list[tuple[int, int, str, bool]] = field(default_factory=list)


@dataclass(slots=True)
class WorkerStats:
    sent: int = 0
    failed: int = 0
    parked: int = 0
    errors: list[str] = field(default_factory=list)


def reference_for(alert_id: int) -> str:
    """The dedupe key a transport receives for an outbox row."""
    return f"alert-{alert_id}"


class AlertWorker:
    """Drains an ``AlertOutbox`` through an ``SmsTransport``; see the module docstring."""

    def __init__(
        self,
        outbox: AlertOutbox,
        transport: SmsTransport,
        *,
        policy: RetryPolicy | None = None,
        batch_size: int = 50,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        seal: AlertSeal | None = None,
        batch_time_limit: float = CLAIM_LEASE_S / 2,
    ) -> None:
        """``seal`` opens sealed one-time codes (``AlertSeal.for_state_dir``); without it a
        sealed alert can only go to a transport that masks codes. ``batch_time_limit``:
        seconds after its claim (on ``clock``) past which a batch starts no further send."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not batch_time_limit > 0:
            raise ValueError("batch_time_limit must be > 0")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        self.outbox = outbox
        self.transport = transport
        self.policy = policy or RetryPolicy()
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.clock = clock
        self.rng = rng or random.Random()
        self.seal = seal
        self.batch_time_limit = batch_time_limit
        self.stats = WorkerStats()
        self.link_failures = 0  # consecutive LinkDown failures; 0 once anything gets through
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sms-worker")

    async def _blocking(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def run_once(self) -> int:
        """Process one batch of due alerts; returns how many were attempted.

        The batch is sent *and* marked in one executor call, and every alert the SMS centre
        accepted is marked ``sent`` in one transaction after the batch: one thread hop and one
        commit per batch instead of two hops and one fsync per SMS (the commit per SMS was the
        worker's whole cost under load). The price: a crash between the sends and that commit
        resends up to ``batch_size`` alerts, each with its same ``reference``.

        When the link is down (``LinkDown``) the batch stops at the alert that found out: the
        others stay due, untouched, and ``link_failures`` tells ``run`` to back off.
        """
        claimed_at = self.clock()
        alerts = await self._blocking(self.outbox.claim_due_alerts, claimed_at, self.batch_size)
        if not alerts:
            return 0
        outcome = await self._blocking(self._send_batch, alerts, claimed_at)
        self.stats.sent += outcome.sent
        for alert_id, attempt, error, give_up in outcome.failures:
            self._count_failure(alert_id, attempt, error, give_up)
        if outcome.reached:
            self.link_failures = 0  # the SMS centre answered: the link itself is fine
        if outcome.link_down:
            self.link_failures += 1
        return outcome.attempted

    def _send_batch(self, alerts: Sequence[Alert], claimed_at: float) -> _BatchOutcome:
        """In the worker thread: send ``alerts`` in order, then mark them (see run_once); no
        send starts once ``batch_time_limit`` has passed since the claim (its lease)."""
        outcome = _BatchOutcome()
        sent: list[tuple[int, str]] = []
        for alert in alerts:
            if self.clock() - claimed_at >= self.batch_time_limit:
                log.warning(
                    "SMS batch stopped after %d of %d alerts: %.0f s since its claim",
                    outcome.attempted, len(alerts), self.clock() - claimed_at,
                )  # fmt: skip
                break
            outcome.attempted += 1
            ref = reference_for(alert.alert_id)
            try:
                text = self._text_for_transport(alert)
            except SealError as exc:  # logged as parked by run_once
                outcome.failures.append((alert.alert_id, alert.attempts + 1, str(exc), True))
                continue
            try:
                sent.append((alert.alert_id, self.transport.send(alert.msisdn, text, ref)))
                outcome.reached = True
                continue
            except LinkDown as exc:
                outcome.link_down = True
                error = str(exc) or type(exc).__name__
            except TransportError as exc:
                outcome.reached = True
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a transport bug must not stop the worker or lose the alert
                log.exception("SMS transport raised unexpectedly for %s", ref)
                error = f"{type(exc).__name__}: {exc}"
            outcome.failures.append(self._fail(alert, error))
            if outcome.link_down:
                break
        # Only now: the SMS centre accepted these. A crash before this commit resends them.
        self.outbox.mark_alerts_sent(sent, self.clock())
        outcome.sent = len(sent)
        for alert_id, attempt, error, give_up in outcome.failures:
            next_at = self.clock() + self.policy.delay(attempt, self.rng)
            self.outbox.mark_alert_failed(alert_id, error, next_at, give_up)
        return outcome

    def _text_for_transport(self, alert: Alert) -> str:
        """The text as this transport may have it: a sealed code opened only for a transport
        that delivers it to the handset, masked for any other."""
        if not is_sealed(alert.text) or not self.transport.shows_secrets:
            return masked(alert.text)
        if self.seal is None:
            raise SealError("no key to open a sealed alert (AlertWorker(seal=...))")
        return self.seal.open(alert.msisdn, alert.text).reveal()

    def _fail(self, alert: Alert, error: str) -> tuple[int, int, str, bool]:
        attempt = alert.attempts + 1
        return alert.alert_id, attempt, error, attempt >= self.policy.max_attempts

    def _count_failure(self, alert_id: int, attempt: int, error: str, give_up: bool) -> None:
        self.stats.failed += 1
        self.stats.errors.append(error)
        del self.stats.errors[:-20]
        if give_up:
            self.stats.parked += 1
            log.warning("alert %s parked after %d attempts: %s", alert_id, attempt, error)
        else:
            log.info("alert %s attempt %d failed (%s); will retry", alert_id, attempt, error)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set: drain due alerts, then wait ``poll_interval`` (or, while
        the link or the outbox is down, the policy's back-off for the number of consecutive
        failures)."""
        outbox_failures = 0
        while not stop.is_set():
            try:
                handled = await self.run_once()
                outbox_failures = 0
            except Exception:  # the outbox is unavailable: keep the worker alive, try later
                outbox_failures += 1
                log.exception("alert outbox unavailable (%d in a row)", outbox_failures)
                handled = 0
            failures = max(self.link_failures, outbox_failures)
            if failures:
                pause = max(self.poll_interval, self.policy.delay(failures, self.rng))
            elif handled < self.batch_size:
                pause = self.poll_interval
            else:
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=pause)
            except TimeoutError:
                pass

    def close(self) -> None:
        """Close the transport and the executor (after ``run`` returned)."""
        try:
            self._executor.submit(self.transport.close).result(timeout=30)
        finally:
            self._executor.shutdown(wait=True)
