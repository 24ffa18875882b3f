"""The gateway against an attacker: credential guessing on the REST API (lockout on the
core's clock), and the review items of issue 14 (redirect targets, amounts, order numbers,
escaping, double submits). A real core and gateway on a free port, plain HTTP as SATIM's
clients and a browser without JavaScript send it (``tests.gateway_harness``).
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from switch.core import demo
from switch.core.service import SwitchCore
from switch.core.testing import ManualClock
from switch.gateway import options as gateway_options
from switch.gateway.lockout import Locked, LockoutPolicy, LoginGuard
from switch.gateway.orders import OrderStore
from switch.gateway.server import Gateway, start_gateway
from switch.gateway.service import GatewayConfig
from tests.gateway_harness import (
    CREDENTIALS,
    CSRF,
    MERCHANT,
    OTHER,
    T0,
    GatewayHarness,
    cvv2,
    expiry_mm_yy,
    page,
    rest,
)
from tests.pg_server import PgServer

CARD = demo.CARDS[0]

POLICY = LockoutPolicy(max_failures_merchant=3, max_failures_address=8, window_s=600,
                       lockout_s=900)  # fmt: skip


@pytest.fixture
def h(state: Path) -> Iterator[GatewayHarness]:
    with GatewayHarness(state, ManualClock(T0), GatewayConfig(lockout=POLICY)) as harness:
        yield harness


def _status(h: GatewayHarness, user: str, password: str) -> dict[str, object]:
    params = {"userName": user, "password": password, "orderId": "A" * 20}
    return rest(h.base, "getOrderStatus.do", params)


def test_wrong_passwords_lock_the_id_then_the_address(
    h: GatewayHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "switch.gateway")
    real, ghost = MERCHANT.merchant_id, "NO-SUCH-MERCHANT"
    denied = {"ErrorCode": "5", "ErrorMessage": "userName/password: access denied"}
    for n in range(3):
        assert _status(h, real, f"guess-{n}") == denied
        assert _status(h, ghost, f"guess-{n}") == denied
    # both ids are locked now, with one answer: nothing says which merchant exists; the
    # right password is refused too (a lucky guess during the lock tells nothing)
    locked = _status(h, real, MERCHANT.api_key)
    assert locked["ErrorCode"] == "5" and "locked" in str(locked["ErrorMessage"])
    assert "15 min" in str(locked["ErrorMessage"])
    assert _status(h, ghost, "x") == locked
    assert h.register("LOCK-1")["errorCode"] == "5"
    # another merchant from the same address still works (6 failures < 8 for the address)
    other = {"userName": OTHER.merchant_id, "password": OTHER.api_key, "orderId": "A" * 20}
    assert rest(h.base, "getOrderStatus.do", other)["ErrorCode"] == "6"  # in: unknown order
    h.clock.advance(900)  # the lock is over
    assert h.register("LOCK-2")["errorCode"] == "0"
    # the address: 8 failures in the window, whatever the ids, lock every id from it
    for n in range(8):
        assert _status(h, f"spray-{n}", "x") == denied
    assert rest(h.base, "getOrderStatus.do", other)["ErrorMessage"] == locked["ErrorMessage"]
    h.clock.advance(900)
    assert rest(h.base, "getOrderStatus.do", other)["ErrorCode"] == "6"
    # audited: every failure and each lock, with id and address, never a password
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"userName {real!r} locked for 900 s after 3 failures" in text
    assert "address 127.0.0.1 locked for 900 s after 8 failures" in text
    assert "wrong userName/password for userName 'spray-0' from 127.0.0.1" in text
    assert "guess-" not in text and MERCHANT.api_key not in text and OTHER.api_key not in text


def test_login_guard_addresses_trust_and_memory(state: Path) -> None:
    """The guard's rules beyond one client address (what HTTP from 127.0.0.1 cannot show),
    on the counters in the store (the state directory's SQLite file)."""
    policy = LockoutPolicy(max_failures_merchant=2, max_failures_address=50, window_s=60,
                           lockout_s=300)  # fmt: skip

    async def go() -> None:
        db = OrderStore.sqlite(state / "switch.db", durable=False)
        guard = LoginGuard(db, policy)
        try:
            await guard.succeeded("M1", "10.0.0.1", 0)  # the merchant's own server logged in
            await guard.failed("M1", "10.6.6.6", 1)
            await guard.failed("M1", "10.6.6.7", 2)  # distributed guessing: the id is locked
            with pytest.raises(Locked):
                await guard.check("M1", "10.6.6.8", 3)
            await guard.check("M1", "10.0.0.1", 3)  # the merchant's known address is not held
            await guard.check("M1", "10.6.6.8", 302)  # lock over
            # failures spread beyond the window do not add up
            await guard.failed("M2", "10.6.6.6", 400)
            await guard.failed("M2", "10.6.6.6", 461)
            await guard.check("M2", "10.6.6.6", 462)
            # a guard of another process (a restart, or another node) sees the same counts
            again = LoginGuard(db, policy)
            await guard.failed("M3", "10.6.6.6", 470)
            await again.failed("M3", "10.6.6.9", 471)
            with pytest.raises(Locked):
                await again.check("M3", "10.7.7.7", 473)
            with pytest.raises(Locked):
                await guard.check("M3", "10.7.7.7", 473)
            # rows whose window and lock are over are pruned; a lock in force is kept
            for n in range(20):
                await guard.failed(f"junk-{n}", "10.6.6.9", 472)
            await again.failed("junk-x", "10.6.6.9", 600)  # junk windows over, M3 locked
            ids = await db.execute(
                "SELECT subject FROM gateway_login_failures WHERE scope = 'id' ORDER BY subject",
                (),
            )
            assert ids == [("M3",), ("junk-x",)]
            with pytest.raises(Locked):
                await again.check("M3", "10.7.7.7", 600)
        finally:
            db.close()

    asyncio.run(asyncio.wait_for(go(), 30))


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database (empty: the first core seeds the demo data)."""
    db = pg_server.create_database(pg_server.migrated())
    yield pg_server.url(db)
    pg_server.drop_database(db)


def test_failures_counted_at_once_by_two_nodes_all_count(pg_url: str) -> None:
    """Two nodes' guards count failures of one id at the same moment (each on its own
    connection and thread): the store's upsert adds every one, none is lost to a race."""
    policy = LockoutPolicy(max_failures_merchant=1000, max_failures_address=1000)

    async def go() -> None:
        node = SimpleNamespace(url=pg_url, durable=False)
        dbs = [OrderStore.for_store(node), OrderStore.for_store(node)]
        guards = [LoginGuard(db, policy) for db in dbs]
        try:
            await asyncio.gather(*(g.failed("M1", f"10.0.0.{i}", T0) for i in range(40)
                                   for g in guards))  # fmt: skip
            rows = await dbs[0].execute(
                "SELECT failures FROM gateway_login_failures WHERE scope = 'id'", ()
            )
            assert rows == [(80,)]
        finally:
            for db in dbs:
                db.close()

    asyncio.run(asyncio.wait_for(go(), 60))


def test_two_gateways_on_one_postgresql_share_the_failure_count(state: Path, pg_url: str) -> None:
    """Two nodes' gateways over one PostgreSQL: failures through either count together, a
    lock taken on one holds on the other, and a gateway started afterwards (a restart)
    still sees it."""
    clock = ManualClock(T0)
    config = GatewayConfig(lockout=POLICY, sweep_s=0)
    denied = {"ErrorCode": "5", "ErrorMessage": "userName/password: access denied"}
    user = MERCHANT.merchant_id

    async def node() -> tuple[SwitchCore, Gateway]:
        core = await SwitchCore.open(
            state, durable=False, clock=clock, store_spec=pg_url, shared=True
        )
        return core, await start_gateway(core, "127.0.0.1", 0, config=config)

    async def call(gateway: Gateway, password: str) -> dict[str, object]:
        params = {"userName": user, "password": password, "orderId": "A" * 20}
        base = f"http://127.0.0.1:{gateway.port}"
        return await asyncio.to_thread(rest, base, "getOrderStatus.do", params)

    async def go() -> None:
        nodes = [await node(), await node()]
        try:
            a, b = nodes[0][1], nodes[1][1]
            for n, gateway in enumerate([a, b]):  # 2 of the 3 allowed failures, one per node
                assert await call(gateway, f"guess-{n}") == denied
            assert await call(b, "guess-2") == denied  # the third: locked on every node
            for gateway in (a, b):
                locked = await call(gateway, MERCHANT.api_key)
                assert "locked" in str(locked["ErrorMessage"]), locked
            nodes.append(await node())  # started after the lock: it holds there too
            assert "locked" in str((await call(nodes[2][1], MERCHANT.api_key))["ErrorMessage"])
            clock.advance(900)
            for _, gateway in nodes:
                assert (await call(gateway, MERCHANT.api_key))["ErrorCode"] == "6"
        finally:
            for core, gateway in nodes:
                await gateway.close()
                await core.close()

    asyncio.run(asyncio.wait_for(go(), 60))


def _register(h: GatewayHarness, number: str, **extra: str) -> dict[str, object]:
    params = {**CREDENTIALS, "orderNumber": number, "amount": "1000", "returnUrl": h.return_url,
              "failUrl": h.fail_url, **extra}  # fmt: skip
    return rest(h.base, "register.do", params, post=True)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("amount", "0", "amount: must be positive"),
        ("amount", "-5", "amount: must be positive"),
        ("amount", "12.50", "amount: must be an integer number of centimes"),
        ("amount", "1e3", "amount: must be an integer number of centimes"),
        ("amount", "\u0661\u0662", "amount: must be an integer number of centimes"),
        ("amount", "9223372036854775808", "amount: at most 1000000000000"),  # > int64
        ("amount", "9" * 40, "amount: at most 1000000000000"),
        ("orderNumber", "N" * 33, "orderNumber: at most 32 printable characters"),
        ("orderNumber", "N-\x07", "orderNumber: at most 32 printable characters"),
        ("orderNumber", "N-\u202e1", "orderNumber: at most 32 printable characters"),
        ("returnUrl", "javascript:alert(1)", "returnUrl: an absolute http(s) URL"),
        ("returnUrl", "data:text/html,<h1>x</h1>", "returnUrl: an absolute http(s) URL"),
        ("returnUrl", "//evil.example/ok", "returnUrl: an absolute http(s) URL"),
        ("returnUrl", "/relative/ok", "returnUrl: an absolute http(s) URL"),
        ("returnUrl", "https://evil.example\\@shop.example/", "returnUrl: an absolute http"),
        ("returnUrl", "https://shop.example/ok x", "returnUrl: an absolute http(s) URL"),
        ("returnUrl", "https://shop.example/\r\nSet-Cookie: a=b", "returnUrl: an absolute"),
        ("returnUrl", "https://shop.example@evil.example/", "returnUrl: no user name"),
        ("returnUrl", "https://shop.example;script-src/ok", "returnUrl: a host name"),
        ("returnUrl", "https://shop.example:0/ok", "returnUrl: a host name"),
        ("failUrl", "javascript:alert(1)", "failUrl: an absolute http(s) URL"),
        ("failUrl", "ftp://shop.example/fail", "failUrl: an absolute http(s) URL"),
    ],
)
def test_register_refuses_bad_parameters_naming_them(
    h: GatewayHarness, field: str, value: str, says: str
) -> None:
    got = _register(h, "BAD-1", **{field: value})
    assert got["errorCode"] == "4" and str(got["errorMessage"]).startswith(says), got
    assert h.query("SELECT COUNT(*) FROM gateway_orders") == [(0,)]


def test_language_falls_back_to_french_and_accepts_regions(h: GatewayHarness) -> None:
    for n, (given, page_lang) in enumerate(
        [("ru", "fr"), ("fr-DZ", "fr"), ("ar_DZ", "ar"), ("En", "en"), ("", "fr")]
    ):
        got = _register(h, f"LANG-{n}", language=given)
        assert got["errorCode"] == "0", got
        assert f"/payment_{page_lang}.html?mdOrder=" in str(got["formUrl"])


def test_merchant_text_is_escaped_on_the_page(h: GatewayHarness) -> None:
    evil = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'&"
    got = _register(h, "<b>N</b>", description=evil)
    body = page(str(got["formUrl"]), cookies=http.cookiejar.CookieJar()).body
    assert "<img" not in body and "<script" not in body and "<b>N" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;" in body
    assert "&#34;&#39;&amp;" in body and "&lt;b&gt;N&lt;/b&gt;" in body


def _card_form(csrf: str, order_id: str, card: demo.DemoCard) -> dict[str, str]:
    return {"csrf": csrf, "mdOrder": order_id, "action": "card", "pan": card.pan,
            "expiry": expiry_mm_yy(card), "cvv2": cvv2(card)}  # fmt: skip


def test_double_submits_send_one_code_and_pay_once(h: GatewayHarness) -> None:
    jar = http.cookiejar.CookieJar()
    got = _register(h, "DBL-1")
    url, order_id = str(got["formUrl"]), str(got["orderId"])
    m = CSRF.search(page(url, cookies=jar).body)
    assert m is not None
    card = _card_form(m.group(1), order_id, CARD)
    sms = len(h.sms_texts())
    first, second = page(url, card, cookies=jar), page(url, card, cookies=jar)
    assert first.status == second.status == 303 and first.location == second.location
    assert len(h.sms_texts()) == sms + 1  # the double click sent one code
    code = {"csrf": m.group(1), "mdOrder": order_id, "action": "code", "code": h.last_code()}
    first, second = page(url, code, cookies=jar), page(url, code, cookies=jar)
    # both clicks land on the shop (the second sees the order paid), paid once
    assert first.status == second.status == 303
    assert first.location == second.location and first.location.startswith(h.return_url)
    sales = h.query("SELECT COUNT(*) FROM journal WHERE txn_type = 'purchase' AND merchant_id = ?",
                    (MERCHANT.merchant_id,))  # fmt: skip
    assert sales == [(1,)]
    assert (
        rest(h.base, "getOrderStatus.do", {**CREDENTIALS, "orderId": order_id})["OrderStatus"] == 2
    )


def test_an_order_sends_at_most_max_tries_codes(h: GatewayHarness) -> None:
    """Typing card after card (a list of stolen numbers to test) costs SMS and tells which
    are ours: after 3 codes an order's card step spends a try instead, then declines."""
    jar = http.cookiejar.CookieJar()
    got = _register(h, "SENDS-1")
    url, order_id = str(got["formUrl"]), str(got["orderId"])
    m = CSRF.search(page(url, cookies=jar).body)
    assert m is not None
    sms = len(h.sms_texts())
    for card in (demo.CARDS[0], demo.CARDS[1], demo.CARDS[7]):
        assert page(url, _card_form(m.group(1), order_id, card), cookies=jar).status == 303
    assert len(h.sms_texts()) == sms + 3
    refused = page(url, _card_form(m.group(1), order_id, demo.CARDS[0]), cookies=jar)
    assert refused.status == 422 and "Trop de codes" in refused.body
    assert len(h.sms_texts()) == sms + 3 and h.s.gateway.service.code_sends.count(order_id) == 3
    page(url, _card_form(m.group(1), order_id, demo.CARDS[1]), cookies=jar)
    last = page(url, _card_form(m.group(1), order_id, demo.CARDS[7]), cookies=jar)
    assert last.status == 303 and last.location.startswith(h.fail_url)
    s = rest(h.base, "getOrderStatus.do", {**CREDENTIALS, "orderId": order_id})
    assert s["OrderStatus"] == 6 and s["SvfeResponse"] == "65"
    assert len(h.s.gateway.service.code_sends) == 0  # forgotten with the decided order


def test_a_store_failure_on_the_page_is_a_503_not_a_half_step(
    h: GatewayHarness, state: Path
) -> None:
    jar = http.cookiejar.CookieJar()
    got = _register(h, "DOWN-1")
    url, order_id = str(got["formUrl"]), str(got["orderId"])
    m = CSRF.search(page(url, cookies=jar).body)
    assert m is not None
    db = sqlite3.connect(state / "switch.db", isolation_level=None)
    try:
        db.execute(
            "CREATE TRIGGER no_orders BEFORE UPDATE ON gateway_orders "
            "BEGIN SELECT RAISE(ABORT, 'injected'); END"
        )
        cancel = {"csrf": m.group(1), "mdOrder": order_id, "action": "cancel"}
        down = page(url, cancel, cookies=jar)
        assert down.status == 503 and "momentanément indisponible" in down.body
        db.execute("DROP TRIGGER no_orders")
    finally:
        db.close()
    back = page(url, cancel, cookies=jar)  # the cardholder tries again: it works
    assert back.status == 303 and back.location.startswith(h.fail_url)


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(
    state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "switch.gateway")
    config = GatewayConfig(lockout=POLICY, trusted_proxies=frozenset({"127.0.0.1"}))
    other = {"userName": OTHER.merchant_id, "password": OTHER.api_key, "orderId": "A" * 20}

    with GatewayHarness(state, ManualClock(T0), config) as gw:

        def via(client: str, params: dict[str, str]) -> dict[str, object]:
            headers = {"X-Forwarded-For": client}
            return rest(gw.base, "getOrderStatus.do", params, headers=headers)

        for n in range(8):  # one client behind the proxy guesses: that client is locked
            assert via("203.0.113.7", {"userName": f"spray-{n}", "password": "x",
                                       "orderId": "A" * 20})["ErrorCode"] == "5"  # fmt: skip
        assert "locked" in str(via("203.0.113.7", other)["ErrorMessage"])
        # a forged first entry does not help: the proxy's (last) entry is the one counted
        assert "locked" in str(via("198.51.100.9, 203.0.113.7", other)["ErrorMessage"])
        # another shop behind the same proxy is not locked out with it
        assert via("198.51.100.9", other)["ErrorCode"] == "6"
        assert via("203.0.113.7, 198.51.100.9", other)["ErrorCode"] == "6"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "address 203.0.113.7 locked for 900 s after 8 failures" in text


def test_forwarded_for_is_ignored_from_an_untrusted_peer(h: GatewayHarness) -> None:
    for n in range(8):  # each with another forged address: all are 127.0.0.1's failures
        params = {"userName": f"spray-{n}", "password": "x", "orderId": "A" * 20}
        rest(h.base, "getOrderStatus.do", params, headers={"X-Forwarded-For": f"10.0.0.{n}"})
    locked = h.register("XFF-1")
    assert locked["errorCode"] == "5" and "locked" in str(locked["errorMessage"])


def test_trusted_proxy_option_takes_ip_addresses_only() -> None:
    parser = argparse.ArgumentParser()
    gateway_options.add_arguments(parser)
    args = parser.parse_args(["--gateway-trusted-proxy", "10.0.0.1",
                              "--gateway-trusted-proxy", "::1"])  # fmt: skip
    assert args.gateway_trusted_proxy == ["10.0.0.1", "::1"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--gateway-trusted-proxy", "proxy.example"])
