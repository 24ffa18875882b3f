"""Failed PIN verifications per key and account, and the alarm past a threshold.

Why: every PIN-recovery attack through an HSM (the decimalisation-table attack and its
variants with strong but modified tables, offset probing, exhaustive PIN trial) is a burst of
failed verifications for one account under one PVK. The switch's own PIN-tries counter only
sees its own traffic; the HSM sees every host. So each failed DC/EC/DA/EA (error 01) is
counted per (PVK check value, account) in a sliding window -- its audit record carries the
account's keyed hash and that count -- and past ``limit`` failures in
``window`` seconds the HSM logs a WARNING on ``switch.hsm.alarm`` and writes an ``ALARM``
record to the audit trail (payShield has the same idea as its fraud-detection limits).

The account is never written in clear: it is named by a keyed hash (HMAC-SHA256 of the 12
account digits payShield commands carry, under a key derived from the LMK, first 16 hex), so
alarms for the same card correlate across restarts while the log reveals nothing to someone
without the LMK. One alarm per key/account and window: an attack of 10,000 calls is one line,
not 10,000.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Final

from switch.hsm.audit import Audit
from switch.hsm.errors import VERIFICATION_FAILURE
from switch.hsm.lmk import Lmk

log = logging.getLogger("switch.hsm.alarm")

DEFAULT_LIMIT: Final = 10
DEFAULT_WINDOW_S: Final = 3600.0
#: at most this many (key, account) pairs are tracked; the stalest are dropped first
MAX_TRACKED: Final = 100_000


def account_digits(pan: str) -> str:
    """The 12 rightmost PAN digits without the check digit: what DA/DC carry on the wire, so
    the in-process and TCP paths name the same account the same way."""
    return pan[:-1][-12:]


class PinFailureWatch:
    """Counts failed PIN verifications and raises the alarm. Not thread-safe (the HSM core
    runs on one event loop)."""

    __slots__ = ("_alarmed", "_failures", "_key", "audit", "clock", "limit", "window")

    def __init__(
        self,
        lmk: Lmk,
        audit: Audit,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("PIN failure alarm: limit >= 1 and window > 0 seconds")
        self.audit = audit
        self.limit = limit
        self.window = window
        self.clock = clock
        self._key = hmac.new(lmk.keyblock, b"switch.hsm.pinwatch account", "sha256").digest()
        self._failures: dict[tuple[str, str], collections.deque[float]] = {}
        self._alarmed: dict[tuple[str, str], float] = {}

    def account_id(self, pan: str) -> str:
        """The keyed hash that names an account in alarms (16 hex)."""
        digest = hmac.new(self._key, account_digits(pan).encode("ascii"), hashlib.sha256)
        return digest.hexdigest()[:16].upper()

    def failed(self, command: str, pvk_check_value: str, pan: str, *kcvs: str) -> bool:
        """Count one failed verification and write its audit record, with the account's
        keyed hash and the failures counted in the window (so the trail itself counts per
        key and account); past the limit raise the alarm. Returns whether it did.
        ``kcvs``: the check values the record carries (PIN key, PVK)."""
        now = self.clock()
        key = (pvk_check_value, self.account_id(pan))
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= MAX_TRACKED:
                self._prune(now)
            times = self._failures[key] = collections.deque()
        times.append(now)
        start = now - self.window
        while times and times[0] <= start:
            times.popleft()
        note = f"account=#{key[1]} failures={len(times)}"
        self.audit.record(command, VERIFICATION_FAILURE, *kcvs, note=note)
        if len(times) <= self.limit:
            return False
        last = self._alarmed.get(key)
        if last is not None and now - last < self.window:
            return False
        self._alarmed[key] = now
        text = (
            f"cmd={command} pin-failures={len(times)} window={self.window:g}s "
            f"limit={self.limit} pvk-kcv={pvk_check_value} account=#{key[1]}"
        )
        log.warning("PIN verification failures past the limit: %s", text)
        self.audit.alarm(text)
        return True

    def _prune(self, now: float) -> None:
        start = now - self.window
        stale = [k for k, t in self._failures.items() if not t or t[-1] <= start]
        for k in stale:
            del self._failures[k]
            self._alarmed.pop(k, None)
        while len(self._failures) >= MAX_TRACKED:  # all recent: drop the oldest entries
            k = next(iter(self._failures))
            del self._failures[k]
            self._alarmed.pop(k, None)
