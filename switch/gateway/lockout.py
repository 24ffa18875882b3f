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

**The counters live in the store** (``gateway_login_failures``, ``gateway_login_trust``,
migration 0018), reached through the gateway's own store connection (``LoginDb``: the
``OrderStore``'s, SQLite or PostgreSQL): with several nodes every node counts into the same
rows, so a second node gives an attacker no second set of tries, and a restart forgets
nothing. A failure is one statement per counter, an upsert that resets an expired window,
adds one and locks on reaching the limit, all computed by the database on the row it holds:
two nodes failing at the same instant count two, never one. A check is one read. Trusted
logins are written at most once a minute per (merchant, address) (``TRUST_REFRESH_S``): a
stamp a minute old changes nothing against a day of trust, and a merchant calling all day
does not write a row per call. Rows whose window, lock and trust are over are deleted by the
node that notices, at most once a minute (``PRUNE_EVERY_S``).

Times come from the core's clock (``SwitchCore.now``), so tests move them; nodes' clocks must
agree to well within the window (NTP). Every failure and every lock is logged
(``switch.gateway.auth``) with the id and the address, never the password.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Final, Protocol

log = logging.getLogger("switch.gateway.auth")

MAX_NAME = 64  # a userName longer than any merchant id is counted by its first 64 characters
TRUST_REFRESH_S: Final = 60.0
PRUNE_EVERY_S: Final = 60.0

ID: Final = "id"
ADDRESS: Final = "address"


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    max_failures_merchant: int = 10
    max_failures_address: int = 20
    window_s: float = 900.0
    lockout_s: float = 900.0
    trust_s: float = 86_400.0
    #: (merchant, address) pairs whose last trust stamp this process remembers (to skip writes)
    max_entries: int = 100_000


class LoginDb(Protocol):
    """One statement on the gateway's store connection, ``?`` placeholders; its rows."""

    async def execute(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]: ...


class Locked(Exception):
    """Calls with this id or from this address are refused until ``until``."""

    def __init__(self, until: float, now: float) -> None:
        super().__init__(until)
        self.until = until
        self.minutes = max(1, math.ceil((until - now) / 60))


_LOCKS = (
    "SELECT scope, locked_until FROM gateway_login_failures WHERE locked_until > ? "
    "AND ((scope = 'address' AND subject = ?) OR (scope = 'id' AND subject = ?))"
)
_TRUSTED = "SELECT last_at FROM gateway_login_trust WHERE merchant_id = ? AND address = ?"
_TRUST = (
    "INSERT INTO gateway_login_trust (merchant_id, address, last_at) VALUES (?, ?, ?) "
    "ON CONFLICT (merchant_id, address) DO UPDATE SET last_at = excluded.last_at"
)
# The failures counted by this one: 1 once the window is over, else one more.
_N = (
    "(CASE WHEN ? - gateway_login_failures.first_at >= ? THEN 1 "
    "ELSE gateway_login_failures.failures + 1 END)"
)
# only the constant _N is spliced in, never input
_FAIL = (
    "INSERT INTO gateway_login_failures (scope, subject, first_at, failures, locked_until) "  # noqa: S608
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, subject) DO UPDATE SET "
    f"failures = CASE WHEN {_N} >= ? THEN 0 ELSE {_N} END, "
    f"first_at = CASE WHEN {_N} >= ? OR ? - gateway_login_failures.first_at >= ? THEN ? "
    "ELSE gateway_login_failures.first_at END, "
    f"locked_until = CASE WHEN {_N} >= ? THEN ? ELSE gateway_login_failures.locked_until END "
    "RETURNING failures, locked_until"
)
_PRUNE_FAILURES = "DELETE FROM gateway_login_failures WHERE locked_until <= ? AND first_at <= ?"
_PRUNE_TRUST = "DELETE FROM gateway_login_trust WHERE last_at <= ?"


class LoginGuard:
    """``check`` before a credential check, then ``failed`` or ``succeeded`` after it; the
    counters in the store behind ``db`` (see the module docstring). Store errors propagate
    (``StoreError``): the caller answers a system error, it does not let a call in."""

    def __init__(self, db: LoginDb, policy: LockoutPolicy | None = None) -> None:
        self.db = db
        self.policy = policy or LockoutPolicy()
        self._stamped: dict[tuple[str, str], float] = {}  # trust stamps this process wrote
        self._pruned_at = -math.inf

    async def check(self, user_name: str, address: str, now: float) -> None:
        """Raises ``Locked`` if the address, or the id (from an address it is not trusted
        from), is locked."""
        name = user_name[:MAX_NAME]
        until = 0.0
        for scope, locked_until in await self.db.execute(_LOCKS, (now, address, name)):
            if scope == ADDRESS or not await self._trusted_from(name, address, now):
                until = max(until, float(locked_until))
        if until:
            raise Locked(until, now)

    async def failed(self, user_name: str, address: str, now: float) -> None:
        name = user_name[:MAX_NAME]
        p = self.policy
        by_name, name_locked = await self._fail(ID, name, p.max_failures_merchant, now)
        by_address, address_locked = await self._fail(ADDRESS, address, p.max_failures_address, now)
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
        await self._prune(now)

    async def succeeded(self, merchant_id: str, address: str, now: float) -> None:
        key = (merchant_id, address)
        stamped = self._stamped.pop(key, None)  # re-inserted last: oldest evicted first
        if stamped is None or now - stamped >= TRUST_REFRESH_S or now < stamped:
            await self.db.execute(_TRUST, (merchant_id, address, now))
            stamped = now
        if len(self._stamped) >= self.policy.max_entries:
            del self._stamped[next(iter(self._stamped))]
        self._stamped[key] = stamped

    async def _fail(self, scope: str, subject: str, limit: int, now: float) -> tuple[int, bool]:
        """Counts a failure in the store; (failures in the window, True if that locked)."""
        p = self.policy
        lock_at = now + p.lockout_s
        first = (0, lock_at) if limit <= 1 else (1, 0.0)  # a new row: its first failure
        n = (now, p.window_s)
        args = (
            scope, subject, now, *first,
            *n, limit, *n,  # failures
            *n, limit, now, p.window_s, now,  # first_at
            *n, limit, lock_at,  # locked_until
        )  # fmt: skip
        [(failures, locked_until)] = await self.db.execute(_FAIL, args)
        if int(failures) == 0 and float(locked_until) == lock_at:
            return limit, True
        return int(failures), False

    async def _trusted_from(self, name: str, address: str, now: float) -> bool:
        rows = await self.db.execute(_TRUSTED, (name, address))
        return bool(rows) and now - float(rows[0][0]) < self.policy.trust_s

    async def _prune(self, now: float) -> None:
        """Deletes counters whose window and lock are over, and trust past ``trust_s``."""
        if now - self._pruned_at < PRUNE_EVERY_S and now >= self._pruned_at:
            return
        self._pruned_at = now
        p = self.policy
        await self.db.execute(_PRUNE_FAILURES, (now, now - p.window_s))
        await self.db.execute(_PRUNE_TRUST, (now - p.trust_s,))
