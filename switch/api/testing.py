"""A real merchant API server on a free port, for tests and benchmarks of the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc

from switch.api.client import MerchantClient
from switch.api.server import start_grpc_server
from switch.core import demo
from switch.core.business_day import DEFAULT_TZ
from switch.core.service import SwitchCore

ECOM = demo.MERCHANTS[0]
FUEL = demo.MERCHANTS[1]


@dataclass
class Harness:
    core: SwitchCore
    server: grpc.aio.Server
    target: str
    client: MerchantClient  # the e-commerce merchant
    other: MerchantClient  # a second merchant (fuel), for cross-merchant checks

    def client_for(self, merchant_id: str, api_key: str) -> MerchantClient:
        return MerchantClient(self.target, merchant_id, api_key)


@asynccontextmanager
async def serve_api(core: SwitchCore) -> AsyncIterator[Harness]:
    server = await start_grpc_server(core, "127.0.0.1", 0)
    target = f"127.0.0.1:{server.bound_port}"
    client = MerchantClient(target, ECOM.merchant_id, ECOM.api_key)
    other = MerchantClient(target, FUEL.merchant_id, FUEL.api_key)
    try:
        yield Harness(core, server, target, client, other)
    finally:
        await client.close()
        await other.close()
        await server.stop(None)


def _clear_of_midnight() -> Callable[[], float]:
    """The wall clock, set back 2 h for the whole process if it started within an hour of
    the issuer's midnight (23:00-01:00 in ``DEFAULT_TZ``): so no scenario sees the business
    day change between two of its steps (a sale then its void is refused "only same-day
    sales" across midnight), which CI's runs with a shifted clock start 30 s before. One
    offset per process, taken once, so scenarios of one module agree with each other; still
    within hours of ``time.time()``, so a test may compare with it by days."""
    hour = datetime.fromtimestamp(time.time(), ZoneInfo(DEFAULT_TZ)).hour
    offset = -2 * 3600.0 if hour in (23, 0) else 0.0
    return lambda: time.time() + offset


_CLOCK = _clear_of_midnight()


def run_with_api(
    state: Path, body: Callable[[Harness], Awaitable[None]], timeout: float = 30.0
) -> None:
    """Open the core on ``state`` (no fsync), serve the API beside it, run ``body`` against it.

    The API tests each run one scenario against a fresh copy of a seeded state directory;
    this is that scenario's whole lifetime, closed whatever ``body`` does.
    """

    async def go() -> None:
        core = await SwitchCore.open(state, durable=False, clock=_CLOCK)
        try:
            async with serve_api(core) as h:
                await asyncio.wait_for(body(h), timeout)
        finally:
            await core.close()

    asyncio.run(go())
