"""One record of a card management system's export, checked field by field.

The layouts (columns of the CSV header, keys of a JSON Lines object) are defined in the
README, section "Loading an issuer's card base". A record that breaks a rule raises
``RecordError`` whose message starts with the field's name; nothing here touches the store,
so every check that needs no look-up is done before a batch is written.

PANs never appear in a message: a message that needs to name the card uses the masked PAN.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from switch.core.domain import CardStatus, mask_pan


class RecordError(ValueError):
    """The record is rejected; ``str(error)`` is the reason, starting with the field name."""


CARD_FIELDS = frozenset(
    {"pan", "expiry", "service_code", "product", "account", "holder", "phone", "pvki", "pvv",
     "ibm_offset", "status", "pan_sequence"}
)  # fmt: skip
CARD_REQUIRED = frozenset({"pan", "expiry", "service_code", "product", "account", "status"})
ACCOUNT_FIELDS = frozenset({"account", "currency", "balance", "holder", "phone"})
ACCOUNT_REQUIRED = frozenset({"account", "currency", "balance", "holder"})

_ACCOUNT_NUMBER = re.compile(r"[0-9]{1,18}(-[0-9]{2})?")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
_STATUSES = {s.value: s for s in CardStatus}
MAX_NAME = 100


class CardRecord(NamedTuple):
    """A NamedTuple, not a frozen dataclass: built once per card of an import, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost 3 us of ~10."""

    pan: str
    expiry: str  # YYMM
    service_code: str
    product: str
    account: str
    holder: str
    phone: str  # '' = keep the account's
    pvki: int
    pvv: str  # either pvv (with pvki) or ibm_offset
    ibm_offset: str
    status: CardStatus
    pan_sequence: str

    @property
    def masked_pan(self) -> str:
        return mask_pan(self.pan)


class AccountRecord(NamedTuple):
    account: str
    currency: int
    balance: int  # minor units
    holder: str
    phone: str


def _required(rec: Mapping[str, str], name: str) -> str:
    value = rec.get(name, "")
    if value == "":
        raise RecordError(f"{name}: missing")
    return value


def _digits(name: str, value: str, lengths: range | tuple[int, ...]) -> str:
    """ASCII digits only: ``str.isdigit`` also accepts Arabic-Indic and other digits, which
    neither an ISO 8583 message nor the HSM would ever match."""
    if not value.isascii():
        if all(c.isdigit() for c in value):
            raise RecordError(f"{name}: non-ASCII digits")
        raise RecordError(f"{name}: not digits")
    if not value.isdigit():
        raise RecordError(f"{name}: not digits")
    if len(value) not in lengths:
        want = f"{lengths[0]}" if len(lengths) == 1 else f"{min(lengths)} to {max(lengths)}"
        raise RecordError(f"{name}: {want} digits expected, got {len(value)}")
    return value


def _text(name: str, value: str) -> str:
    if "\ufffd" in value:
        raise RecordError(f"{name}: not valid UTF-8")
    if len(value) > MAX_NAME or not value.isprintable():
        raise RecordError(f"{name}: at most {MAX_NAME} printable characters")
    return value


def _phone(value: str) -> str:
    if value and not _PHONE.fullmatch(value):
        raise RecordError("phone: international format expected, e.g. +213550000001")
    return value


def _account_number(value: str) -> str:
    if not value.isascii() and any(c.isdigit() for c in value):
        raise RecordError("account: non-ASCII digits")
    if not _ACCOUNT_NUMBER.fullmatch(value):
        raise RecordError("account: CCP account number expected (digits, optional -key)")
    return value


#: Luhn: a doubled digit's digit sum, as a byte translation (the sums then run in C).
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def _luhn_ok(pan: str) -> bool:
    """``switch.core.domain.luhn_ok`` for a string already checked to be ASCII digits, in a
    fifth of the time: an import checks millions of them."""
    rev = pan.encode()[::-1]
    return (sum(rev[0::2]) + sum(rev[1::2].translate(_DOUBLED)) - 48 * len(rev)) % 10 == 0


def parse_pan(value: str) -> str:
    """The PAN's checks, in the order a person fixing the file wants them."""
    pan = _digits("pan", value, range(12, 20))
    if not _luhn_ok(pan):
        raise RecordError(f"pan: bad Luhn check digit ({mask_pan(pan)})")
    return pan


_PAN = re.compile(r"[0-9]{12,19}")
_EXPIRY = re.compile(r"[0-9]{2}(?:0[1-9]|1[0-2])")
_THREE = re.compile(r"[0-9]{3}")
_FOUR = re.compile(r"[0-9]{4}")
_TWO = re.compile(r"[0-9]{2}")
_PVKI = re.compile(r"[0-6]")
_OFFSET = re.compile(r"[0-9]{4,12}")


def parse_card(rec: Mapping[str, str]) -> CardRecord:
    """The card, or ``RecordError`` naming the first field at fault.

    A record that passes every check takes one pass of compiled patterns here (an import
    checks millions of them); any other goes through ``_parse_card_checked``, whose checks
    find the field and the reason. Both accept exactly the same records
    (``tests/test_cardbase_import.py`` compares them)."""
    get = rec.get
    pan = get("pan", "")
    expiry = get("expiry", "")
    service_code = get("service_code", "")
    product = get("product", "")
    account = get("account", "")
    holder = get("holder", "")
    phone = get("phone", "")
    pvv = get("pvv", "")
    offset = get("ibm_offset", "")
    status = _STATUSES.get(get("status", ""))
    seq = get("pan_sequence", "") or "00"
    if (
        status is not None
        and product
        and _PAN.fullmatch(pan)
        and _luhn_ok(pan)
        and _EXPIRY.fullmatch(expiry)
        and _THREE.fullmatch(service_code)
        and _ACCOUNT_NUMBER.fullmatch(account)
        and _TWO.fullmatch(seq)
        and (not phone or _PHONE.fullmatch(phone))
        and len(holder) <= MAX_NAME
        and holder.isprintable()
        and "\ufffd" not in holder
    ):
        if pvv and not offset:
            pvki = get("pvki", "")
            if _FOUR.fullmatch(pvv) and _PVKI.fullmatch(pvki):
                return CardRecord(pan, expiry, service_code, product, account, holder, phone,
                                  int(pvki), pvv, "", status, seq)  # fmt: skip
        elif offset and not pvv and _OFFSET.fullmatch(offset):
            return CardRecord(pan, expiry, service_code, product, account, holder, phone, 0,
                              "", offset, status, seq)  # fmt: skip
    return _parse_card_checked(rec)


def _parse_card_checked(rec: Mapping[str, str]) -> CardRecord:
    pan = parse_pan(_required(rec, "pan"))
    expiry = _digits("expiry", _required(rec, "expiry"), (4,))
    if not 1 <= int(expiry[2:]) <= 12:
        raise RecordError(f"expiry: YYMM expected, month {expiry[2:]} is not 01 to 12")
    service_code = _digits("service_code", _required(rec, "service_code"), (3,))
    product = _required(rec, "product")
    account = _account_number(_required(rec, "account"))
    holder = _text("holder", rec.get("holder", ""))
    phone = _phone(rec.get("phone", ""))
    pvv = rec.get("pvv", "")
    offset = rec.get("ibm_offset", "")
    if pvv and offset:
        raise RecordError("pvv: give either pvv (with pvki) or ibm_offset, not both")
    pvki = 0
    if pvv:
        _digits("pvv", pvv, (4,))
        pvki = int(_digits("pvki", _required(rec, "pvki"), (1,)))
        if pvki > 6:
            raise RecordError("pvki: 0 to 6 expected")
    elif offset:
        _digits("ibm_offset", offset, range(4, 13))
    else:
        raise RecordError("pvv: missing (a PVV with its pvki, or an ibm_offset, is required)")
    status = _STATUSES.get(_required(rec, "status"))
    if status is None:
        raise RecordError(f"status: one of {', '.join(_STATUSES)} expected")
    seq = _digits("pan_sequence", rec.get("pan_sequence", "") or "00", (2,))
    return CardRecord(pan, expiry, service_code, product, account, holder, phone, pvki, pvv,
                      offset, status, seq)  # fmt: skip


def parse_account(rec: Mapping[str, str]) -> AccountRecord:
    account = _account_number(_required(rec, "account"))
    currency = int(_digits("currency", _required(rec, "currency"), (1, 2, 3)))
    if currency == 0:
        raise RecordError("currency: ISO 4217 numeric code expected, e.g. 012")
    raw = _required(rec, "balance")
    if raw.startswith("-"):
        raise RecordError("balance: must not be negative (a CCP account has no overdraft)")
    if "." in raw or "," in raw:
        raise RecordError("balance: integer minor units expected (15000000, not 150000.00)")
    balance = int(_digits("balance", raw, range(1, 19)))
    holder = _text("holder", _required(rec, "holder"))
    phone = _phone(rec.get("phone", ""))
    return AccountRecord(account, currency, balance, holder, phone)
