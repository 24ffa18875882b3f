"""A real merchant API server on a free port, for tests and benchmarks of the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from switch.api.client import MerchantClient
from switch.api.server import start_grpc_server
from switch.core import demo
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


def run_with_api(
    state: Path, body: Callable[[Harness], Awaitable[None]], timeout: float = 30.0
) -> None:
    """Open the core on ``state`` (no fsync), serve the API beside it, run ``body`` against it.

    The API tests each run one scenario against a fresh copy of a seeded state directory;
    this is that scenario's whole lifetime, closed whatever ``body`` does.
    """

    async def go() -> None:
        core = await SwitchCore.open(state, durable=False)
        try:
            async with serve_api(core) as h:
                await asyncio.wait_for(body(h), timeout)
        finally:
            await core.close()

    asyncio.run(go())
