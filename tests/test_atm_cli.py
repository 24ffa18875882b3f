"""The ATM simulator's own pieces: amounts in DZD, field 54 read back, answers in words,
bad arguments refused with a message naming them."""

from __future__ import annotations

import pytest

from switch import cli
from switch.atm import describe, dzd, parse_balances, reversal
from switch.iso8583.message import Message


def test_balances_and_answers_in_words() -> None:
    f54 = "0001012C0000144970000002012D000000001000"
    assert parse_balances(f54) == {"ledger": 14_497_000, "available": -1_000}
    ok = describe(Message("0210", {39: "00", 38: "123456", 54: f54}))
    assert "APPROVED (00), authorization code 123456" in ok
    assert "available balance: -10.00 DZD" in ok and "144,970.00 DZD" in ok
    assert describe(Message("0210", {39: "61"})) == "DECLINED (61): exceeds amount limit"
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


def test_unknown_terminal_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["atm", "balance", "--terminal", "NOPE0001", "--port", "1"])
    assert rc == 3
    assert "NOPE0001" in capsys.readouterr().err
