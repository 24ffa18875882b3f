"""``/healthz``, ``/readyz`` and ``/metrics`` of ``switch run`` on one small HTTP server.

Two probes because they answer different questions. Liveness (``/healthz``): can this
process still approve? Not once a store commit failed -- the core halts rather than let
memory and disk diverge -- and only a restart helps, so the probe says 503 with the reason.
Readiness (``/readyz``): should traffic be sent here? Only between "every listener bound"
and the start of a stop, so a load balancer neither races the start nor feeds a draining
switch.
"""

from __future__ import annotations

import argparse

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE

from switch.digits import is_ascii_digits
from switch.observe.http import HttpServer, Response
from switch.observe.metrics import render_metrics
from switch.observe.state import Observed, Phase

MAX_REASON = 200  # characters of the halt reason shown by /healthz


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_REASON]


def health(observed: Observed) -> Response:
    reason = observed.core.halted
    if reason is None:
        return Response(200, "ok\n")
    return Response(503, f"halted: {_one_line(reason)}\n")


def readiness(observed: Observed) -> Response:
    if observed.phase is Phase.READY:
        return Response(200, "ready\n")
    return Response(503, f"not ready: {observed.phase.value}\n")


async def metrics(observed: Observed) -> Response:
    return Response(200, await render_metrics(observed), CONTENT_TYPE)


def build_server(observed: Observed) -> HttpServer:
    async def healthz() -> Response:
        return health(observed)

    async def readyz() -> Response:
        return readiness(observed)

    async def scrape() -> Response:
        return await metrics(observed)

    return HttpServer({"/healthz": healthz, "/readyz": readyz, "/metrics": scrape})


async def start_observe_server(observed: Observed, host: str, port: int) -> HttpServer:
    """Bound and serving (``port`` 0 picks a free one: read ``.port``); OSError if taken."""
    server = build_server(observed)
    await server.start(host, port)
    return server


def http_port(text: str) -> int:
    """``--http-port``: a TCP port, 0 for a free one, or -1 for no endpoint (argparse type)."""
    if not is_ascii_digits(text.removeprefix("-")):  # int() takes "٨٠", " 80", "8_0"
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number")
    port = int(text)
    if not -1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535, or -1 for off)")
    return port
