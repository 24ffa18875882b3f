"""Alert texts: content, masking, money formatting, local time and SMS size."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switch.notify.messages import ALERT_KINDS, format_amount, render_alert, render_otp
from switch.notify.sms_encoding import encoding_for, segment_count, split_ucs2

WHEN = datetime(2026, 11, 29, 13, 5, tzinfo=UTC)  # 14:05 in Algiers (UTC+1, no DST)


def test_withdrawal_text_has_amount_card_place_time_balance_in_both_languages() -> None:
    text = render_alert("withdrawal", "628058******1234", 500000, 12, "GAB ALGER", WHEN, 1234567)
    fr, ar = text.split("\n")
    assert fr == "Retrait 5 000,00 DZD carte ***1234 GAB ALGER 29/11/26 14:05. Solde 12 345,67 DZD"
    assert ar.startswith("سحب نقدي 5 000,00 DZD بطاقة ***1234 GAB ALGER 29/11/26 14:05.")
    assert ar.endswith("الرصيد 12 345,67 DZD")


def test_full_pan_never_appears() -> None:
    pan = "6280581234567890"
    text = render_alert("payment", pan, 100, 12, "SHOP", WHEN, 0)
    assert pan not in text and "628058" not in text and "***7890" in text


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (500000, 12, "5 000,00 DZD"),
        (5, 12, "0,05 DZD"),
        (0, 12, "0,00 DZD"),
        (123456789, 978, "1 234 567,89 EUR"),
        (1500, 788, "1,500 TND"),
        (1500, 392, "1 500 JPY"),
        (-250, 12, "-2,50 DZD"),
        (123456, 414, "123,456 KWD"),
        (123456, 999, "1 234,56 999"),  # unlisted code: shown by number, exponent 2
    ],
)
def test_format_amount_uses_exponent(amount: int, currency: int, expected: str) -> None:
    assert format_amount(amount, currency) == expected


def test_local_time_follows_algiers_and_naive_is_utc() -> None:
    naive = datetime(2026, 6, 30, 23, 30)
    text = render_alert("payment", "***1234", 100, 12, "X", naive, 0, lang="fr")
    assert "01/07/26 00:30" in text


@pytest.mark.parametrize("kind", ALERT_KINDS)
def test_every_kind_fits_three_ucs2_parts_and_one_gsm7_part(kind: str) -> None:
    place = "GAB POSTE ALGER CENTRE 16000 ALGER"  # cut to 22 characters
    text = render_alert(kind, "***1234", 9_999_999, 12, place, WHEN, 123_456_789)
    assert encoding_for(text) == "ucs2"
    assert segment_count(text) <= 3
    fr = render_alert(kind, "***1234", 9_999_999, 12, place, WHEN, 123_456_789, lang="fr")
    assert encoding_for(fr) == "gsm7" and segment_count(fr) == 1
    assert "16000" not in text


def test_place_control_characters_are_removed() -> None:
    text = render_alert("payment", "***1234", 100, 12, "A\r\nB\x00C", WHEN, 0, lang="fr")
    assert "A B C" in text and "\r" not in text


def test_otp_text() -> None:
    text = render_otp("123456", "JUMIA DZ", 250000, 12)
    assert text.startswith("Code 123456 pour payer 2 500,00 DZD chez JUMIA DZ.")
    assert "123456" in text.split("\n")[1]
    assert segment_count(text) <= 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "loan"}, "kind"),
        ({"amount": -1}, "amount"),
        ({"currency": 1000}, "currency"),
        ({"currency": "012"}, "currency"),
        ({"masked_pan": "****"}, "masked_pan"),
        ({"available_balance": 1.5}, "available_balance"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {
        "kind": "payment",
        "masked_pan": "***1234",
        "amount": 100,
        "currency": 12,
        "place": "X",
        "when": WHEN,
        "available_balance": 0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        render_alert(**args)  # type: ignore[arg-type]


def test_otp_code_is_validated() -> None:
    with pytest.raises(ValueError, match="code"):
        render_otp("12a4", "M", 1, 12)


def test_gsm7_extension_characters_count_double_and_ucs2_split_keeps_surrogates() -> None:
    assert segment_count("€" * 80) == 1
    assert segment_count("€" * 81) == 2
    assert segment_count("a" * 160) == 1
    assert segment_count("a" * 161) == 2
    assert segment_count("ب" * 70) == 1
    assert segment_count("ب" * 71) == 2
    text = "ب" * 66 + "😀" + "ب"
    parts = split_ucs2(text)
    assert [len(p) for p in parts] == [132, 6]
    assert b"".join(parts).decode("utf-16-be") == text
