"""``switch run``'s gateway options, kept here so ``switch/app.py`` gains three lines only.

``--gateway-port`` (default 8081; 0: a free port; -1: off), ``--gateway-tls-cert`` /
``--gateway-tls-key`` (checked as gRPC's TLS files are), ``--gateway-public-url`` (the origin
``formUrl`` starts with behind a proxy), ``--gateway-trusted-proxy`` (whose
``X-Forwarded-For`` names the client), ``--gateway-session-timeout``
(seconds a payment page stays usable, default 600) and ``--gateway-max-tries`` (payment
attempts on one order, default 3).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from switch.digits import ascii_int
from switch.observe.endpoints import http_port

if TYPE_CHECKING:  # aiohttp and jinja2 load only when the gateway starts (not for --help)
    from switch.core.service import SwitchCore
    from switch.gateway.server import Gateway

DEFAULT_PORT = 8081
#: overrides the default port (the test suite sets 0: every switch it starts gets a free one,
#: so tests written before the gateway existed do not contend for 8081)
ENV_PORT = "SWITCH_GATEWAY_PORT"
DEFAULT_SESSION_TIMEOUT_S = 600  # as switch.gateway.service (not imported: see above)
DEFAULT_MAX_TRIES = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateway-port",
        type=http_port,
        default=os.environ.get(ENV_PORT, str(DEFAULT_PORT)),
        help=f"SATIM-compatible REST gateway and hosted payment page (default {DEFAULT_PORT} "
        f"or ${ENV_PORT}; 0: a free port, -1: off)",
    )
    parser.add_argument(
        "--gateway-tls-cert",
        type=Path,
        default=None,
        metavar="PEM",
        help="serve the gateway over HTTPS with this certificate (chain); needs --gateway-tls-key",
    )
    parser.add_argument(
        "--gateway-tls-key", type=Path, default=None, metavar="PEM", help="its private key"
    )
    parser.add_argument(
        "--gateway-public-url",
        default=None,
        metavar="URL",
        help="the scheme://host[:port] formUrl starts with, when cardholders reach the gateway "
        "through a proxy (default: what the merchant called register.do on)",
    )
    parser.add_argument(
        "--gateway-trusted-proxy",
        action="append",
        default=[],
        type=proxy_address,
        metavar="IP",
        help="a reverse proxy in front of the gateway (repeatable): for its requests the "
        "client address (counted by the login failure limit) is the last X-Forwarded-For "
        "entry, not the proxy's",
    )
    parser.add_argument(
        "--gateway-session-timeout",
        type=ascii_int,
        default=DEFAULT_SESSION_TIMEOUT_S,
        metavar="SECONDS",
        help="how long a payment page stays usable after register.do "
        f"(default {DEFAULT_SESSION_TIMEOUT_S})",
    )
    parser.add_argument(
        "--gateway-max-tries",
        type=ascii_int,
        default=DEFAULT_MAX_TRIES,
        metavar="N",
        help=f"payment attempts per order on the page (default {DEFAULT_MAX_TRIES})",
    )


def proxy_address(text: str) -> str:
    """``--gateway-trusted-proxy``: one IP address (argparse type), in its usual form."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def check(args: argparse.Namespace) -> None:
    """Refuse bad gateway options before anything starts (names the flag)."""
    from switch.gateway.server import gateway_tls

    if args.gateway_session_timeout < 1:
        raise SystemExit(f"--gateway-session-timeout {args.gateway_session_timeout}: at least 1")
    if args.gateway_max_tries < 1:
        raise SystemExit(f"--gateway-max-tries {args.gateway_max_tries}: at least 1")
    gateway_tls(args.gateway_tls_cert, args.gateway_tls_key)  # TlsFileError names the flag
    url = args.gateway_public_url
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise SystemExit(f"--gateway-public-url {url!r}: expected scheme://host[:port]")


async def start(core: SwitchCore, args: argparse.Namespace) -> Gateway | None:
    """The gateway as the options say (``None``: off), and its banner line printed."""
    from switch.gateway.server import gateway_tls, start_gateway
    from switch.gateway.service import GatewayConfig

    check(args)
    if args.gateway_port < 0:
        return None
    tls = gateway_tls(args.gateway_tls_cert, args.gateway_tls_key)
    public = args.gateway_public_url.rstrip("/") if args.gateway_public_url else None
    config = GatewayConfig(
        session_timeout_s=float(args.gateway_session_timeout),
        max_tries=args.gateway_max_tries,
        public_url=public,
        trusted_proxies=frozenset(args.gateway_trusted_proxy),
    )
    gateway = await start_gateway(core, args.host, args.gateway_port, config=config, tls=tls)
    scheme = "https" if tls is not None else "http"
    print(
        f"online gateway (SATIM-compatible) on {scheme}://{args.host}:{gateway.port}/payment/rest/",
        flush=True,
    )
    return gateway
