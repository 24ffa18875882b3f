"""The ISO 8583 mapping checks digits as ASCII 0-9: ``str.isdigit`` alone accepts Arabic-Indic
digits and the Latin-1 superscripts an EBCDIC text field can carry (``int("²")`` then
raises, which the listener turned into a 96). Each is now a FieldError naming the field, so
the acquirer gets a 30."""

from __future__ import annotations

import pytest

from switch.digits import is_ascii_digits
from switch.iso8583.mapping import FieldError, request_from_message
from switch.iso8583.message import FieldValue, Message
from switch.iso8583.remote import answer_to_result

ARABIC_INDIC = "٠١٢٣٤٥٦٧٨٩"  # U+0660..U+0669: isdigit() is True for each


def _arabic(digits: str) -> str:
    return "".join(ARABIC_INDIC[int(d)] for d in digits)


def _withdrawal(**changes: FieldValue) -> Message:
    fields: dict[int, FieldValue] = {
        2: "6280580000000017",
        3: "010000",
        4: "000000500000",
        7: "1129120000",
        11: "000001",
        12: "120000",
        13: "1129",
        32: "628058",
        41: "GAB00001",
        49: "012",
    }
    return Message("0200", fields | {int(k[1:]): v for k, v in changes.items()})


def test_ascii_digits_refuses_other_digits() -> None:
    assert is_ascii_digits("0123456789")
    assert not is_ascii_digits(_arabic("012")) and _arabic("012").isdigit()
    assert not is_ascii_digits("²") and "²".isdigit()
    assert not is_ascii_digits("")


def test_the_plain_request_maps() -> None:
    req = request_from_message(_withdrawal(), None)
    assert (req.stan, req.amount, req.currency) == ("000001", 500_000, 12)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (2, _arabic("6280580000000017")),
        (3, _arabic("010000")),
        (4, _arabic("000000500000")),
        (7, _arabic("1129120000")),
        (11, _arabic("000001")),
        (12, _arabic("120000")),
        (13, _arabic("1129")),
        (32, _arabic("628058")),
        (49, _arabic("012")),
        (49, "01²"),
        (14, "²812"),
    ],
)
def test_non_ascii_digits_are_a_field_error_naming_the_field(field: int, value: str) -> None:
    with pytest.raises(FieldError) as info:
        request_from_message(_withdrawal(**{f"f{field}": value}), None)
    assert info.value.field == field


def test_track2_and_replacement_amounts_use_ascii_digits() -> None:
    with pytest.raises(FieldError) as info:
        request_from_message(_withdrawal(f35=_arabic("6280580000000017") + "=2812"), None)
    assert info.value.field == 35
    reversal = Message(
        "0420",
        _withdrawal(f90="0200000001112912000000000628058" + "0" * 11).fields
        | {95: _arabic("000000100000") + "0" * 30},
    )
    with pytest.raises(FieldError) as info:
        request_from_message(reversal, None)
    assert info.value.field == 95


def test_remote_answer_balances_with_odd_digits_are_ignored_not_a_crash() -> None:
    f54 = "0002012C" + "²" + "0" * 11  # int() raised on this before
    result = answer_to_result("peer", Message("0210", {39: "00", 54: f54}))
    assert result.available_balance is None
