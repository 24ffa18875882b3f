"""A real merchant API server on a free port, for tests and benchmarks of the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

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
