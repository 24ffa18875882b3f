"""Rate limits on one-time codes sent for merchants (StartVerification).

Each code is an SMS: without a cap, one merchant sent 16 codes to one phone in 70 ms. The
limits (``[verification]`` in the product configuration, ``switch.config.VerificationLimits``)
count codes per card, whichever merchants asked, and per merchant, whichever cards, within a
sliding window. The counts come from the store (``otp_sends``, one row per code, written in
the same commit as the code and its SMS), so they are the SMS really sent and survive a
restart; an idempotent replay sends nothing and adds no row. "Now" is the core's clock.

The check and the send must not interleave with another send (two calls could both see 2 of
3 and both send): ``SwitchCore.start_verification`` runs them under one lock.
"""

from __future__ import annotations

from switch.config import VerificationLimits
from switch.store.api import Store


class VerificationRateLimited(Exception):
    """Too many codes within the window; the message names the field and the limit."""


def _minutes(n: int) -> str:
    return "1 minute" if n == 1 else f"{n} minutes"


async def check_rate(
    store: Store, limits: VerificationLimits, card_id: int, merchant_id: str, now: float
) -> None:
    """Raise ``VerificationRateLimited`` if one more code would exceed a limit."""
    per_card, per_merchant = await store.otp_sends_since(
        card_id, merchant_id, now - limits.window_s
    )
    window = _minutes(limits.window_minutes)
    if per_card >= limits.codes_per_card:
        raise VerificationRateLimited(
            f"pan: {limits.codes_per_card} codes already sent to this card within {window} "
            "(verification.codes_per_card); try again later"
        )
    if per_merchant >= limits.codes_per_merchant:
        raise VerificationRateLimited(
            f"merchant: {limits.codes_per_merchant} codes already sent for this merchant within "
            f"{window} (verification.codes_per_merchant); try again later"
        )
