"""A limit on wrong ``userName``/``password`` pairs of the REST API (brute force).

A merchant's API key is its only credential on SATIM's API, sent on every call, so guessing
it must be slow: failures are counted per ``userName`` (whatever it names: an unknown merchant
id is counted and locked exactly as a real one, so the answers never tell which ids exist)
and per client address. Past ``max_failures_*`` failures within ``window_s`` the id, or the
address, is locked for ``lockout_s``: every call with it is refused (ErrorCode 5) *before*
the password is checked, so a right guess during the lock is refused too and tells nothing.

Locking a merchant id lets anyone lock that merchant's API out; to blunt that, an address
the merchant logged in from successfully within ``trust_s`` is not held by the merchant id's
lock (only by its own address lock). The address is the peer's, or, for a peer named by
``--gateway-trusted-proxy``, the last ``X-Forwarded-For`` entry (``rest.client_address``).

Times come from the core's clock (``SwitchCore.now``), so tests move them. State is in this
process's memory, bounded (``max_entries`` per table): a restart forgets it, and a flood of
made-up ids evicts the oldest counters first (locks in force are kept when anything else can
go). Every failure and every lock is logged (``switch.gateway.auth``) with the id and the
address, never the password.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

log = logging.getLogger("switch.gateway.auth")

MAX_NAME = 64  # a userName longer than any merchant id is counted by its first 64 characters


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    max_failures_merchant: int = 10
    max_failures_address: int = 20
    window_s: float = 900.0
    lockout_s: float = 900.0
    trust_s: float = 86_400.0
    max_entries: int = 100_000


@dataclass(slots=True)
class _Count:
    first_at: float
    failures: int = 0
    locked_until: float = 0.0


class Locked(Exception):
    """Calls with this id or from this address are refused until ``until``."""

    def __init__(self, until: float, now: float) -> None:
        super().__init__(until)
        self.until = until
        self.minutes = max(1, math.ceil((until - now) / 60))


class _Table:
    """Failure counters by key, bounded in size."""

    def __init__(self, limit: int, policy: LockoutPolicy) -> None:
        self.limit = limit
        self.policy = policy
        self.counts: dict[str, _Count] = {}

    def locked_until(self, key: str, now: float) -> float:
        c = self.counts.get(key)
        return c.locked_until if c is not None and c.locked_until > now else 0.0

    def fail(self, key: str, now: float) -> tuple[int, bool]:
        """Counts a failure; (failures in the window, True if that locked ``key``)."""
        c = self.counts.get(key)
        if c is None or now - c.first_at >= self.policy.window_s:
            self._make_room(now)
            c = self.counts[key] = _Count(now, locked_until=c.locked_until if c else 0.0)
        c.failures += 1
        if c.failures < self.limit:
            return c.failures, False
        failures = c.failures
        c.failures, c.first_at = 0, now
        c.locked_until = now + self.policy.lockout_s
        return failures, True

    def _make_room(self, now: float) -> None:
        if len(self.counts) < self.policy.max_entries:
            return
        window = self.policy.window_s
        over = [
            k for k, c in self.counts.items() if max(c.locked_until, c.first_at + window) <= now
        ]
        for key in over:
            del self.counts[key]
        excess = len(self.counts) - self.policy.max_entries + 1
        if excess <= 0:
            return
        # a flood: the oldest counters go, those of locks in force last
        free = [k for k, c in self.counts.items() if c.locked_until <= now][:excess]
        for key in free:
            del self.counts[key]
        for key in list(self.counts)[: excess - len(free)]:
            del self.counts[key]


class LoginGuard:
    """``check`` before a credential check, then ``failed`` or ``succeeded`` after it."""

    def __init__(self, policy: LockoutPolicy | None = None) -> None:
        self.policy = policy or LockoutPolicy()
        self._merchants = _Table(self.policy.max_failures_merchant, self.policy)
        self._addresses = _Table(self.policy.max_failures_address, self.policy)
        self._trusted: dict[tuple[str, str], float] = {}  # (merchant id, address) -> last login

    def check(self, user_name: str, address: str, now: float) -> None:
        """Raises ``Locked`` if the address, or the id (from an address it is not trusted
        from), is locked."""
        until = self._addresses.locked_until(address, now)
        name = user_name[:MAX_NAME]
        if not self._trusted_from(name, address, now):
            until = max(until, self._merchants.locked_until(name, now))
        if until:
            raise Locked(until, now)

    def failed(self, user_name: str, address: str, now: float) -> None:
        name = user_name[:MAX_NAME]
        by_name, name_locked = self._merchants.fail(name, now)
        by_address, address_locked = self._addresses.fail(address, now)
        p = self.policy
        log.warning(
            "gateway auth: wrong userName/password for userName %r from %s "
            "(%d/%d for the id, %d/%d for the address in %d s)",
            name, address, by_name, p.max_failures_merchant, by_address,
            p.max_failures_address, p.window_s,
        )  # fmt: skip
        if name_locked:
            log.warning(
                "gateway auth: userName %r locked for %d s after %d failures (last from %s)",
                name, p.lockout_s, by_name, address,
            )  # fmt: skip
        if address_locked:
            log.warning(
                "gateway auth: address %s locked for %d s after %d failures",
                address, p.lockout_s, by_address,
            )  # fmt: skip

    def succeeded(self, merchant_id: str, address: str, now: float) -> None:
        key = (merchant_id, address)
        self._trusted.pop(key, None)  # re-inserted last: the oldest logins are evicted first
        if len(self._trusted) >= self.policy.max_entries:
            del self._trusted[next(iter(self._trusted))]
        self._trusted[key] = now

    def _trusted_from(self, name: str, address: str, now: float) -> bool:
        at = self._trusted.get((name, address))
        return at is not None and now - at < self.policy.trust_s
