"""``switch pay ...`` against the merchant API served by another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.api.testing import ECOM
from switch.core import demo

CARD = demo.CARDS[0]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("api-cli")
    proc = subprocess.Popen(
        [sys.executable, "-m", "switch.api.standalone", "--state-dir", str(state), "--no-fsync"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        yield f"127.0.0.1:{int(line.split()[1])}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the server stops when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pay(target: str, *args: str, key: str = ECOM.api_key) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWITCH_API_KEY": key, "SWITCH_MERCHANT_ID": ECOM.merchant_id}
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", "pay", "--target", target, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_sale_get_refund(target: str) -> None:
    card = ["--pan", CARD.pan, "--expiry", CARD.expiry, "--cvv2", CVV2]
    r = pay(target, "--key", "cli-1", "sale", "150000", *card)
    assert r.returncode == 0, r.stderr
    sale = json.loads(r.stdout)
    assert sale["approved"] and sale["response_code"] == "00"
    assert CVV2 not in r.stdout and CARD.pan not in r.stdout
    got = json.loads(pay(target, "get", sale["payment_id"]).stdout)
    assert got["amount"]["amount_minor"] == "150000"
    r = pay(target, "refund", sale["payment_id"], "50000")
    assert r.returncode == 0 and json.loads(r.stdout)["approved"]


def test_decline_and_errors_exit_codes(target: str) -> None:
    poor = demo.CARDS[1]
    card = ["--pan", poor.pan, "--expiry", poor.expiry, "--cvv2", demo.cvv2(poor.pan, poor.expiry)]
    r = pay(target, "sale", str(poor.balance + 1), *card)
    assert r.returncode == 1 and json.loads(r.stdout)["response_code"] == "51"
    r = pay(target, "sale", "-5", *card)
    assert r.returncode == 2 and "INVALID_ARGUMENT" in r.stderr and "amount" in r.stderr
    r = pay(target, "bill-lookup", "ADE", "0000000001", key="wrong")
    assert r.returncode == 2 and "UNAUTHENTICATED" in r.stderr


def test_bill_lookup_and_pay(target: str) -> None:
    r = pay(target, "bill-lookup", "AT", "021000001")
    assert r.returncode == 0 and json.loads(r.stdout)["amount_due"]["amount_minor"] == "250000"
    card = ["--pan", CARD.pan, "--expiry", CARD.expiry, "--cvv2", CVV2]
    r = pay(target, "bill", "AT", "021000001", "250000", *card)
    assert r.returncode == 0, r.stderr


def test_help_lists_operations(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "switch.cli", "pay", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0 and "sale" in r.stdout and "transfer" in r.stdout
