"""The hosted payment page (``formUrl``): card details, then the one-time code from the SMS.

Plain HTML forms, no script: the page works with JavaScript off. Two steps on one URL,
``/payment/merchants/<merchant>/payment_<fr|ar|en>.html?mdOrder=<orderId>``:

1. card number, expiry, CVV2 -> the issuer sends the cardholder a code by SMS
   (``SwitchCore.start_verification``, within its rate limits; at most ``--gateway-max-tries``
   codes an order). No holder name is asked: nothing here would use it (README);
2. the code -> the sale or pre-authorization (``GatewayService.pay``) -> 303 to the
   merchant's ``returnUrl`` (approved) or ``failUrl`` (declined), each with ``orderId``.

Card data travels only in POST bodies and is never echoed back into a page (a refused form
comes back empty). Between the steps it is kept in this process's memory only
(``Checkout.card``), dropped when the order is decided, cancelled or expired -- a restart
loses it and the cardholder types it again. Every form carries a CSRF token tied to the
order's checkout (compared in constant time). The session ends at the order's
``expires_at`` (``--gateway-session-timeout``, from the core's clock); the tries on one order
are limited (``--gateway-max-tries``). Every answer carries a strict CSP (no script at all,
forms only to this origin and the merchant's return origins), ``Cache-Control: no-store``
and no referrer, so neither a cache nor the merchant's site sees the page.

A double submit is answered as one: the card step posted again with the same card (a double
click) sends no second code, and a form posted to an order another request just decided is
sent where that one was (``returnUrl`` / ``failUrl``), not shown an error. A store failure
is a 503 page (try again), never a half-written order.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import jinja2
from aiohttp import web

from switch.core.domain import luhn_ok
from switch.digits import ASCII_DIGITS
from switch.gateway.errors import GatewayError
from switch.gateway.orders import Order, OrderStatus, is_order_id
from switch.gateway.service import CardRefused, GatewayService, TooManyCodes
from switch.gateway.texts import ACTION_EXPIRED, LANGUAGES, TEXTS, format_amount

log = logging.getLogger("switch.gateway")

PAGE = "/payment/merchants/{merchant}/payment_{lang:[a-z]{2}}.html"
PAGE_PATH = "/payment/merchants/"
STATIC = "/payment/static/"
#: the browser's page session: the card typed in step 1 is used only by the browser that
#: typed it (HttpOnly, SameSite=Lax: sent when the shop sends the cardholder here, never on
#: another site's POST)
COOKIE = "gw_session"


@dataclass(slots=True, repr=False)  # repr=False: a stray log of a checkout shows nothing
class CardData:
    pan: str
    expiry: str  # YYMM
    cvv2: str


def _token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(slots=True, repr=False)
class Checkout:
    """One order's page session: the browser it belongs to (``sid``, its cookie), its CSRF
    token and, between the steps, the card."""

    expires_at: float
    sid: str = field(default_factory=_token)
    csrf: str = field(default_factory=_token)
    card: CardData | None = None
    masked_phone: str = ""


def with_order_id(url: str, order_id: str) -> str:
    """``url`` with ``orderId`` added to its query (SATIM's redirect to the merchant)."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("orderId", order_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def parse_expiry(text: str) -> str | None:
    """``MM/YY`` (or ``MMYY``, ``MM / YY``) -> ``YYMM``; ``None`` when it is not one."""
    digits = "".join(text.replace("/", " ").split())
    if not (len(digits) == 4 and ASCII_DIGITS.fullmatch(digits)):
        return None
    if not 1 <= int(digits[:2]) <= 12:
        return None
    return digits[2:] + digits[:2]


def parse_pan(text: str) -> str | None:
    digits = "".join(text.split())  # grouped by 4 as printed on the card
    if not (12 <= len(digits) <= 19 and ASCII_DIGITS.fullmatch(digits) and luhn_ok(digits)):
        return None
    return digits


class PaymentPage:
    """The page's handlers over a ``GatewayService``; checkouts live here, in memory."""

    def __init__(self, svc: GatewayService, *, secure: bool) -> None:
        self.svc = svc
        self.secure = secure  # served over TLS: HSTS
        self.checkouts: dict[str, Checkout] = {}
        self._swept_at = 0.0
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("switch.gateway", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get(PAGE, self._unavailable_on_error(self.show), allow_head=False),
            web.post(PAGE, self._unavailable_on_error(self.submit)),
            web.static(STATIC, _static_dir(), append_version=False),
        ]

    def _unavailable_on_error(
        self, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A ``GatewayError`` (the order store failed: nothing of the step was stored) is a
        503 page in the cardholder's language, not aiohttp's bare 500."""

        async def serve(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except GatewayError as e:
                language = _language(request)
                log.warning("payment page: %s answered 503: %s", request.path, e.message)
                return self._render(
                    "message.html", language, None, status=503,
                    message=TEXTS[language]["unavailable"], back="",
                )  # fmt: skip

        return serve

    # -- rendering -------------------------------------------------------------------------
    def _headers(self, order: Order | None) -> dict[str, str]:
        targets = {"'self'"}
        if order is not None:
            targets |= {origin(order.return_url), origin(order.fail_url)}
        headers = {
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'self'; img-src 'self'; "
                f"form-action {' '.join(sorted(targets))}; frame-ancestors 'none'; "
                "base-uri 'none'"
            ),
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        }
        if self.secure:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        return headers

    def _render(
        self,
        template: str,
        language: str,
        order: Order | None,
        *,
        status: int = 200,
        **values: Any,
    ) -> web.Response:
        t = TEXTS[language]
        context: dict[str, Any] = {
            "t": t,
            "language": language,
            "order": order,
            "merchant_name": "",
            "amount": "",
            "languages": [],
            "errors": [],
            **values,
        }
        if order is not None:
            merchant = self.svc.core.merchant(order.merchant_id)
            context["merchant_name"] = merchant.name if merchant else order.merchant_id
            context["amount"] = format_amount(order.amount, language)
            context["expires"] = dt.datetime.fromtimestamp(order.expires_at, dt.UTC).strftime(
                "%H:%M"
            )
            context["languages"] = [
                (code, TEXTS[code]["lang"], _page_url(order, code)) for code in LANGUAGES
            ]
        html = self.env.get_template(template).render(context)
        return web.Response(
            text=html, status=status, content_type="text/html", charset="utf-8",
            headers=self._headers(order),
        )  # fmt: skip

    def _see_other(self, url: str, order: Order | None) -> web.Response:
        raise web.HTTPSeeOther(url, headers=self._headers(order))

    def _final(self, order: Order, language: str) -> web.Response:
        """An order that takes no more payment: a page with the way back to the merchant."""
        back = _back(order)
        key = "expired" if order.action_code == ACTION_EXPIRED else "processed"
        return self._render("message.html", language, order, message=TEXTS[language][key],
                            back=back)  # fmt: skip

    def _not_found(self, language: str) -> web.Response:
        return self._render(
            "message.html", language, None, status=404,
            message=TEXTS[language]["not_found"], back="",
        )  # fmt: skip

    def _step(
        self, order: Order, language: str, checkout: Checkout, *, status: int = 200,
        errors: list[str] | None = None,
    ) -> web.Response:  # fmt: skip
        t = TEXTS[language]
        common = {
            "csrf": checkout.csrf,
            "action": _page_url(order, language),
            "tries_left": self.svc.tries_left(order),
            "errors": errors or [],
        }
        if checkout.card is None:
            return self._render("card.html", language, order, status=status, **common)
        # the phone number isolated (<bdi>): a "+213..." must not be reordered in Arabic
        before, _, after = t["code_sent"].partition("{phone}")
        return self._render(
            "code.html", language, order, status=status, sent_before=before,
            phone=checkout.masked_phone, sent_after=after, **common,
        )  # fmt: skip

    # -- handlers --------------------------------------------------------------------------
    async def _order(self, request: web.Request, order_id: str) -> Order | None:
        if not is_order_id(order_id):
            return None
        order = await self.svc.page_order(order_id)
        if order is None or order.merchant_id != request.match_info["merchant"]:
            return None
        return order

    def _checkout(self, order: Order, sid: str) -> Checkout:
        """This browser's checkout of the order. Another browser's is replaced, its card
        dropped: whoever opens the link starts again and never uses a card someone else
        typed. Expired ones are swept (at most once a minute here, and by the gateway's
        sweeper every few seconds: ``drop_expired``) so abandoned pages keep neither
        card data nor memory."""
        now = self.svc.core.now()
        if now - self._swept_at >= 60:
            self.drop_expired(now)
        checkout = self.checkouts.get(order.order_id)
        if checkout is None or not _same(checkout.sid, sid):
            self._drop(order.order_id)
            checkout = self.checkouts[order.order_id] = Checkout(order.expires_at)
        return checkout

    def drop_expired(self, now: float) -> int:
        """Forgets the checkouts (and the cards typed in them) whose session is over; how
        many."""
        self._swept_at = now
        gone = [k for k, c in self.checkouts.items() if c.expires_at <= now]
        for order_id in gone:
            self._drop(order_id)
        return len(gone)

    def _session(self, response: web.Response, checkout: Checkout) -> web.Response:
        response.set_cookie(
            COOKIE, checkout.sid, path=PAGE_PATH, httponly=True, samesite="Lax",
            secure=self.secure,
        )  # fmt: skip
        return response

    def _drop(self, order_id: str) -> None:
        checkout = self.checkouts.pop(order_id, None)
        if checkout is not None:
            checkout.card = None

    async def show(self, request: web.Request) -> web.Response:
        language = _language(request)
        order = await self._order(request, request.query.get("mdOrder", ""))
        if order is None:
            return self._not_found(language)
        if order.final:
            self._drop(order.order_id)
            return self._final(order, language)
        checkout = self._checkout(order, request.cookies.get(COOKIE, ""))
        return self._session(self._step(order, language, checkout), checkout)

    async def submit(self, request: web.Request) -> web.Response:
        language = _language(request)
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        order_id = form.get("mdOrder", "")
        order = await self._order(request, order_id)
        if order is None:
            return self._not_found(language)
        async with self.svc.locks.hold(order.order_id):
            fresh = await self.svc.orders.get(order.order_id)
            order = await self.svc.expire_locked(fresh if fresh is not None else order)
            if order.final:
                self._drop(order.order_id)
                if order.action_code != ACTION_EXPIRED:  # e.g. the second click of a pay
                    return self._see_other(_back(order), order)
                return self._final(order, language)
            sid = request.cookies.get(COOKIE, "")
            checkout = self.checkouts.get(order.order_id)
            if checkout is None or not (
                _same(checkout.sid, sid) and _same(checkout.csrf, form.get("csrf", ""))
            ):
                checkout = self._checkout(order, sid)
                refused = self._step(
                    order, language, checkout, status=403, errors=[TEXTS[language]["err_csrf"]]
                )
                return self._session(refused, checkout)
            action = form.get("action", "")
            if action == "cancel":
                await self.svc.cancel(order)
                self._drop(order.order_id)
                return self._see_other(with_order_id(order.fail_url, order.order_id), order)
            if action == "code" and checkout.card is not None:
                return await self._code(order, language, checkout, form.get("code", ""))
            return await self._card(order, language, checkout, form)

    async def _card(
        self, order: Order, language: str, checkout: Checkout, form: dict[str, str]
    ) -> web.Response:
        t = TEXTS[language]
        pan = parse_pan(form.get("pan", ""))
        expiry = parse_expiry(form.get("expiry", ""))
        cvv2 = form.get("cvv2", "").strip()
        if checkout.card is not None and _same_card(checkout.card, pan, expiry, cvv2):
            # the same card posted again (a double click): its code is on its way already
            return self._see_other(_page_url(order, language), order)
        checkout.card = None
        errors = []
        if pan is None:
            errors.append(t["err_pan"])
        if expiry is None:
            errors.append(t["err_expiry"])
        if not (len(cvv2) == 3 and ASCII_DIGITS.fullmatch(cvv2)):
            errors.append(t["err_cvv2"])
        if errors or pan is None or expiry is None:  # nothing sent, no try spent
            return self._step(order, language, checkout, status=422, errors=errors)
        try:
            phone = await self.svc.send_code(order, pan)
        except CardRefused as e:
            if order.final:  # that was the last try
                self._drop(order.order_id)
                return self._see_other(with_order_id(order.fail_url, order.order_id), order)
            why = t["err_sends"] if isinstance(e, TooManyCodes) else t["err_card"]
            return self._step(order, language, checkout, status=422, errors=[why])
        checkout.card = CardData(pan, expiry, cvv2)
        checkout.masked_phone = phone
        return self._see_other(_page_url(order, language), order)  # the code step, by GET

    async def _code(
        self, order: Order, language: str, checkout: Checkout, code: str
    ) -> web.Response:
        t = TEXTS[language]
        card = checkout.card
        assert card is not None
        code = code.strip()
        if not (len(code) == 6 and ASCII_DIGITS.fullmatch(code)):
            return self._step(order, language, checkout, status=422, errors=[t["err_code_format"]])
        r = await self.svc.pay(order, card.pan, card.expiry, card.cvv2, code)
        if r.approved:
            self._drop(order.order_id)
            return self._see_other(with_order_id(order.return_url, order.order_id), order)
        if order.final:
            self._drop(order.order_id)
            return self._see_other(with_order_id(order.fail_url, order.order_id), order)
        return self._step(order, language, checkout, status=422, errors=[t["err_code"]])


def _same(secret: str, given: str) -> bool:
    return hmac.compare_digest(secret.encode(), given.encode())


def _same_card(card: CardData, pan: str | None, expiry: str | None, cvv2: str) -> bool:
    if pan is None or expiry is None:
        return False
    same = [_same(card.pan, pan), _same(card.expiry, expiry), _same(card.cvv2, cvv2)]
    return all(same)  # each compared, in constant time


def _back(order: Order) -> str:
    """Where a decided order sends the cardholder: ``returnUrl`` if it was paid, else
    ``failUrl``, with ``orderId``."""
    approved = order.status in (
        OrderStatus.PREAUTHORIZED, OrderStatus.DEPOSITED,
        OrderStatus.REVERSED, OrderStatus.REFUNDED,
    )  # fmt: skip
    return with_order_id(order.return_url if approved else order.fail_url, order.order_id)


def _language(request: web.Request) -> str:
    code = request.match_info.get("lang", "fr").upper()
    return code if code in LANGUAGES else "FR"


def _page_url(order: Order, language: str) -> str:
    merchant = quote(order.merchant_id, safe="")
    return f"/payment/merchants/{merchant}/payment_{language.lower()}.html?mdOrder={order.order_id}"


def _static_dir() -> str:
    from importlib import resources

    return str(resources.files("switch.gateway").joinpath("static"))
