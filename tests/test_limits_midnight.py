"""The business day change at local midnight, on a real core (demo store, in-process HSM)
whose clock the test sets: which day a transaction counts against, and the new envelope.

The rule (switch/core/pipeline.py, ``_decide``): a transaction counts against the business
day on which its limits are checked and reserved. That is the day it arrived, unless it was
still in flight (waiting for the HSM) when another request opened the next day; then it
counts against the new day and its journal row carries that day, so its reversal releases
the new day's envelope and a restart rebuilds exactly the counters the running core had.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from switch.core import testing as t
from switch.core.business_day import day_number
from switch.core.categories import LimitCategory
from switch.core.model import ResponseCode
from switch.core.service import SwitchCore
from switch.hsm.client import HsmClient
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk

RC = ResponseCode
ALGIERS = ZoneInfo("Africa/Algiers")
# One second before local midnight, and a few seconds after it (a date in the past on purpose:
# the core reads no other clock than the one the test gives it).
EVE = dt.datetime(2025, 3, 31, 23, 59, 59, tzinfo=ALGIERS).timestamp()
AFTER = EVE + 6
D = day_number(EVE)
ATM_CASH = int(LimitCategory.ATM_CASH)
CARD = t.RICH_CARD  # 1,000,000 DZD: the daily ATM limit, not the balance, is what binds
OTHER = t.CARD
DAILY = 5_000_000  # 50,000 DZD a day at ATMs (switch/core/products.toml)


class GatedHsm:
    """The real in-process HSM, except that PIN verification waits at a gate the test opens:
    a request stays in flight across midnight exactly as long as the test wants."""

    def __init__(self, inner: HsmClient) -> None:
        self._inner = inner
        self.armed = False
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _held(self, name: str, *args: Any, **kw: Any) -> Any:
        if self.armed:
            self.armed = False
            self.reached.set()
            await self.gate.wait()
        return await getattr(self._inner, name)(*args, **kw)

    async def verify_pin_pvv(self, *args: Any, **kw: Any) -> Any:
        return await self._held("verify_pin_pvv", *args, **kw)

    async def verify_pin_ibm(self, *args: Any, **kw: Any) -> Any:
        return await self._held("verify_pin_ibm", *args, **kw)


async def _open(state: Path, clock: t.ManualClock, hsm: HsmClient | None = None) -> SwitchCore:
    return await SwitchCore.open(state, durable=False, clock=clock, hsm=hsm)


def _usage(core: SwitchCore, card_id: int, day: int) -> tuple[int, int]:
    return tuple(core._p.limits.usage(card_id, ATM_CASH, day))  # type: ignore[return-value]


def _stored_usage(core: SwitchCore, card_id: int, day: int) -> tuple[int, int]:
    """What a restart rebuilds the counters from: the journal of that business day."""
    rows = [r for r in core.store.limit_usage(day) if r[0] == card_id]
    return sum(r[2] for r in rows), sum(r[3] for r in rows)


def test_the_next_days_envelope_starts_at_zero(state: Path) -> None:
    async def body() -> None:
        clock = t.ManualClock(EVE - 3600)
        core = await _open(state, clock)
        try:
            r = await t.authorize_expecting(core, t.withdrawal(CARD.pan, DAILY, CARD.pin))
            card_id = (await core.store.journal_entry(r.transaction_id or "")).card_id  # type: ignore[union-attr]
            assert card_id is not None
            clock.now = EVE  # the last second of the day: the envelope is spent
            await t.authorize_expecting(
                core, t.withdrawal(CARD.pan, 100_000, CARD.pin), RC.EXCEEDS_AMOUNT_LIMIT
            )
            clock.now = AFTER  # a new business day: a whole new 50,000 DZD
            await t.authorize_expecting(core, t.withdrawal(CARD.pan, DAILY, CARD.pin))
            assert _usage(core, card_id, D + 1) == (DAILY, 1)
            assert _usage(core, card_id, D) == (0, 0)  # yesterday is no longer counted
            await t.authorize_expecting(
                core, t.withdrawal(CARD.pan, 100_000, CARD.pin), RC.EXCEEDS_AMOUNT_LIMIT
            )
            assert _stored_usage(core, card_id, D) == (DAILY, 1)
            assert _stored_usage(core, card_id, D + 1) == (DAILY, 1)
        finally:
            await core.close()

    asyncio.run(asyncio.wait_for(body(), 30))


def test_a_withdrawal_in_flight_across_midnight_counts_on_the_day_it_is_checked(
    state: Path,
) -> None:
    async def body() -> None:
        clock = t.ManualClock(EVE - 3600)
        lmk = Lmk.load_or_create(state / "lmk.json")
        hsm = GatedHsm(InProcessHsm(lmk))
        core = await _open(state, clock, hsm)
        try:
            first = await t.authorize_expecting(core, t.withdrawal(CARD.pan, DAILY, CARD.pin))
            entry = await core.store.journal_entry(first.transaction_id or "")
            assert entry is not None and entry.card_id is not None and entry.business_day == D
            card_id = entry.card_id

            # 23:59:59: a 1,000 DZD withdrawal arrives (its day's envelope is already full)
            # and waits for the HSM...
            clock.now = EVE
            hsm.armed = True
            late_req = t.withdrawal(CARD.pan, 100_000, CARD.pin)
            late = asyncio.create_task(core.authorize(late_req))
            await hsm.reached.wait()
            # ...while after midnight another card's withdrawal opens the new business day.
            clock.now = AFTER
            await t.authorize_expecting(core, t.withdrawal(OTHER.pan, 100_000, OTHER.pin))
            hsm.gate.set()
            result = await late
            # It is checked against the day it reaches the limits on, the new one.
            assert result.response_code is RC.APPROVED, result
            late_entry = await core.store.journal_entry(result.transaction_id or "")
            assert late_entry is not None and late_entry.business_day == D + 1
            assert _usage(core, card_id, D + 1) == (100_000, 1)
            assert _stored_usage(core, card_id, D + 1) == (100_000, 1)

            # Its reversal gives that day's envelope back, in memory and in the store alike.
            await t.authorize_expecting(core, t.reversal_of(late_req))
            assert _usage(core, card_id, D + 1) == (0, 0)
            assert _stored_usage(core, card_id, D + 1) == (0, 0)
            # And the new day still has its whole envelope.
            await t.authorize_expecting(core, t.withdrawal(CARD.pan, DAILY, CARD.pin))
        finally:
            await core.close()

        # A restart on the new day rebuilds the very counters the running core had.
        core = await _open(state, t.ManualClock(AFTER + 60))
        try:
            assert _usage(core, card_id, D + 1) == (DAILY, 1)
            await t.authorize_expecting(
                core, t.withdrawal(CARD.pan, 100_000, CARD.pin), RC.EXCEEDS_AMOUNT_LIMIT
            )
        finally:
            await core.close()

    asyncio.run(asyncio.wait_for(body(), 30))


# -- fields 12/13 carry no year: the one nearest to now is taken ----------------------------
def test_local_date_time_takes_the_year_nearest_to_now() -> None:
    from switch.iso8583.mapping import local_date_time

    new_year = dt.datetime(2028, 1, 1, 0, 0, 30, tzinfo=dt.UTC).timestamp()
    assert local_date_time("1231", "235959", new_year) == dt.datetime(2027, 12, 31, 23, 59, 59)
    assert local_date_time("0101", "000010", new_year) == dt.datetime(2028, 1, 1, 0, 0, 10)
    # 29 February is a date in the leap year nearest to now, not a format error
    march_2027 = dt.datetime(2027, 3, 1, tzinfo=dt.UTC).timestamp()
    assert local_date_time("0229", "120000", march_2027) == dt.datetime(2028, 2, 29, 12)
    leap_day = dt.datetime(2028, 2, 29, 22, 59, 30, tzinfo=dt.UTC).timestamp()
    assert local_date_time("0229", "235930", leap_day) == dt.datetime(2028, 2, 29, 23, 59, 30)
    assert local_date_time("1332", "120000", leap_day) is None
    assert local_date_time("0101", "250000", leap_day) is None
