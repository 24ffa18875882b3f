"""``/payment/rest/*.do``: SATIM's merchant API on aiohttp (README, "Online gateway").

Parameters come as SATIM's clients send them: in the query string (GET) or as a
form-encoded body (POST), the body winning over the query. Every answer is HTTP 200 with a
JSON body; a refusal is an ``ErrorCode`` in it (``switch.gateway.errors``), never an HTTP
error, because that is what those clients read. Nothing here logs a parameter: the query of
a GET holds the merchant's password.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from switch.core.model import DZD
from switch.digits import is_ascii_digits
from switch.gateway import answers
from switch.gateway.errors import ErrorCode, GatewayError, invalid, missing
from switch.gateway.orders import Order, OrderKind, is_order_id
from switch.gateway.service import GatewayService
from switch.gateway.texts import DEFAULT_LANGUAGE, LANGUAGES
from switch.merchant_notify import check_metadata

log = logging.getLogger("switch.gateway")

PREFIX = "/payment/rest/"
MAX_AMOUNT = 10**12  # minor units, as the core's bound
MAX_ORDER_NUMBER = 32
MAX_URL = 512
MAX_DESCRIPTION = 512
MAX_JSON_PARAMS = 2048
MAX_PARAM_NAME = 64
MAX_SESSION_S = 86_400  # sessionTimeoutSecs: a payment page lives at most a day
#: printable ASCII, no space, no backslash, no quote or angle bracket
URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                  r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")  # fmt: skip
IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")  # urlsplit strips the brackets

Params = Mapping[str, str]
Handler = Callable[[GatewayService, Params, web.Request], Awaitable[dict[str, Any]]]
web_handler = Callable[[web.Request], Awaitable[web.Response]]


async def read_params(request: web.Request) -> dict[str, str]:
    """The query, then a form-encoded or multipart body over it (clients send either)."""
    out = dict(request.query)
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        out.update({k: v for k, v in form.items() if isinstance(v, str)})
    return out


def required(p: Params, name: str) -> str:
    value = p.get(name, "").strip()
    if not value:
        raise missing(name)
    return value


def amount_of(p: Params, name: str = "amount", *, zero: bool = False) -> int:
    text = p.get(name, "").strip()
    if not text:
        if zero:
            return 0
        raise missing(name)
    if text.startswith("-") and is_ascii_digits(text[1:]):
        raise invalid(name, "must be positive (centimes)")
    if not is_ascii_digits(text):
        raise invalid(name, "must be an integer number of centimes (digits only)")
    if len(text.lstrip("0")) > len(str(MAX_AMOUNT)) or int(text) > MAX_AMOUNT:
        raise invalid(name, f"at most {MAX_AMOUNT}")  # never parsed past the bound
    value = int(text)
    if value == 0 and not zero:
        raise invalid(name, "must be positive (centimes)")
    return value


def currency_of(p: Params) -> int:
    text = p.get("currency", "").strip()
    if not text:
        return DZD
    if not (is_ascii_digits(text) and len(text) <= 3 and int(text) == DZD):
        raise GatewayError(
            ErrorCode.UNKNOWN_CURRENCY, f"currency: {text[:8]!r} is not accepted (012 only)"
        )
    return DZD


def url_of(p: Params, name: str, *, default: str | None = None) -> str:
    """``returnUrl`` / ``failUrl``: where the cardholder's browser is sent, so an absolute
    http(s) URL (never ``javascript:``, ``data:`` or a relative one), printable ASCII without
    spaces or backslashes (browsers read ``\\`` as ``/``; an IDN host in its ``xn--`` form),
    no ``user@`` part (``https://bank.dz@evil.example`` shows one host and goes to another),
    a plain host name or IP address: its origin goes verbatim into the page's CSP header."""
    text = p.get(name, "").strip()
    if not text:
        if default is not None:
            return default
        raise missing(name)
    why = f"an absolute http(s) URL of at most {MAX_URL} characters"
    if len(text) > MAX_URL or not URL_CHARS.fullmatch(text):
        raise invalid(name, why)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 host
        raise invalid(name, why) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise invalid(name, why)
    if "@" in parts.netloc:
        raise invalid(name, "no user name or password in the URL")
    try:
        port = parts.port
    except ValueError:
        port = -1
    host = parts.hostname or ""
    if port == 0 or port == -1 or not (HOST.fullmatch(host) or IPV6.fullmatch(host)):
        raise invalid(name, "a host name, IP address or port that is not valid")
    return text


def session_timeout_of(p: Params) -> float | None:
    """BPC's ``sessionTimeoutSecs``: how long the payment page stays usable (optional)."""
    text = p.get("sessionTimeoutSecs", "").strip()
    if not text:
        return None
    if not (is_ascii_digits(text) and len(text) <= 6 and 60 <= int(text) <= MAX_SESSION_S):
        raise invalid("sessionTimeoutSecs", f"seconds, 60..{MAX_SESSION_S}")
    return float(text)


def language_of(p: Params) -> str:
    """``FR``, ``AR`` or ``EN`` in any case, a region allowed (``fr-DZ``, ``ar_DZ``); any
    other language falls back to French, as BPC's gateway uses the store's default for a
    language it lacks (a shop sending ``ru`` still gets its order, not a refusal)."""
    text = p.get("language", "").strip().replace("_", "-").split("-")[0].upper()
    return text if text in LANGUAGES else DEFAULT_LANGUAGE


def json_params_of(p: Params) -> dict[str, str]:
    text = p.get("jsonParams", "").strip()
    if not text:
        return {}
    if len(text) > MAX_JSON_PARAMS:
        raise invalid("jsonParams", f"at most {MAX_JSON_PARAMS} characters")
    try:
        doc = json.loads(text)
    except ValueError:
        raise invalid("jsonParams", "not JSON") from None
    if not isinstance(doc, dict):
        raise invalid("jsonParams", "must be a JSON object")
    out: dict[str, str] = {}
    for k, v in doc.items():
        if len(k) > MAX_PARAM_NAME or not isinstance(v, str | int | float) or isinstance(v, bool):
            raise invalid("jsonParams", f"{k[:MAX_PARAM_NAME]!r}: a short name and a string")
        out[k] = str(v)
    why = check_metadata(out)  # they become the notifications' metadata
    if why is not None:
        raise invalid("jsonParams", why.removeprefix("metadata: "))
    return out


def order_id_of(p: Params) -> str:
    """``orderId``, or ``mdOrder`` as SATIM's newer clients name it in a confirmation."""
    order_id = p.get("orderId", "").strip() or p.get("mdOrder", "").strip()
    if not order_id:
        raise missing("orderId")
    if not is_order_id(order_id):
        raise GatewayError(ErrorCode.UNKNOWN_ORDER, f"orderId: no order {order_id[:32]!r}")
    return order_id


def form_url(request: web.Request, svc: GatewayService, order: Order) -> str:
    base = svc.config.public_url or str(request.url.origin())
    lang = order.language.lower()
    merchant = quote(order.merchant_id, safe="")
    return f"{base}/payment/merchants/{merchant}/payment_{lang}.html?mdOrder={order.order_id}"


def client_address(request: web.Request, trusted_proxies: frozenset[str]) -> str:
    """The caller's IP address as the login failure limit counts it: the peer's, or, when
    the peer is one of ``--gateway-trusted-proxy``, the last ``X-Forwarded-For`` entry (the
    one that proxy appended; earlier entries are the client's to forge)."""
    peer = request.remote or "-"
    if peer not in trusted_proxies:
        return peer
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
    last = forwarded.rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:  # no header, or not an address: the proxy's own
        return peer


async def _merchant(svc: GatewayService, p: Params, request: web.Request) -> Any:
    address = client_address(request, svc.config.trusted_proxies)
    return await svc.authenticate(required(p, "userName"), required(p, "password"), address)


async def _register(
    svc: GatewayService, p: Params, request: web.Request, kind: OrderKind
) -> dict[str, Any]:
    merchant = await _merchant(svc, p, request)
    number = required(p, "orderNumber")
    if len(number) > MAX_ORDER_NUMBER or not number.isprintable():
        raise invalid("orderNumber", f"at most {MAX_ORDER_NUMBER} printable characters")
    amount = amount_of(p)
    currency = currency_of(p)
    return_url = url_of(p, "returnUrl")
    fail_url = url_of(p, "failUrl", default=return_url)
    text = p.get("description", "")
    if len(text) > MAX_DESCRIPTION:
        raise invalid("description", f"at most {MAX_DESCRIPTION} characters")
    order = await svc.register(
        merchant, kind, order_number=number, amount=amount, currency=currency,
        return_url=return_url, fail_url=fail_url, description=text,
        language=language_of(p), json_params=json_params_of(p),
        session_timeout_s=session_timeout_of(p),
    )  # fmt: skip
    return {**answers.ok(), "orderId": order.order_id, "formUrl": form_url(request, svc, order)}


async def register(svc: GatewayService, p: Params, request: web.Request) -> dict[str, Any]:
    return await _register(svc, p, request, OrderKind.SALE)


async def register_preauth(svc: GatewayService, p: Params, request: web.Request) -> dict[str, Any]:
    return await _register(svc, p, request, OrderKind.PREAUTH)


async def order_status(svc: GatewayService, p: Params, request: web.Request) -> dict[str, Any]:
    merchant = await _merchant(svc, p, request)
    return answers.status(await svc.find(merchant, order_id_of(p)))


async def order_status_extended(
    svc: GatewayService, p: Params, request: web.Request
) -> dict[str, Any]:
    merchant = await _merchant(svc, p, request)
    if p.get("orderId", "").strip() or not p.get("orderNumber", "").strip():
        order = await svc.find(merchant, order_id_of(p))
    else:
        order = await svc.find_by_number(merchant, required(p, "orderNumber"))
    return answers.extended(order, merchant.terminal_id)


async def deposit(svc: GatewayService, p: Params, request: web.Request) -> dict[str, Any]:
    merchant = await _merchant(svc, p, request)
    order_id = order_id_of(p)
    currency_of(p)
    await svc.deposit(merchant, order_id, amount_of(p, zero=True))
    return answers.ok()


async def reverse(svc: GatewayService, p: Params, request: web.Request) -> dict[str, Any]:
    merchant = await _merchant(svc, p, request)
    await svc.reverse(merchant, order_id_of(p))
    return answers.ok()


async def refund(svc: GatewayService, p: Params, request: web.Request) -> dict[str, Any]:
    merchant = await _merchant(svc, p, request)
    order_id = order_id_of(p)
    currency_of(p)  # when given, 012 (SATIM's clients send it with the amount)
    await svc.refund(merchant, order_id, amount_of(p))
    return answers.ok()


#: endpoint -> (handler, answers with ErrorCode/ErrorMessage capitalized)
ENDPOINTS: dict[str, tuple[Handler, bool]] = {
    "register.do": (register, False),
    "registerPreAuth.do": (register_preauth, False),
    "confirmOrder.do": (order_status, True),
    "public/acknowledgeTransaction.do": (order_status, True),  # SATIM's newer confirm path
    "getOrderStatus.do": (order_status, True),
    "getOrderStatusExtended.do": (order_status_extended, False),
    "deposit.do": (deposit, False),
    "reverse.do": (reverse, False),
    "refund.do": (refund, False),
}


def _dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False)  # UTF-8 text, as SATIM answers


def routes(svc: GatewayService) -> list[web.AbstractRouteDef]:
    def endpoint(handler: Handler, capitalized: bool) -> web_handler:
        async def serve(request: web.Request) -> web.Response:
            try:
                body = await handler(svc, await read_params(request), request)
            except GatewayError as e:
                body = answers.error(e.code, e.message, capitalized=capitalized)
            except Exception:  # answered as SATIM does; the details only in our log
                log.exception("gateway: %s failed", request.path)
                body = answers.error(
                    ErrorCode.SYSTEM_ERROR, "system error; retry later", capitalized=capitalized
                )
            return web.json_response(body, headers={"Cache-Control": "no-store"}, dumps=_dumps)

        return serve

    out: list[web.AbstractRouteDef] = []
    for name, (handler, capitalized) in ENDPOINTS.items():
        serve = endpoint(handler, capitalized)
        out.append(web.get(PREFIX + name, serve, allow_head=False))
        out.append(web.post(PREFIX + name, serve))
    return out
