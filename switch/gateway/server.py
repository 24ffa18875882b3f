"""The gateway's aiohttp server on the switch's event loop (``switch run --gateway-port``).

One ``web.Application`` with the REST API and the payment page, served by aiohttp's own
HTTP stack (``AppRunner`` + ``TCPSite``), optionally over TLS. The access log is ours: it
writes method, path, status and time but never the query string, because SATIM's clients
put the merchant's password there on a GET.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from switch.api.tls_files import TlsFileError, _key_pair
from switch.core.service import SwitchCore
from switch.gateway import rest
from switch.gateway.orders import OrderStore
from switch.gateway.page import PaymentPage
from switch.gateway.service import GatewayConfig, GatewayService
from switch.tasks import cancel_and_wait

access_log = logging.getLogger("switch.gateway.access")
log = logging.getLogger("switch.gateway")


class PathOnlyAccessLogger(AbstractAccessLogger):
    """``POST /payment/rest/register.do 200 3.1ms``: no query, no body, no headers."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %.1fms", request.method, request.path, response.status, time * 1000
        )


def gateway_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """``--gateway-tls-cert/--gateway-tls-key`` checked as gRPC's are; ``None``: plain HTTP."""
    if cert is None and key is None:
        return None
    if cert is None:
        raise TlsFileError("--gateway-tls-key: given without --gateway-tls-cert (both or neither)")
    if key is None:
        raise TlsFileError("--gateway-tls-cert: given without --gateway-tls-key (both or neither)")
    _key_pair("--gateway-tls-cert", cert, "--gateway-tls-key", key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """No ``Server: Python/3.x aiohttp/3.y``: versions are for an attacker's shopping list."""
    response.headers["Server"] = "switch-gateway"


PAGE = web.AppKey("page", PaymentPage)


def build_app(svc: GatewayService, *, secure: bool = False) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)  # SATIM's forms are small
    app.on_response_prepare.append(_server_header)
    page = PaymentPage(svc, secure=secure)
    app[PAGE] = page
    app.add_routes(rest.routes(svc))
    app.add_routes(page.routes())
    return app


@dataclass
class Gateway:
    """A started gateway: ``port`` is the bound one (0 asked for a free port)."""

    service: GatewayService
    runner: web.AppRunner
    port: int
    secure: bool

    @property
    def page(self) -> PaymentPage:
        """The payment page's handlers (its in-memory checkouts, for tests and checks)."""
        return self.runner.app[PAGE]

    sweeper: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.sweeper is not None:  # a sweep awaits store reads: a lost cancel must not hang
            await cancel_and_wait(self.sweeper)
        await self.runner.cleanup()
        self.service.orders.close()

    async def sweep_once(self) -> int:
        """Declines the orders whose session is over (``GatewayService.expire_due``: their
        merchants are notified without asking) and forgets their pages' checkouts, with any
        card typed in them (``PaymentPage.drop_expired``); the number of orders declined."""
        declined = await self.service.expire_due()
        self.page.drop_expired(self.service.core.now())
        return declined


async def sweep(gateway: Gateway, every_s: float) -> None:
    """``Gateway.sweep_once`` every ``every_s`` seconds until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await gateway.sweep_once()
        except Exception:  # the next round tries again
            log.exception("gateway: the expiry sweep failed")


async def start_gateway(
    core: SwitchCore,
    host: str,
    port: int,
    *,
    config: GatewayConfig | None = None,
    tls: ssl.SSLContext | None = None,
) -> Gateway:
    """Bound and serving; ``OSError`` if the port is taken."""
    orders = OrderStore.for_store(core.store)
    svc = GatewayService(core, orders, config)
    app = build_app(svc, secure=tls is not None)
    runner = web.AppRunner(
        app, access_log_class=PathOnlyAccessLogger, access_log=access_log, shutdown_timeout=5
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        orders.close()
        raise
    bound = port
    for address in runner.addresses:  # the port actually bound (0 asked for a free one)
        bound = int(address[1])
        break
    gateway = Gateway(svc, runner, bound, tls is not None)
    await svc.watch_open_orders()
    if svc.config.sweep_s > 0:
        gateway.sweeper = asyncio.create_task(sweep(gateway, svc.config.sweep_s), name="gw-expiry")
    return gateway
