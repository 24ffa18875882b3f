"""A real core and online gateway on a free port, in a background event loop, for tests.

The gateway tests drive it the way outside clients do -- SATIM's client libraries with plain
blocking HTTP calls, a browser through Selenium -- so the server runs on a loop of its own in
a thread and the test's thread talks to it over TCP only. A second small aiohttp app plays
the merchant's shop (``returnUrl`` / ``failUrl``). The core's clock is a ``ManualClock`` the
test moves; the one-time codes are read from the SMS outbox as the SMS worker would send
them (sealed rows opened with the state directory's key).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.cookiejar
import json
import re
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from switch.core import demo
from switch.core.service import SwitchCore
from switch.core.testing import ManualClock
from switch.gateway.server import Gateway, start_gateway
from switch.gateway.service import GatewayConfig
from switch.notify.sealing import AlertSeal, is_sealed

T = TypeVar("T")
T0 = dt.datetime(2026, 4, 14, 9, 30, tzinfo=dt.UTC).timestamp()
MERCHANT = demo.MERCHANTS[0]  # Boutique Djazair, e-commerce
OTHER = demo.MERCHANTS[1]
CREDENTIALS = {"userName": MERCHANT.merchant_id, "password": MERCHANT.api_key}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def cvv2(card: demo.DemoCard) -> str:
    return demo.cvv2(card.pan, card.expiry)


def expiry_mm_yy(card: demo.DemoCard) -> str:
    """The card's YYMM expiry as printed on it, MM/YY."""
    return f"{card.expiry[2:]}/{card.expiry[:2]}"


async def _shop(request: web.Request) -> web.Response:
    order = request.query.get("orderId", "")
    outcome = request.match_info["outcome"]
    return web.Response(
        text=f"<!DOCTYPE html><html><body><h1 id='shop'>shop {outcome}</h1>"
        f"<p id='order'>{order}</p></body></html>",
        content_type="text/html",
    )


@dataclass
class Served:
    core: SwitchCore
    gateway: Gateway
    shop: web.AppRunner
    shop_port: int


class GatewayHarness:
    """Start with ``with GatewayHarness(state, clock) as h:``; ``h.base`` is the gateway."""

    def __init__(
        self, state: Path, clock: ManualClock, config: GatewayConfig | None = None
    ) -> None:
        self.state = state
        self.clock = clock
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.served: Served | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> GatewayHarness:
        self.thread.start()
        self.served = self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.served is not None:
            self.call(self._stop(self.served))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> Served:
        core = await SwitchCore.open(self.state, durable=False, clock=self.clock)
        gateway = await start_gateway(core, "127.0.0.1", 0, config=self.config)
        app = web.Application()
        app.router.add_get("/shop/{outcome}", _shop)
        shop = web.AppRunner(app, access_log=None)
        await shop.setup()
        site = web.TCPSite(shop, "127.0.0.1", 0)
        await site.start()
        port = int(shop.addresses[0][1])
        return Served(core, gateway, shop, port)

    @staticmethod
    async def _stop(s: Served) -> None:
        await s.shop.cleanup()
        await s.gateway.close()
        await s.core.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Runs ``coro`` on the server's loop (the core is used from that thread only)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- what a test needs -----------------------------------------------------------------
    @property
    def s(self) -> Served:
        assert self.served is not None
        return self.served

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.s.gateway.port}"

    @property
    def return_url(self) -> str:
        return f"http://127.0.0.1:{self.s.shop_port}/shop/ok?cart=7"

    @property
    def fail_url(self) -> str:
        return f"http://127.0.0.1:{self.s.shop_port}/shop/fail"

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        async def q() -> list[tuple[Any, ...]]:
            return self.s.core.store.query(sql, args)

        return self.call(q())

    def sms_texts(self) -> list[str]:
        """The SMS texts as the handset reads them (sealed codes opened as the worker does)."""
        seal = AlertSeal.for_state_dir(self.state)
        rows = self.query("SELECT msisdn, text FROM alerts ORDER BY alert_id")
        return [seal.open(m, t).reveal() if is_sealed(t) else str(t) for m, t in rows]

    def last_code(self) -> str:
        """The one-time code of the newest SMS."""
        text = self.sms_texts()[-1]
        return next(w for w in text.split() if w.isdigit() and len(w) == 6)

    def register(
        self, number: str, amount: int = 250_000, *, preauth: bool = False, **extra: str
    ) -> dict[str, Any]:
        params = {
            **CREDENTIALS, "orderNumber": number, "amount": str(amount), "currency": "012",
            "returnUrl": self.return_url, "failUrl": self.fail_url, **extra,
        }  # fmt: skip
        return rest(self.base, "registerPreAuth.do" if preauth else "register.do", params)


def rest(
    base: str,
    endpoint: str,
    params: dict[str, str],
    *,
    post: bool = False,
    context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One SATIM call as the PHP/JS clients make it: GET with a query, or POST form-encoded
    (``headers``: extra ones, e.g. what a reverse proxy adds)."""
    data = urllib.parse.urlencode(params)
    url = f"{base}/payment/rest/{endpoint}"
    assert url.startswith(("http://", "https://"))
    extra = headers or {}
    if post:
        form = {"Content-Type": "application/x-www-form-urlencoded", **extra}
        req = urllib.request.Request(url, data=data.encode(), headers=form)  # noqa: S310
    else:
        req = urllib.request.Request(f"{url}?{data}", headers=extra)  # noqa: S310
    with urllib.request.urlopen(req, timeout=30, context=context) as r:  # noqa: S310
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/json")
        doc: dict[str, Any] = json.loads(r.read())
        return doc


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class PageAnswer:
    status: int
    headers: Message
    body: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


#: one browser's cookies (the page session), shared by every page() call of a test run
COOKIES = http.cookiejar.CookieJar()


def page(
    url: str, form: dict[str, str] | None = None, *, cookies: http.cookiejar.CookieJar = COOKIES
) -> PageAnswer:
    """GET (or POST ``form`` to) the payment page as one browser (``cookies``) does, without
    following redirects."""
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPCookieProcessor(cookies))
    data = None if form is None else urllib.parse.urlencode(form).encode()
    try:
        with opener.open(url, data=data, timeout=30) as r:
            return PageAnswer(r.status, r.headers, r.read().decode())
    except urllib.error.HTTPError as e:  # 303, 403, 404, 422: answers, not failures
        return PageAnswer(e.code, e.headers, e.read().decode())


def pay_over_http(
    h: GatewayHarness, form_url: str, card: demo.DemoCard, code: str | None = None
) -> PageAnswer:
    """The cardholder's two steps with plain form posts: card, then the SMS code (or
    ``code``). Returns the answer to the code step (a 303 to the merchant when decided)."""
    first = page(form_url)
    assert first.status == 200, first.body
    m = CSRF.search(first.body)
    assert m is not None
    order_id = urllib.parse.parse_qs(urllib.parse.urlsplit(form_url).query)["mdOrder"][0]
    base = {"csrf": m.group(1), "mdOrder": order_id}
    card_form = {
        **base, "action": "card", "pan": card.pan, "expiry": expiry_mm_yy(card),
        "cvv2": cvv2(card),
    }  # fmt: skip
    sent = page(form_url, card_form)
    assert sent.status == 303, sent.body
    step2 = page(form_url)
    assert 'name="code"' in step2.body, step2.body
    return page(form_url, {**base, "action": "code", "code": code or h.last_code()})
