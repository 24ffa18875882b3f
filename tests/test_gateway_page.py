"""The hosted payment page in a real headless Chromium (Selenium + Debian's chromedriver), with
JavaScript turned off in the browser: the page must work as plain HTML forms.

One browser and one gateway (real core, ``ManualClock``) serve the whole module; each test
registers its own order over the REST API, pays on the page as a cardholder would, reads the
one-time code from the SMS outbox, and checks where the browser lands and what the merchant's
``getOrderStatus.do`` says. Screenshots of every step are saved under the pytest tmp path
(the directory is printed; run with ``-s`` to see it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from switch.core import demo
from switch.core.testing import ManualClock
from tests.gateway_harness import (
    CREDENTIALS,
    MERCHANT,
    T0,
    GatewayHarness,
    cvv2,
    expiry_mm_yy,
    rest,
)

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
WAIT_S = 60  # page loads and form posts to a loaded CI machine

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMEDRIVER) is None or shutil.which(CHROMIUM) is None,
    reason="chromium and chromedriver from scripts/system-deps.sh",
)


@pytest.fixture(scope="module")
def h(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    state = tmp_path_factory.mktemp("page") / "state"
    shutil.copytree(template, state)
    with GatewayHarness(state, ManualClock(T0)) as harness:
        yield harness


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("screenshots")
    print(f"\npayment page screenshots: {path}")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=900,1100", "--lang=fr"):  # fmt: skip
        options.add_argument(arg)
    # no JavaScript at all: the page is plain forms, and must work so
    options.add_experimental_option(
        "prefs", {"profile.managed_default_content_settings.javascript": 2}
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def shot(browser: WebDriver, shots: Path, name: str) -> None:
    assert browser.save_screenshot(str(shots / f"{name}.png"))


def text(browser: WebDriver, css: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def fill_card(browser: WebDriver, card: demo.DemoCard) -> None:
    # every field has its label (accessible names), found by the label's for=
    for field, value in (("pan", " ".join(card.pan[i : i + 4] for i in range(0, 16, 4))),
                         ("expiry", expiry_mm_yy(card)), ("cvv2", cvv2(card))):  # fmt: skip
        label = browser.find_element(By.CSS_SELECTOR, f"label[for='{field}']")
        assert label.text.strip()
        browser.find_element(By.ID, field).send_keys(value)
    assert not browser.find_elements(By.ID, "holder")  # not asked: nothing would use it


def wait_for(browser: WebDriver, css: str) -> None:
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))


def status(h: GatewayHarness, order_id: str) -> dict[str, object]:
    return rest(h.base, "getOrderStatus.do", {**CREDENTIALS, "orderId": order_id})


def test_full_purchase_with_the_sms_code(
    h: GatewayHarness, browser: WebDriver, shots: Path
) -> None:
    card = demo.CARDS[0]
    got = h.register("WEB-1001", 250_000, description="Commande de 2 livres")
    browser.get(str(got["formUrl"]))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
    assert text(browser, "#merchant-name") == MERCHANT.name
    assert text(browser, "#order-number") == "WEB-1001"
    assert text(browser, "#amount") == "2\u202f500,00 DZD"
    # the stylesheet loaded under the page's CSP (style-src 'self'): the button is green
    pay = browser.find_element(By.ID, "pay")
    assert pay.value_of_css_property("background-color") == "rgba(0, 98, 51, 1)"
    shot(browser, shots, "1-card-fr")
    fill_card(browser, card)
    browser.find_element(By.ID, "pay").click()
    wait_for(browser, "#code")
    assert "+213" in text(browser, "#code-sent")  # the masked phone the SMS went to
    assert card.pan not in browser.page_source and cvv2(card) not in browser.page_source
    assert card.pan not in browser.current_url
    shot(browser, shots, "2-code-fr")
    browser.find_element(By.ID, "code").send_keys(h.last_code())
    browser.find_element(By.ID, "confirm").click()
    wait_for(browser, "#shop")
    # back on the merchant's returnUrl, with the orderId (and its own query kept)
    assert browser.current_url == f"{h.return_url}&orderId={got['orderId']}"
    assert text(browser, "#order") == got["orderId"]
    shot(browser, shots, "3-back-at-the-shop")
    s = status(h, str(got["orderId"]))
    assert s["OrderStatus"] == 2 and s["depositAmount"] == 250_000
    # the page again: no form any more, only the way back
    browser.get(str(got["formUrl"]))
    assert not browser.find_elements(By.ID, "pan") and browser.find_elements(By.ID, "back")


def test_a_wrong_code_then_the_right_one(
    h: GatewayHarness, browser: WebDriver, shots: Path
) -> None:
    card = demo.CARDS[7]
    got = h.register("WEB-1002", 99_000, language="EN")
    browser.get(str(got["formUrl"]))
    fill_card(browser, card)
    browser.find_element(By.ID, "pay").click()
    wait_for(browser, "#code")
    browser.find_element(By.ID, "code").send_keys("000000")
    browser.find_element(By.ID, "confirm").click()
    wait_for(browser, "#errors")
    assert "Incorrect code." in text(browser, "#errors")
    assert "Tries left: 2" in text(browser, "#tries")
    assert browser.find_element(By.ID, "code").get_attribute("aria-invalid") == "true"
    shot(browser, shots, "4-wrong-code-en")
    assert status(h, str(got["orderId"]))["OrderStatus"] == 0
    browser.find_element(By.ID, "code").send_keys(h.last_code())
    browser.find_element(By.ID, "confirm").click()
    wait_for(browser, "#shop")
    assert status(h, str(got["orderId"]))["OrderStatus"] == 2


def test_an_expired_session(h: GatewayHarness, browser: WebDriver, shots: Path) -> None:
    got = h.register("WEB-1003", 10_000)
    browser.get(str(got["formUrl"]))
    fill_card(browser, demo.CARDS[0])
    sms_before = len(h.sms_texts())
    h.clock.advance(601)  # the default 10 minutes have passed on the switch's clock
    browser.find_element(By.ID, "pay").click()
    wait_for(browser, "#message")
    assert "expiré" in text(browser, "#message")
    shot(browser, shots, "5-expired-fr")
    back = browser.find_element(By.ID, "back").get_attribute("href")
    assert back == f"{h.fail_url}?orderId={got['orderId']}"
    s = status(h, str(got["orderId"]))
    assert s["OrderStatus"] == 6 and s["actionCode"] == -2007
    assert len(h.sms_texts()) == sms_before  # no code was sent for an expired order


def test_the_arabic_page(h: GatewayHarness, browser: WebDriver, shots: Path) -> None:
    card = demo.CARDS[7]
    got = h.register("WEB-1004", 1_500_000, language="AR")
    assert "payment_ar.html" in str(got["formUrl"])
    browser.get(str(got["formUrl"]))
    html = browser.find_element(By.TAG_NAME, "html")
    assert html.get_attribute("dir") == "rtl" and html.get_attribute("lang") == "ar"
    assert text(browser, "label[for='pan']") == "رقم البطاقة"
    assert text(browser, "#amount") == "15,000.00 د.ج"
    # right to left: the summary's label is on the right of its value
    dt = browser.find_element(By.CSS_SELECTOR, ".total dt").rect
    dd = browser.find_element(By.CSS_SELECTOR, ".total dd").rect
    assert dt["x"] > dd["x"]
    shot(browser, shots, "6-card-ar")
    fill_card(browser, card)
    browser.find_element(By.ID, "pay").click()
    wait_for(browser, "#code")
    assert "رسالة نصية" in text(browser, "#code-sent")
    shot(browser, shots, "7-code-ar")
    browser.find_element(By.ID, "cancel").click()  # the cardholder changes their mind
    wait_for(browser, "#shop")
    assert browser.current_url == f"{h.fail_url}?orderId={got['orderId']}"
    assert status(h, str(got["orderId"]))["OrderStatus"] == 6
