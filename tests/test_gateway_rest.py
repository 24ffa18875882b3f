"""The SATIM-compatible REST gateway, driven as SATIM's client libraries drive it: plain HTTP
GETs with a query and form-encoded POSTs, against a real core and gateway on a free port (a
``ManualClock`` for the session expiry), and once against a real ``switch run`` over TLS.

The payments behind the orders are made through the hosted page with plain form posts here
(the browser tests are in ``test_gateway_page.py``), with the code read from the SMS outbox.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import re
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switch.api.mapping import base_request
from switch.core import demo
from switch.core.model import TxnType
from switch.core.testing import ManualClock
from switch.gateway.orders import ORDER_ID_ALPHABET, ORDER_ID_LENGTH
from switch.gateway.service import GatewayConfig
from switch.merchant_notify import json_body, payment_order
from switch.merchant_notify.cli import main as notify_cli
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
    pay_over_http,
    rest,
)
from tests.switch_proc import stop, wait_ready
from tests.test_api_tls import make_pki

CARD = demo.CARDS[0]  # active, 150,000.00 DZD
RICH = demo.CARDS[7]  # active, 1,000,000.00 DZD
POOR = demo.CARDS[1]  # active, 5,000.00 DZD


@pytest.fixture
def h(state: Path) -> Iterator[GatewayHarness]:
    with GatewayHarness(state, ManualClock(T0), GatewayConfig(max_tries=3)) as harness:
        yield harness


def status(h: GatewayHarness, order_id: str, *, post: bool = False) -> dict[str, object]:
    return rest(h.base, "getOrderStatus.do", {**CREDENTIALS, "orderId": order_id}, post=post)


def balance(h: GatewayHarness, card: demo.DemoCard) -> int:
    return int(
        h.query("SELECT balance - held FROM accounts WHERE number = ?", (card.account,))[0][0]
    )


def test_register_get_and_post_answer_satim_fields(h: GatewayHarness) -> None:
    got = h.register(
        "CMD-1001", 250_000, language="en", description="2 books",
        jsonParams='{"force_terminal_id": "E010901571", "udf1": "ref-77", "udf5": 5}',
    )  # fmt: skip
    assert got["errorCode"] == "0", got
    order_id = str(got["orderId"])
    assert len(order_id) == ORDER_ID_LENGTH and set(order_id) <= set(ORDER_ID_ALPHABET)
    assert got["formUrl"] == (
        f"{h.base}/payment/merchants/{MERCHANT.merchant_id}/payment_en.html?mdOrder={order_id}"
    )
    # POST form-encoded, as the PHP clients do; capitalized fields as SATIM spells them
    s = status(h, order_id, post=True)
    assert s["ErrorCode"] == "0" and s["OrderStatus"] == 0 and s["OrderNumber"] == "CMD-1001"
    assert s["Amount"] == 250_000 and s["depositAmount"] == 0 and s["currency"] == "012"
    assert s["params"] == {
        "force_terminal_id": "E010901571", "udf1": "ref-77", "udf5": "5",
        "respCode": "", "respCode_desc": "",
    }  # fmt: skip
    ext = rest(h.base, "getOrderStatusExtended.do", {**CREDENTIALS, "orderNumber": "CMD-1001"})
    assert ext["errorCode"] == "0" and ext["orderStatus"] == 0
    assert ext["attributes"] == [{"name": "mdOrder", "value": order_id}]
    assert ext["orderDescription"] == "2 books" and ext["date"] == round(T0 * 1000)
    assert {"name": "udf1", "value": "ref-77"} in ext["merchantOrderParams"]
    # a second order gets an unrelated id: no sequence to read the volume from
    other = h.register("CMD-1002")
    assert other["orderId"] != order_id
    assert other["formUrl"].endswith(f"payment_fr.html?mdOrder={other['orderId']}")  # FR default


def test_error_codes(h: GatewayHarness) -> None:
    assert h.register("DUP-1")["errorCode"] == "0"
    dup = h.register("DUP-1", 100)
    assert dup["errorCode"] == "1" and "orderNumber" in dup["errorMessage"]
    # the other merchant may use the same number: unique per merchant
    mine = {"userName": OTHER.merchant_id, "password": OTHER.api_key, "orderNumber": "DUP-1",
            "amount": "100", "returnUrl": h.return_url}  # fmt: skip
    assert rest(h.base, "register.do", mine)["errorCode"] == "0"
    assert h.register("CUR-1", currency="840")["errorCode"] == "3"
    assert h.register("CUR-2", currency="DZD")["errorCode"] == "3"
    no_amount = rest(h.base, "register.do", {**CREDENTIALS, "orderNumber": "A-1",
                                             "returnUrl": h.return_url})  # fmt: skip
    assert no_amount == {"errorCode": "4", "errorMessage": "amount: required"}
    assert h.register("A-2", amount=0)["errorCode"] == "4"
    assert h.register("A-3", returnUrl="javascript:alert(1)")["errorCode"] == "4"
    assert h.register("A-4", jsonParams="[1, 2]")["errorCode"] == "4"
    bad = rest(h.base, "register.do", {**CREDENTIALS, "password": "wrong", "orderNumber": "B-1",
                                       "amount": "100", "returnUrl": h.return_url})  # fmt: skip
    assert bad["errorCode"] == "5"
    unknown = status(h, "A" * ORDER_ID_LENGTH)
    assert unknown["ErrorCode"] == "6" and "orderId" in str(unknown["ErrorMessage"])
    # another merchant's order is unknown to you
    theirs = rest(h.base, "register.do", {**mine, "orderNumber": "THEIRS"})
    assert status(h, str(theirs["orderId"]))["ErrorCode"] == "6"
    assert h.query("SELECT COUNT(*) FROM gateway_orders")[0][0] == 3


def test_sale_paid_on_the_page_then_refunds(
    h: GatewayHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = balance(h, CARD)
    got = h.register("SALE-1", 250_000, jsonParams='{"udf1": "x"}')
    done = pay_over_http(h, str(got["formUrl"]), CARD)
    assert done.status == 303
    order_id = str(got["orderId"])
    back = urllib.parse.urlsplit(done.location)
    assert done.location.startswith(h.return_url.split("?")[0])
    assert urllib.parse.parse_qs(back.query) == {"cart": ["7"], "orderId": [order_id]}
    s = status(h, order_id)
    # SATIM's newer clients confirm on public/acknowledgeTransaction.do with mdOrder
    ack = {**CREDENTIALS, "mdOrder": order_id, "language": "FR"}
    assert rest(h.base, "public/acknowledgeTransaction.do", ack, post=True) == s
    assert rest(h.base, "confirmOrder.do", ack) == s
    assert s["OrderStatus"] == 2 and s["actionCode"] == 0 and s["SvfeResponse"] == "00"
    assert s["Pan"] == f"{CARD.pan[:6]}**{CARD.pan[-4:]}" and s["expiration"] == f"20{CARD.expiry}"
    assert s["depositAmount"] == 250_000 and len(str(s["approvalCode"])) == 6
    assert s["actionCodeDescription"] == "Votre paiement a été accepté."
    assert balance(h, CARD) == before - 250_000
    # a partial refund, one too many, then the rest
    r = rest(
        h.base, "refund.do", {**CREDENTIALS, "orderId": order_id, "amount": "50000"}, post=True
    )
    assert r == {"errorCode": "0", "errorMessage": "Success"}
    assert status(h, order_id)["OrderStatus"] == 4 and balance(h, CARD) == before - 200_000
    euro = {**CREDENTIALS, "orderId": order_id, "amount": "100", "currency": "978"}
    assert rest(h.base, "refund.do", euro)["errorCode"] == "3"
    over = rest(h.base, "refund.do", {**CREDENTIALS, "orderId": order_id, "amount": "200001"})
    assert over["errorCode"] == "4" and "amount" in over["errorMessage"]
    assert (
        rest(h.base, "refund.do", {**CREDENTIALS, "orderId": order_id, "amount": "200000"})[
            "errorCode"
        ]
        == "0"
    )
    assert balance(h, CARD) == before
    ext = rest(h.base, "getOrderStatusExtended.do", {**CREDENTIALS, "orderId": order_id})
    assert ext["paymentAmountInfo"] == {
        "paymentState": "REFUNDED", "approvedAmount": 250_000,
        "depositedAmount": 250_000, "refundedAmount": 250_000,
    }  # fmt: skip
    # a refunded order cannot be reversed; the state is named
    rev = rest(h.base, "reverse.do", {**CREDENTIALS, "orderId": order_id})
    assert rev["errorCode"] == "7" and "state" in rev["errorMessage"]
    # nothing of the card is left in memory, no order lock is kept
    assert order_id not in h.s.gateway.page.checkouts and len(h.s.gateway.service.locks) == 0
    # the page of a decided order offers only the way back
    again = page(str(got["formUrl"]))
    assert again.status == 200 and 'name="pan"' not in again.body and "orderId=" in again.body
    # no card data in any log line, nor in the order rows, nor in the database files
    secrets = (CARD.pan, demo.cvv2(CARD.pan, CARD.expiry))
    assert not [r for r in caplog.records if any(x in r.getMessage() for x in secrets)]
    assert CARD.pan not in str(h.query("SELECT * FROM gateway_orders"))
    for f in h.state.glob("switch.db*"):
        assert CARD.pan.encode() not in f.read_bytes(), f


def test_preauth_deposit_and_reverse(h: GatewayHarness) -> None:
    before = balance(h, RICH)
    a = h.register("PRE-1", 300_000, preauth=True)
    assert pay_over_http(h, str(a["formUrl"]), RICH).status == 303
    a_id = str(a["orderId"])
    assert status(h, a_id)["OrderStatus"] == 1 and balance(h, RICH) == before - 300_000
    # deposit less than was held: the rest of the hold is released
    d = rest(h.base, "deposit.do", {**CREDENTIALS, "orderId": a_id, "amount": "120000"})
    assert d["errorCode"] == "0", d
    s = status(h, a_id)
    assert s["OrderStatus"] == 2 and s["depositAmount"] == 120_000
    assert balance(h, RICH) == before - 120_000
    twice = rest(h.base, "deposit.do", {**CREDENTIALS, "orderId": a_id, "amount": "0"})
    assert twice["errorCode"] == "7"
    # a second pre-authorization, reversed: the hold goes back to the cardholder
    b = h.register("PRE-2", 50_000, preauth=True)
    h.clock.advance(300)  # past the verification window of the first code, same session
    assert pay_over_http(h, str(b["formUrl"]), RICH).status == 303
    assert balance(h, RICH) == before - 170_000
    r = rest(h.base, "reverse.do", {**CREDENTIALS, "orderId": str(b["orderId"])}, post=True)
    assert r["errorCode"] == "0", r
    assert status(h, str(b["orderId"]))["OrderStatus"] == 3
    assert balance(h, RICH) == before - 120_000
    # a registered order cannot be deposited
    c = h.register("PRE-3", 1_000, preauth=True)
    assert (
        rest(h.base, "deposit.do", {**CREDENTIALS, "orderId": str(c["orderId"])})["errorCode"]
        == "7"
    )


def test_declines_tries_and_expiry(h: GatewayHarness) -> None:
    # insufficient funds: declined at once, the merchant's failUrl, OrderStatus 6
    poor = h.register("POOR-1", 900_000)
    done = pay_over_http(h, str(poor["formUrl"]), POOR)
    assert done.status == 303 and done.location.startswith(h.fail_url)
    s = status(h, str(poor["orderId"]))
    assert s["OrderStatus"] == 6 and s["SvfeResponse"] == "51" and s["actionCode"] == 116
    # three wrong codes: the order's tries are spent
    order = h.register("TRY-1", 1_000)
    url = str(order["formUrl"])
    first = pay_over_http(h, url, CARD, code="000000")
    assert (
        first.status == 422
        and "Code incorrect" in first.body
        and "Essais restants : 2" in first.body
    )
    csrf = first.body.split('name="csrf" value="')[1].split('"')[0]
    form = {"csrf": csrf, "mdOrder": str(order["orderId"]), "action": "code", "code": "000001"}
    assert page(url, form).status == 422
    last = page(url, {**form, "code": "000002"})
    assert last.status == 303 and last.location.startswith(h.fail_url)
    s = status(h, str(order["orderId"]))
    # the third wrong code also used up the card's own code tries (the product's otp_tries)
    assert s["OrderStatus"] == 6 and s["SvfeResponse"] == "75" and s["actionCode"] == 106
    # a wrong CSRF token is refused and spends nothing
    fresh = h.register("CSRF-1", 1_000)
    got = page(str(fresh["formUrl"]))
    bad = page(str(fresh["formUrl"]), {"csrf": "forged", "mdOrder": str(fresh["orderId"]),
                                       "action": "cancel"})  # fmt: skip
    assert got.status == 200 and bad.status == 403
    assert status(h, str(fresh["orderId"]))["OrderStatus"] == 0
    # the session expires on the core's clock: declined with actionCode -2007; an order
    # registered with sessionTimeoutSecs=1200 (BPC's parameter) lives on
    longer = h.register("LONG-1", 1_000, sessionTimeoutSecs="1200")
    assert h.register("LONG-2", 1_000, sessionTimeoutSecs="5")["errorCode"] == "4"
    h.clock.advance(601)
    s = status(h, str(fresh["orderId"]))
    assert s["OrderStatus"] == 6 and s["actionCode"] == -2007
    assert status(h, str(longer["orderId"]))["OrderStatus"] == 0
    h.clock.advance(600)
    assert status(h, str(longer["orderId"]))["OrderStatus"] == 6


def test_the_card_typed_in_one_browser_is_not_usable_from_another(h: GatewayHarness) -> None:
    got = h.register("TAB-1", 1_000)
    url, order_id = str(got["formUrl"]), str(got["orderId"])
    first = page(url)
    cookie = first.headers["Set-Cookie"]
    assert "gw_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    csrf = first.body.split('name="csrf" value="')[1].split('"')[0]
    card = {"csrf": csrf, "mdOrder": order_id, "action": "card", "pan": CARD.pan,
            "expiry": f"{CARD.expiry[2:]}/{CARD.expiry[:2]}",
            "cvv2": demo.cvv2(CARD.pan, CARD.expiry)}  # fmt: skip
    assert page(url, card).status == 303
    assert 'name="code"' in page(url).body  # this browser: the code step
    # someone else with the link (no cookie, or another one) starts from the card again
    other = http.cookiejar.CookieJar()
    theirs = page(url, cookies=other)
    assert 'name="pan"' in theirs.body and 'name="code"' not in theirs.body
    stolen = page(url, {"csrf": csrf, "mdOrder": order_id, "action": "code",
                        "code": h.last_code()}, cookies=other)  # fmt: skip
    assert stolen.status == 403
    # and the first browser's card was dropped with its session: nothing was paid
    assert 'name="pan"' in page(url).body
    assert status(h, order_id)["OrderStatus"] == 0


def test_security_headers_and_no_card_data_in_urls(h: GatewayHarness) -> None:
    got = h.register("HDR-1", 1_000)
    answer = page(str(got["formUrl"]))
    csp = answer.headers["Content-Security-Policy"]
    assert (
        "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    )
    assert f"form-action 'self' http://127.0.0.1:{h.s.shop_port}" in csp
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Server"] == "switch-gateway"  # no software versions
    assert "<script" not in answer.body and 'method="post"' in answer.body
    bad_card = page(str(got["formUrl"]), {
        "csrf": answer.body.split('name="csrf" value="')[1].split('"')[0],
        "mdOrder": str(got["orderId"]), "action": "card", "pan": "6280580000000018",
        "expiry": "13/30", "cvv2": "12",
    })  # fmt: skip
    assert bad_card.status == 422
    assert "6280580000000018" not in bad_card.body  # a refused form comes back empty
    for message in ("numéro de carte", "date d&#39;expiration", "code de sécurité"):
        assert message in bad_card.body
    assert status(h, str(got["orderId"]))["OrderStatus"] == 0  # no try spent on a typo
    assert (
        page(f"{h.base}/payment/merchants/{MERCHANT.merchant_id}/payment_fr.html?mdOrder=x").status
        == 404
    )


def test_merchant_notified_of_paid_refunded_and_declined_orders(
    state: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s" * 40 + "\n")
    args = ["set-callback", "--state-dir", str(state), MERCHANT.merchant_id,
            "https://merchant.example/hook", "--secret-file", str(secret)]  # fmt: skip
    assert notify_cli(args) == 0
    with GatewayHarness(state, ManualClock(T0)) as h:
        got = h.register("EVT-1", 120_000, jsonParams='{"udf1": "cart-9"}')
        order_id = str(got["orderId"])
        # a wrong code first: the cardholder tries again, the merchant hears only the outcome
        first = pay_over_http(h, str(got["formUrl"]), CARD, code="000000")
        assert first.status == 422
        csrf = first.body.split('name="csrf" value="')[1].split('"')[0]
        done = page(str(got["formUrl"]), {"csrf": csrf, "mdOrder": order_id, "action": "code",
                                          "code": h.last_code()})  # fmt: skip
        assert done.status == 303 and done.location.startswith(h.return_url.split("?")[0])
        assert (
            rest(h.base, "refund.do", {**CREDENTIALS, "orderId": order_id, "amount": "20000"})[
                "errorCode"
            ]
            == "0"
        )
        lapsed = h.register("EVT-2", 5_000)
        h.clock.advance(601)
        assert status(h, str(lapsed["orderId"]))["OrderStatus"] == 6
        rows = h.query("SELECT event_type, body FROM merchant_events ORDER BY created_at, rowid")
    events = [(t, json.loads(json_body(b))) for t, b in rows]
    assert [t for t, _ in events] == ["payment.paid", "payment.refunded", "payment.declined"]
    paid, refunded, declined = (b for _, b in events)
    assert paid["order_id"] == order_id and paid["order_reference"] == "EVT-1"
    assert paid["metadata"] == {"udf1": "cart-9"} and paid["amount"] == 120_000
    assert paid["masked_pan"].startswith(CARD.pan[:6]) and CARD.pan not in json.dumps(paid)
    assert refunded["order_id"] == order_id and refunded["amount"] == 20_000
    assert refunded["original_payment_id"] == paid["payment_id"]
    assert refunded["status"] == "partially_refunded"
    assert declined["order_id"] == str(lapsed["orderId"]) and declined["status"] == "declined"
    assert declined["order_reference"] == "EVT-2" and declined["payment_id"] == ""


def test_an_approval_the_order_row_missed_is_recovered(h: GatewayHarness) -> None:
    """The process stops after the core committed the payment and before the order row said
    so: the next status call finds the approval under the attempt's key in the journal."""
    got = h.register("REC-1", 30_000)
    order_id = str(got["orderId"])
    svc = h.s.gateway.service
    merchant = h.s.core.merchant(MERCHANT.merchant_id)
    assert merchant is not None

    async def attempt_counted() -> None:  # what pay() writes before it asks the core
        order = await svc.orders.get(order_id)
        assert order is not None
        order.tries = 1
        await svc.orders.save(order)
        await h.s.core.start_otp(CARD.pan, merchant.name, 30_000)

    async def approved_by_the_core(code: str) -> str:
        term = h.s.core.terminal(merchant.terminal_id)
        assert term is not None
        req = base_request(
            merchant, term.acquirer_id, TxnType.PURCHASE, f"gw:{order_id}:1", 30_000, 12,
            pan_=CARD.pan, expiry=CARD.expiry, cvv2=demo.cvv2(CARD.pan, CARD.expiry), otp=code,
        )  # fmt: skip
        r = await h.s.core.authorize(req)
        assert r.approved, r.message
        return r.auth_code or ""

    h.call(attempt_counted())
    auth_code = h.call(approved_by_the_core(h.last_code()))
    s = status(h, order_id)
    assert s["OrderStatus"] == 2 and s["approvalCode"] == auth_code and s["depositAmount"] == 30_000
    assert s["Pan"] == f"{CARD.pan[:6]}**{CARD.pan[-4:]}"
    r = rest(h.base, "refund.do", {**CREDENTIALS, "orderId": order_id, "amount": "30000"})
    assert r["errorCode"] == "0", r


def test_a_deposit_the_order_row_missed_is_not_taken_twice(h: GatewayHarness) -> None:
    """The core captured, the order row still says pre-authorized (a stop in between): the
    merchant's retry of deposit.do is the same request for the core, answered once."""
    before = balance(h, RICH)
    got = h.register("DEP-1", 80_000, preauth=True)
    order_id = str(got["orderId"])
    assert pay_over_http(h, str(got["formUrl"]), RICH).status == 303
    svc = h.s.gateway.service
    merchant = h.s.core.merchant(MERCHANT.merchant_id)
    assert merchant is not None

    async def captured_behind_the_order() -> None:
        order = await svc.orders.get(order_id)
        term = h.s.core.terminal(merchant.terminal_id)
        assert order is not None and term is not None
        req = base_request(
            merchant, term.acquirer_id, TxnType.COMPLETION, f"gw:{order_id}:deposit", 80_000,
            12, original=order.payment_id,
        )  # fmt: skip
        assert (await h.s.core.authorize(req)).approved

    h.call(captured_behind_the_order())
    assert status(h, order_id)["OrderStatus"] == 1 and balance(h, RICH) == before - 80_000
    again = rest(h.base, "deposit.do", {**CREDENTIALS, "orderId": order_id, "amount": "80000"})
    assert again["errorCode"] == "0", again
    assert status(h, order_id)["OrderStatus"] == 2 and balance(h, RICH) == before - 80_000
    other = rest(h.base, "refund.do", {**CREDENTIALS, "orderId": order_id, "amount": "1000"})
    assert other["errorCode"] == "0" and balance(h, RICH) == before - 79_000
    ledger = h.query(
        "SELECT COUNT(*) FROM journal WHERE txn_type = 'completion' AND response_code = '00'"
    )
    assert ledger == [(1,)]


def test_orders_on_each_store_backend(store_backend: str, tmp_path: Path) -> None:
    """gateway_orders through the SQLite file or, with SWITCH_STORE, the PostgreSQL store."""
    with GatewayHarness(tmp_path / "state", ManualClock(T0)) as h:
        assert hasattr(h.s.core.store, "url") == (store_backend == "postgresql")
        got = h.register("BK-1", 40_000)
        assert h.register("BK-1", 40_000)["errorCode"] == "1"  # the unique index, both ways
        assert pay_over_http(h, str(got["formUrl"]), RICH).status == 303
        order_id = str(got["orderId"])
        assert status(h, order_id)["OrderStatus"] == 2
        assert rest(h.base, "reverse.do", {**CREDENTIALS, "orderId": order_id})["errorCode"] == "0"
        assert status(h, order_id)["OrderStatus"] == 3
        assert h.query("SELECT status FROM gateway_orders WHERE order_id = ?", (order_id,)) == [
            (3,)
        ]


def test_switch_run_serves_the_gateway_over_tls(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    out = tmp_path / "out.txt"
    cmd = [
        sys.executable, "-m", "switch.cli", "run", "--state-dir", str(tmp_path / "state"),
        "--iso-port", "0", "--grpc-port", "0", "--http-port", "-1", "--sms-worker", "off",
        "--no-fsync", "--gateway-port", "0", "--gateway-public-url", "https://pay.example",
        "--gateway-tls-cert", str(pki / "server.crt"), "--gateway-tls-key", str(pki / "server.key"),
    ]  # fmt: skip
    with out.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, out, 60)
        # port 0 and the one it says it bound: a port picked free beforehand can be taken
        line = r"online gateway \(SATIM-compatible\) on https://127\.0\.0\.1:(\d+)/payment/rest/"
        m = re.search(line, out.read_text())
        assert m is not None, out.read_text()
        port = int(m.group(1))
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        base = f"https://127.0.0.1:{port}"
        params = {**CREDENTIALS, "orderNumber": "RUN-1", "amount": "150000", "currency": "012",
                  "returnUrl": "https://shop.example/ok", "language": "AR"}  # fmt: skip
        got = rest(base, "register.do", params, post=True, context=context)
        assert got["errorCode"] == "0" and str(got["formUrl"]).startswith(  # behind a proxy
            f"https://pay.example/payment/merchants/{MERCHANT.merchant_id}/payment_ar.html?mdOrder="
        )
        s = rest(base, "getOrderStatus.do", {**CREDENTIALS, "orderId": str(got["orderId"])},
                 context=context)  # fmt: skip
        assert s["ErrorCode"] == "0" and s["OrderStatus"] == 0 and s["Amount"] == 150_000
        # the access log names the path (written once the answer is sent: polled), never the
        # query that carried the password
        deadline = time.monotonic() + 30
        while "GET /payment/rest/getOrderStatus.do 200" not in out.read_text():
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        assert MERCHANT.api_key not in out.read_text()
    finally:
        stop(proc)
    # a key without its certificate is refused before anything starts, naming the flag
    bad = subprocess.run(
        [*cmd[:-4], "--gateway-tls-key", str(pki / "server.key")], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0 and "--gateway-tls-key" in bad.stderr
    bad = subprocess.run(
        [*cmd, "--gateway-public-url", "ftp://pay.example/x"], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0 and "--gateway-public-url 'ftp://pay.example/x'" in bad.stderr


def _break_event_writes(state: Path, broken: bool) -> None:
    """Make every INSERT into merchant_events fail (or work again) in the real database: a
    trigger on SQLite, a trigger function on PostgreSQL (the store ``SWITCH_STORE`` names)."""
    url = os.environ.get("SWITCH_STORE", "")
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            if broken:
                conn.execute(
                    "CREATE FUNCTION fail_event() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'injected event write failure'; END $$"
                )
                conn.execute(
                    "CREATE TRIGGER fail_events BEFORE INSERT ON merchant_events "
                    "FOR EACH ROW EXECUTE FUNCTION fail_event()"
                )
            else:
                conn.execute("DROP TRIGGER fail_events ON merchant_events")
                conn.execute("DROP FUNCTION fail_event()")
        return
    db = sqlite3.connect(state / "switch.db", isolation_level=None)
    try:
        if broken:
            db.execute(
                "CREATE TRIGGER fail_events BEFORE INSERT ON merchant_events "
                "BEGIN SELECT RAISE(ABORT, 'injected event write failure'); END"
            )
        else:
            db.execute("DROP TRIGGER fail_events")
    finally:
        db.close()


def test_a_decline_and_its_notification_are_one_transaction(
    store_backend: str, tmp_path: Path
) -> None:
    """The order row and its decline event commit together: when the event cannot be
    written, the order stays as it was (ErrorCode 7, retry); once it can, both appear."""
    state = tmp_path / "state"
    secret = tmp_path / "secret.txt"
    secret.write_text("s" * 40 + "\n")
    with GatewayHarness(state, ManualClock(T0)) as h:
        args = ["set-callback", "--state-dir", str(state), MERCHANT.merchant_id,
                "https://merchant.example/hook", "--secret-file", str(secret)]  # fmt: skip
        assert notify_cli(args) == 0
        h.s.gateway.service.recorder.refresh()
        got = h.register("ATOM-1", 5_000)
        order_id = str(got["orderId"])

        def row() -> list[tuple[Any, ...]]:
            return h.query(
                "SELECT status, action_code, updated_at FROM gateway_orders WHERE order_id = ?",
                (order_id,),
            )

        def events() -> list[tuple[Any, ...]]:
            return h.query(
                "SELECT event_type, body FROM merchant_events WHERE merchant_id = ?",
                (MERCHANT.merchant_id,),
            )

        registered = row()
        h.clock.advance(601)  # the session is over: the next call declines the order
        _break_event_writes(state, True)
        failed = status(h, order_id)
        assert failed["ErrorCode"] == "7" and "retry" in str(failed["ErrorMessage"])
        assert row() == registered and events() == []  # neither the row nor the event
        _break_event_writes(state, False)
        s = status(h, order_id)
        assert s["OrderStatus"] == 6 and s["actionCode"] == -2007
        assert row()[0][:2] == (6, -2007)
        [(kind, body)] = events()
        assert kind == "payment.declined" and json.loads(body)["order_id"] == order_id
        assert status(h, order_id)["OrderStatus"] == 6 and len(events()) == 1  # once


def test_abandoned_orders_are_declined_and_notified_without_a_call(
    state: Path, tmp_path: Path
) -> None:
    """Nobody opens the page or asks for the status again: the sweeper declines the order
    when its session is over, and the merchant hears of it; after a restart too."""
    secret = tmp_path / "secret.txt"
    secret.write_text("s" * 40 + "\n")
    args = ["set-callback", "--state-dir", str(state), MERCHANT.merchant_id,
            "https://merchant.example/hook", "--secret-file", str(secret)]  # fmt: skip
    assert notify_cli(args) == 0
    quiet = GatewayConfig(sweep_s=0)  # the test calls the sweep itself

    def declined(h: GatewayHarness) -> list[str]:
        rows = h.query("SELECT body FROM merchant_events WHERE event_type = 'payment.declined'")
        return sorted(json.loads(b)["order_reference"] for (b,) in rows)

    with GatewayHarness(state, ManualClock(T0), quiet) as h:
        svc = h.s.gateway.service
        gone = h.register("GONE-1", 1_000)
        # the cardholder typed the card, got the code and left: the card waits in memory
        url = str(gone["formUrl"])
        m = CSRF.search(page(url).body)
        assert m is not None
        card = {"csrf": m.group(1), "mdOrder": str(gone["orderId"]), "action": "card",
                "pan": CARD.pan, "expiry": expiry_mm_yy(CARD), "cvv2": cvv2(CARD)}  # fmt: skip
        assert page(url, card).status == 303 and len(h.s.gateway.page.checkouts) == 1
        h.register("GONE-2", 1_000, sessionTimeoutSecs="1200")
        paid = h.register("PAID-1", 1_000)
        assert pay_over_http(h, str(paid["formUrl"]), CARD).status == 303
        h.register("GONE-3", 1_000)
        assert h.call(h.s.gateway.sweep_once()) == 0  # nothing is due yet
        h.clock.advance(601)
        assert h.call(h.s.gateway.sweep_once()) == 2 and declined(h) == ["GONE-1", "GONE-3"]
        assert not h.s.gateway.page.checkouts  # the typed card is forgotten with it
        assert h.call(svc.expire_due()) == 0  # once
    # a restart: the open order registered by the previous run is still watched
    with GatewayHarness(state, ManualClock(T0 + 1201), quiet) as h:
        assert h.call(h.s.gateway.service.expire_due()) == 1
        assert declined(h) == ["GONE-1", "GONE-2", "GONE-3"]


def test_a_final_decline_the_order_row_missed_is_recovered_and_notified(
    h: GatewayHarness, tmp_path: Path
) -> None:
    """The core journaled the last attempt's decline, the process stopped before the order
    row (and its notification) said so: the next call declines the order from the journal
    and notifies the merchant once, as the page would have."""
    secret = tmp_path / "secret.txt"
    secret.write_text("s" * 40 + "\n")
    args = ["set-callback", "--state-dir", str(h.state), MERCHANT.merchant_id,
            "https://merchant.example/hook", "--secret-file", str(secret)]  # fmt: skip
    assert notify_cli(args) == 0
    svc = h.s.gateway.service
    svc.recorder.refresh()
    got = h.register("RECD-1", 900_000)
    order_id = str(got["orderId"])
    merchant = h.s.core.merchant(MERCHANT.merchant_id)
    assert merchant is not None

    async def attempt_counted() -> None:  # what pay() writes before it asks the core
        order = await svc.orders.get(order_id)
        assert order is not None
        order.tries = 1
        await svc.orders.save(order)
        await h.s.core.start_otp(POOR.pan, merchant.name, 900_000)

    async def declined_by_the_core(code: str) -> None:  # as pay() asks, then stops
        order = await svc.orders.get(order_id)
        term = h.s.core.terminal(merchant.terminal_id)
        assert order is not None and term is not None
        req = base_request(
            merchant, term.acquirer_id, TxnType.PURCHASE, f"gw:{order_id}:1", 900_000, 12,
            pan_=POOR.pan, expiry=POOR.expiry, cvv2=demo.cvv2(POOR.pan, POOR.expiry), otp=code,
        )  # fmt: skip
        with payment_order(svc._payment_order(order, notify_decline=False, taken=0, refunded=0)):
            r = await h.s.core.authorize(req)
        assert r.response_code.value == "51"

    h.call(attempt_counted())
    h.call(declined_by_the_core(h.last_code()))
    assert h.query("SELECT COUNT(*) FROM merchant_events") == [(0,)]  # as pay() left it
    s = status(h, order_id)
    assert s["OrderStatus"] == 6 and s["SvfeResponse"] == "51" and s["actionCode"] == 116
    assert s["Pan"] == f"{POOR.pan[:6]}**{POOR.pan[-4:]}"
    assert status(h, order_id)["OrderStatus"] == 6
    rows = h.query("SELECT event_type, body FROM merchant_events")
    assert [t for t, _ in rows] == ["payment.declined"]
    body = json.loads(rows[0][1])
    assert body["order_id"] == order_id and body["response_code"] == "51"
