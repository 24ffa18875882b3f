"""StartVerification's idempotency: a merchant's retry never sends the cardholder a 2nd code.

A verification sends an SMS outside the authorization journal, so ``core.authorize`` cannot
dedup it. Its key is kept like an authorization's, in the store's idempotency table, under
``otp:<merchant>:<key>``: ``SwitchCore.start_otp`` writes that row in the same commit as the
code and its SMS, so "code sent" and "key remembered" are one atomic fact that survives a
restart. Calls with the same key while the first is still running join it in memory; the
first one runs as its own task, so a caller cancelled by its deadline does not cancel the
SMS half-way and leave a later retry to send a second code.
"""

from __future__ import annotations

import asyncio
import hmac

import grpc

from switch.api.mapping import ApiError
from switch.core.domain import Merchant
from switch.core.pipeline import IDEMPOTENCY_WINDOW_S
from switch.core.service import OtpChallenge, SwitchCore

KEY_PREFIX = "otp:"


def store_key(merchant_id: str, key: str) -> str:
    """The idempotency table's key: its own prefix, apart from authorizations' ``api:``."""
    return f"{KEY_PREFIX}{merchant_id}:{key}"


def _same_request(first: str, fingerprint: str) -> None:
    if not hmac.compare_digest(first, fingerprint):
        raise ApiError(
            grpc.StatusCode.ALREADY_EXISTS,
            "idempotency_key: already used for a different request",
        )


class VerificationStarts:
    """Starts verifications once per (merchant, idempotency key), restarts included."""

    def __init__(self, core: SwitchCore) -> None:
        self.core = core
        # key -> (fingerprint, the first call's task), only while that call runs: once it is
        # done its answer is durable in the store, and found there
        self._running: dict[str, tuple[str, asyncio.Task[OtpChallenge]]] = {}

    def running(self) -> int:
        """Verifications in flight (for tests: nothing is kept once they are done)."""
        return len(self._running)

    async def start(
        self, merchant: Merchant, key: str, pan: str, amount: int, currency: int
    ) -> OtpChallenge:
        """The first answer for this key, sending the code only if no call did before.

        Raises ``ApiError`` (ALREADY_EXISTS) for the key of a different request, and whatever
        ``core.start_verification`` raises when the code could not be sent (a rate limit, an
        unknown card...: then nothing is remembered and a retry may try again). A replay
        sends nothing, so it never counts against the rate limits.
        """
        skey = store_key(merchant.merchant_id, key)
        fingerprint = self.core.otp_fingerprint(pan, amount, currency)
        running = self._running.get(skey)
        if running is None:
            row = await self.core.store.idempotent(skey)
            # a key older than the window is a new request, as for authorizations
            if row is not None and row.created_at >= self.core.now() - IDEMPOTENCY_WINDOW_S:
                _same_request(row.fingerprint, fingerprint)
                return OtpChallenge.from_json(row.result)
            running = self._running.get(skey)  # another call may have started meanwhile
            if running is None:
                running = (fingerprint, self._launch(skey, fingerprint, merchant, pan, amount))
        _same_request(running[0], fingerprint)
        return await asyncio.shield(running[1])

    def _launch(
        self, skey: str, fingerprint: str, merchant: Merchant, pan: str, amount: int
    ) -> asyncio.Task[OtpChallenge]:
        task = asyncio.create_task(
            self.core.start_verification(pan, merchant, amount, idempotency=(skey, fingerprint))
        )
        self._running[skey] = (fingerprint, task)

        def done(t: asyncio.Task[OtpChallenge]) -> None:
            if self._running.get(skey, (None, None))[1] is t:
                del self._running[skey]
            if not t.cancelled():
                t.exception()  # retrieved: the callers that still wait get it themselves

        task.add_done_callback(done)
        return task
