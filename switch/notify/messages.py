"""The texts of cardholder SMS alerts, in French and Arabic.

The core calls ``render_alert`` at posting time and stores the result in the alert outbox row,
so the text is frozen with the posting it reports (a later change of template or balance never
rewrites an alert already owed to the cardholder).

Size and encoding: the default text is bilingual (French line, then Arabic line). Arabic is
outside the GSM 03.38 alphabet, so the whole SMS goes as UCS-2: 70 characters in a single SMS,
67 per part of a concatenated SMS. A bilingual alert with a 22-character place name and a
7-digit balance is at most 201 characters, i.e. 3 parts; ``lang="fr"`` gives a GSM-7 text
(160 characters, one part) and ``lang="ar"`` an Arabic-only one (2 parts). Place names are cut to
``PLACE_MAX`` characters for that reason. See ``switch.notify.sms_encoding``.

Nothing here can leak a card number: only the last four digits of ``masked_pan`` are used,
whatever the caller passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from switch.notify.sealing import SLOT, SecretText

Lang = Literal["fr", "ar", "fr+ar"]

ALERT_KINDS = (
    "withdrawal",
    "payment",
    "bill_payment",
    "transfer",
    "refund",
    "hold_released",
    "activation",
    "otp",
)
LOCAL_TZ = ZoneInfo("Africa/Algiers")
PLACE_MAX = 22
"""Characters of the place kept (ISO 8583 field 43 name part is 22 characters)."""


@dataclass(frozen=True, slots=True)
class Currency:
    alpha: str
    exponent: int


# ISO 4217 numeric code -> alphabetic code and minor-unit exponent. Every currency whose
# exponent is not 2 is listed, so an unlisted code is shown by number with exponent 2 (an alert
# for a rare foreign currency must still go out, never block the outbox).
CURRENCIES: dict[int, Currency] = {
    12: Currency("DZD", 2),
    36: Currency("AUD", 2),
    48: Currency("BHD", 3),
    108: Currency("BIF", 0),
    124: Currency("CAD", 2),
    152: Currency("CLP", 0),
    156: Currency("CNY", 2),
    174: Currency("KMF", 0),
    262: Currency("DJF", 0),
    324: Currency("GNF", 0),
    352: Currency("ISK", 0),
    368: Currency("IQD", 3),
    392: Currency("JPY", 0),
    400: Currency("JOD", 3),
    410: Currency("KRW", 0),
    414: Currency("KWD", 3),
    434: Currency("LYD", 3),
    504: Currency("MAD", 2),
    512: Currency("OMR", 3),
    548: Currency("VUV", 0),
    600: Currency("PYG", 0),
    646: Currency("RWF", 0),
    682: Currency("SAR", 2),
    704: Currency("VND", 0),
    756: Currency("CHF", 2),
    784: Currency("AED", 2),
    788: Currency("TND", 3),
    800: Currency("UGX", 0),
    818: Currency("EGP", 2),
    826: Currency("GBP", 2),
    840: Currency("USD", 2),
    929: Currency("MRU", 2),
    940: Currency("UYI", 0),
    949: Currency("TRY", 2),
    950: Currency("XAF", 0),
    952: Currency("XOF", 0),
    953: Currency("XPF", 0),
    978: Currency("EUR", 2),
}

_FR = {
    "withdrawal": "Retrait",
    "payment": "Paiement",
    "bill_payment": "Facture",
    "transfer": "Virement",
    "refund": "Remboursé",
    "hold_released": "Libéré",
}
_AR = {
    "withdrawal": "سحب نقدي",
    "payment": "دفع",
    "bill_payment": "فاتورة",
    "transfer": "تحويل",
    "refund": "استرداد",
    "hold_released": "تحرير حجز",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def format_amount(amount: int, currency: int) -> str:
    """``500000, 12`` -> ``"5 000,00 DZD"`` (French grouping, the currency's exponent)."""
    cur = _currency(currency)
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(amount), 10**cur.exponent)
    grouped = f"{units:,}".replace(",", " ")
    if cur.exponent:
        return f"{sign}{grouped},{minor:0{cur.exponent}d} {cur.alpha}"
    return f"{sign}{grouped} {cur.alpha}"


def last4(masked_pan: str) -> str:
    """``"***1234"``: the only part of a card number an SMS shows."""
    digits = masked_pan.strip()[-4:]
    if len(digits) != 4 or not digits.isdigit():
        raise ValueError(f"masked_pan must end with 4 digits, got {len(masked_pan)} characters")
    return f"***{digits}"


def local_time(when: datetime) -> str:
    """``"29/11/26 14:05"`` in Africa/Algiers; a naive ``when`` is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(LOCAL_TZ).strftime("%d/%m/%y %H:%M")


def render_alert(
    kind: str,
    masked_pan: str,
    amount: int,
    currency: int,
    place: str,
    when: datetime,
    available_balance: int,
    *,
    lang: Lang = "fr+ar",
) -> str:
    """The SMS text for one posting (or an activation / OTP request notice).

    ``amount`` and ``available_balance`` are minor units of ``currency`` (ISO 4217 numeric).
    Raises ``ValueError`` naming the argument on bad input.
    """
    if kind not in ALERT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ALERT_KINDS)}, got {kind!r}")
    if not isinstance(amount, int) or amount < 0:
        raise ValueError(f"amount must be a non-negative integer (minor units), got {amount!r}")
    if not isinstance(available_balance, int):
        raise ValueError("available_balance must be an integer (minor units)")
    if not isinstance(when, datetime):
        raise ValueError("when must be a datetime")
    card = last4(masked_pan)
    amt = format_amount(amount, currency)
    bal = format_amount(available_balance, currency)
    at = local_time(when)
    where = _clean_place(place)
    fr, ar = _lines(kind, card, amt, where, at, bal)
    if lang == "fr":
        return fr
    if lang == "ar":
        return ar
    if lang == "fr+ar":
        return f"{fr}\n{ar}"
    raise ValueError(f"lang must be fr, ar or fr+ar, got {lang!r}")


def render_otp(
    code: str, merchant: str, amount: int, currency: int, *, lang: Lang = "fr+ar"
) -> str:
    """The e-commerce one-time code SMS in clear, as the handset shows it. Only for a
    transport sending it; what is stored is ``otp_text``'s template with the code sealed."""
    return otp_text(code, merchant, amount, currency, lang=lang).reveal()


def otp_text(
    code: str, merchant: str, amount: int, currency: int, *, lang: Lang = "fr+ar"
) -> SecretText:
    """The one-time code SMS with the code kept apart (``switch.notify.sealing``): the
    caller seals it before the text reaches the store, a log or a console."""
    if not (isinstance(code, str) and code.isascii() and code.isdigit() and 4 <= len(code) <= 8):
        raise ValueError("code must be 4 to 8 digits")
    if not isinstance(amount, int) or amount < 0:
        raise ValueError(f"amount must be a non-negative integer (minor units), got {amount!r}")
    amt = format_amount(amount, currency)
    where = _clean_place(merchant, field="merchant")
    fr = f"Code {SLOT} pour payer {amt} chez {where}. Ne le communiquez à personne."
    ar = f"الرمز {SLOT} لدفع {amt} لدى {where}. لا تشاركه مع أحد."
    if lang == "fr":
        return SecretText(fr, (code,))
    if lang == "ar":
        return SecretText(ar, (code,))
    if lang == "fr+ar":
        return SecretText(f"{fr}\n{ar}", (code, code))
    raise ValueError(f"lang must be fr, ar or fr+ar, got {lang!r}")


# The code's places in a clear OTP text as releases before sealing stored it (``otp_text``'s
# lines with the code in place of the slot): to seal or redact such rows in an old store.
_CLEAR_OTP = re.compile(r"(?m)^(?:Code ([0-9]{4,8}) pour payer |الرمز ([0-9]{4,8}) لدفع )")


def clear_otp_text(text: str) -> SecretText | None:
    """A clear OTP text (stored by an older release) split into template and code(s);
    ``None`` if ``text`` is not one."""
    if SLOT in text:
        return None
    parts: list[str] = []
    codes: list[str] = []
    at = 0
    for m in _CLEAR_OTP.finditer(text):
        group = 1 if m.group(1) is not None else 2
        parts.append(text[at : m.start(group)] + SLOT)
        codes.append(m.group(group))
        at = m.end(group)
    if not codes:
        return None
    return SecretText("".join(parts) + text[at:], tuple(codes))


def _lines(kind: str, card: str, amt: str, where: str, at: str, bal: str) -> tuple[str, str]:
    if kind == "activation":
        return (
            f"Carte {card} activée le {at}. Solde {bal}",
            f"تم تفعيل البطاقة {card} يوم {at}. الرصيد {bal}",
        )
    if kind == "otp":
        return (
            f"Code demandé {amt} {where} carte {card} {at}. Pas vous? Appelez-nous",
            f"طلب رمز {amt} {where} بطاقة {card} {at}. لست أنت؟ اتصل بنا",
        )
    return (
        f"{_FR[kind]} {amt} carte {card} {where} {at}. Solde {bal}",
        f"{_AR[kind]} {amt} بطاقة {card} {where} {at}. الرصيد {bal}",
    )


def _clean_place(place: str, field: str = "place") -> str:
    if not isinstance(place, str):
        raise ValueError(f"{field} must be a string")
    cleaned = " ".join(_CONTROL.sub(" ", place).split())
    return cleaned[:PLACE_MAX].rstrip() or "-"


def _currency(code: int) -> Currency:
    if not isinstance(code, int) or isinstance(code, bool) or not 1 <= code <= 999:
        raise ValueError(f"currency must be an ISO 4217 numeric code (1-999), got {code!r}")
    return CURRENCIES.get(code) or Currency(f"{code:03d}", 2)
