"""StartVerification is rate limited: codes per card and per merchant within a window.

Over real gRPC on a real core (SQLite in a temp dir) with a manual clock: the limit answers
RESOURCE_EXHAUSTED naming it, idempotent replays do not count, the count survives a restart
(it is read from the store), concurrent calls cannot overshoot it, and the window slides on
the core's clock. Limits come from ``[verification]`` in the product configuration.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tomllib
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import grpc
import pytest

from switch.api.testing import Harness, serve_api
from switch.config import ConfigError, SwitchConfig, load_config, parse_config
from switch.core import demo
from switch.core.service import SwitchCore
from switch.core.testing import ManualClock

CARDS = [c for c in demo.CARDS if c.status == "active"][:3]
T0 = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC).timestamp()
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def config_with(verification: str) -> SwitchConfig:
    """The shipped configuration with another ``[verification]`` table."""
    text = resources.files("switch.core").joinpath("products.toml").read_text("utf-8")
    head = text[: text.index("[verification]")]
    return parse_config(tomllib.loads(head + "[verification]\n" + verification))


@asynccontextmanager
async def api(
    state: Path, clock: ManualClock, config: SwitchConfig | None = None
) -> AsyncIterator[Harness]:
    core = await SwitchCore.open(state, durable=False, clock=clock, config=config)
    try:
        async with serve_api(core) as h:
            yield h
    finally:
        await core.close()


async def status_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return e.value.code(), e.value.details() or ""


def sms_count(core: SwitchCore) -> int:
    return int(core.store.query("SELECT COUNT(*) FROM alerts")[0][0])


def test_defaults_are_three_codes_per_card_in_fifteen_minutes() -> None:
    v = load_config().verification
    assert (v.codes_per_card, v.window_minutes) == (3, 15)
    assert v.codes_per_merchant >= 100


def test_codes_per_card_across_merchants_replays_free_survives_a_restart(state: Path) -> None:
    card = CARDS[0].pan
    clock = ManualClock(T0)

    async def go() -> None:
        async with api(state, clock) as h:
            first = await h.client.start_verification(card, 1000, idempotency_key="v-0")
            for i in (1, 2):
                clock.advance(60)
                await h.client.start_verification(card, 1000, idempotency_key=f"v-{i}")
            assert sms_count(h.core) == 3
            code, msg = await status_of(h.client.start_verification(card, 1000))
            assert code is EXHAUSTED and msg.startswith("pan:"), msg
            assert "verification.codes_per_card" in msg and "15 minutes" in msg
            # per card whichever merchant asks
            code, msg = await status_of(h.other.start_verification(card, 1000))
            assert code is EXHAUSTED and msg.startswith("pan:"), msg
            # a replay is the first answer again, sends nothing and is not refused
            again = await h.client.start_verification(card, 1000, idempotency_key="v-0")
            assert again == first
            # another card is not affected
            await h.client.start_verification(CARDS[1].pan, 1000)
            assert sms_count(h.core) == 4

        async with api(state, clock) as h:  # a restart: the count is the store's
            code, _ = await status_of(h.client.start_verification(card, 1000))
            assert code is EXHAUSTED
            clock.advance(15 * 60 - 120 + 1)  # the first code leaves the window
            await h.client.start_verification(card, 1000)
            code, _ = await status_of(h.client.start_verification(card, 1000))
            assert code is EXHAUSTED
            assert sms_count(h.core) == 5

    asyncio.run(asyncio.wait_for(go(), 60))


def test_codes_per_merchant(state: Path) -> None:
    config = config_with("codes_per_merchant = 2\n")

    async def go() -> None:
        async with api(state, ManualClock(T0), config) as h:
            await h.client.start_verification(CARDS[0].pan, 1000)
            await h.client.start_verification(CARDS[1].pan, 1000)
            code, msg = await status_of(h.client.start_verification(CARDS[2].pan, 1000))
            assert code is EXHAUSTED and msg.startswith("merchant:"), msg
            assert "verification.codes_per_merchant" in msg
            await h.other.start_verification(CARDS[2].pan, 1000)  # another merchant's own
            assert sms_count(h.core) == 3

    asyncio.run(asyncio.wait_for(go(), 60))


def test_concurrent_calls_cannot_overshoot_the_limit(state: Path) -> None:
    async def go() -> None:
        async with api(state, ManualClock(T0)) as h:
            calls = [h.client.start_verification(CARDS[0].pan, 1000) for _ in range(16)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
            assert len(refused) == 13 and all(r.code() is EXHAUSTED for r in refused)
            assert sms_count(h.core) == 3
            assert h.core.store.query("SELECT COUNT(*) FROM otp_sends") == [(3,)]

    asyncio.run(asyncio.wait_for(go(), 60))


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("codes_per_card = 0\n", "verification.codes_per_card"),
        ("window_minutes = -1\n", "verification.window_minutes"),
        ('codes_per_merchant = "many"\n', "verification.codes_per_merchant"),
        ("codes_per_phone = 3\n", "verification.codes_per_phone"),
    ],
)
def test_a_bad_verification_table_names_the_key(table: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        config_with(table)
