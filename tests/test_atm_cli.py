"""The ATM simulator: its own pieces (amounts in DZD, field 54 read back, answers in words,
bad arguments refused with a message naming them), then ``switch atm`` as a subprocess against
a real ``switch run`` (``--json``, the PIN rule, decline reasons, an unknown original, exit
statuses)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from switch import cli
from switch.atm import describe, dzd, parse_balances, reversal
from switch.core import demo
from switch.core.model import RESPONSE_TEXT, ResponseCode
from switch.iso8583.message import Message
from tests.switch_proc import bound_ports
from tests.test_run_quickstart import SWITCH, _start, _stop


def test_balances_and_answers_in_words() -> None:
    f54 = "0001012C0000144970000002012D000000001000"
    assert parse_balances(f54) == {"ledger": 14_497_000, "available": -1_000}
    ok = describe(Message("0210", {39: "00", 38: "123456", 54: f54}))
    assert "APPROVED (00), authorization code 123456" in ok
    assert "available balance: -10.00 DZD" in ok and "144,970.00 DZD" in ok
    assert describe(Message("0210", {39: "61"})) == "DECLINED (61): exceeds the amount limit"
    assert describe(Message("0210", {39: "63"})) == "DECLINED (63): security violation (MAC)"
    assert "unknown response code" in describe(Message("0210", {39: "Z9"}))
    assert dzd(500_000) == "5,000.00 DZD"


def test_reversal_carries_field_90_and_95() -> None:
    rev = reversal("6280580000000017", 500_000, "000123", "1129120000", dispensed=200_000)
    assert rev.mti == "0420"
    assert rev.fields[90] == "0200000123112912000000000628058" + "0" * 11
    assert str(rev.fields[95]).startswith("000000200000")


@pytest.mark.parametrize("amount", ["12.345", "abc", "-5"])
def test_bad_amount_is_refused_naming_it(amount: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["atm", "withdraw", "--amount", amount])
    assert exc.value.code == 2
    assert "amount" in capsys.readouterr().err


def test_every_response_code_has_words() -> None:
    assert {c.value for c in ResponseCode} <= set(RESPONSE_TEXT)


def test_unknown_terminal_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["atm", "balance", "--terminal", "NOPE0001", "--port", "1"])
    assert rc == 2
    assert "NOPE0001" in capsys.readouterr().err


def test_a_card_other_than_a_demo_card_needs_its_pin(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["atm", "balance", "--card", "6280589999999999", "--port", "1"])
    assert rc == 2 and "--pin" in capsys.readouterr().err  # refused before any connection
    rc = cli.main(["atm", "balance", "--card", "6280589999999999", "--pin", "1234", "--port", "1"])
    assert rc == 4 and "cannot connect" in capsys.readouterr().err  # then it would be sent


def test_minor_refuses_decimals(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["atm", "withdraw", "--amount", "50.5", "--minor", "--port", "1"]) == 2
    assert "--amount" in capsys.readouterr().err


@pytest.fixture(scope="module")
def iso_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("atm-cli")
    proc = _start(tmp / "var", 0, tmp / "switch.out")
    try:
        yield bound_ports(tmp / "switch.out")[0]
    finally:
        _stop(proc)


def atm(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWITCH, "atm", *args, "--port", str(port)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_json_answer_with_numbers(iso_port: int) -> None:
    card = demo.CARDS[7]
    r = atm(iso_port, "withdraw", "--amount", "100000", "--minor", "--card", card.pan, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["approved"], doc["response_code"], doc["reason"]) == (True, "00", "approved")
    assert doc["amount_minor"] == 100_000 and doc["mac_verified"] is True
    assert doc["balances_minor"]["available"] < card.balance  # a number, the fee included
    assert doc["card"] == "628058******0082" and card.pan not in r.stdout
    r = atm(iso_port, "withdraw", "--amount", "1000.50", "--card", card.pan, "--json")
    assert json.loads(r.stdout)["amount_minor"] == 100_050


def test_a_demo_card_without_pin_uses_its_own_pin(iso_port: int) -> None:
    card = demo.CARDS[1]  # not the default card: PIN 4321, not 1234
    r = atm(iso_port, "balance", "--card", card.pan)
    assert r.returncode == 0 and "APPROVED (00)" in r.stdout, r.stdout + r.stderr


def test_a_decline_in_words(iso_port: int) -> None:
    card = demo.CARDS[7]
    r = atm(iso_port, "balance", "--card", card.pan, "--pin", "0000")
    assert r.returncode == 1 and "DECLINED (55): incorrect PIN" in r.stdout
    r = atm(iso_port, "balance", "--card", demo.CARDS[6].pan, "--json")  # blocked card
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and (doc["approved"], doc["reason"]) == (False, "restricted card")
    r = atm(iso_port, "balance", "--card", card.pan)  # a correct PIN again: tries reset
    assert r.returncode == 0, r.stdout


def test_a_reversal_of_an_unknown_original_says_so(iso_port: int) -> None:
    card = demo.CARDS[7]
    unknown = ["--stan", "999999", "--transmission", "0101000000", "--card", card.pan]
    r = atm(iso_port, "reverse", "--amount", "100", *unknown)
    assert r.returncode == 0 and "no such original" in r.stdout, r.stdout
    assert (
        json.loads(atm(iso_port, "reverse", "--amount", "100", *unknown, "--json").stdout)[
            "original_found"
        ]
        is False
    )
    w = json.loads(
        atm(iso_port, "withdraw", "--amount", "100", "--card", card.pan, "--json").stdout
    )
    known = ["--stan", w["stan"], "--transmission", w["transmission"], "--card", card.pan]
    r = atm(iso_port, "reverse", "--amount", "100", *known, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["original_found"] is True, r.stdout
