"""Typed configuration: card products with dated limit and fee schedules.

Limits and fees change often (docs/architecture.md §3), so they are data, not constants: a TOML
file (``switch/core/products.toml`` ships the Edahabia classic defaults) is loaded into the
frozen objects below, and the core asks a product for the schedule in force on a business
day. ``load_config(path)`` reads another file with the same layout (operators' overrides).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from switch.core.categories import LimitCategory

DEFAULT_PRODUCT = "EDAHABIA_CLASSIC"
DEFAULT_PREAUTH_VALIDITY_HOURS = 168  # 7 days


class ConfigError(ValueError):
    """The configuration file is malformed; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class Limit:
    daily_amount: int
    per_txn: int  # 0 = no per-transaction cap beyond the daily amount
    daily_count: int


@dataclass(frozen=True, slots=True)
class Schedule:
    effective_from: dt.date
    min_atm_withdrawal: int
    fee_own_atm: int
    fee_other_atm: int
    fee_balance_inquiry: int
    limits: dict[int, Limit]  # keyed by LimitCategory (an IntEnum: plain ints work too)
    # How long a pre-authorization's hold lasts when it is never completed or reversed
    # (issuers release it after a validity period; a fuel pump's is often shorter).
    preauth_validity_hours: int = DEFAULT_PREAUTH_VALIDITY_HOURS
    fuel_preauth_validity_hours: int = DEFAULT_PREAUTH_VALIDITY_HOURS


@dataclass(frozen=True, slots=True)
class Product:
    code: str
    name: str
    currency: int
    pin_length: int
    pin_tries: int
    otp_tries: int
    allow_transfers: bool
    allow_ecommerce: bool
    schedules: tuple[Schedule, ...]  # sorted by effective_from
    # Accept a chip card's magnetic-stripe read (EMV fallback)? Off for Edahabia: a stripe
    # read of a chip card is how a skimmed copy is used (switch.core.card_checks).
    allow_chip_fallback: bool = False

    def schedule_on(self, day: dt.date) -> Schedule:
        """The schedule in force on ``day`` (the latest one that has started)."""
        current = self.schedules[0]
        for s in self.schedules:
            if s.effective_from <= day:
                current = s
        return current


@dataclass(frozen=True, slots=True)
class VerificationLimits:
    """How many one-time codes (StartVerification SMS) may be sent within ``window_minutes``:
    to one card, whichever merchants asked, and for one merchant, whichever cards.

    Each code is an SMS the issuer pays for and a message on the cardholder's phone; without
    a cap one merchant sent 16 codes to one phone in 70 ms."""

    codes_per_card: int = 3
    codes_per_merchant: int = 300
    window_minutes: int = 15

    @property
    def window_s(self) -> float:
        return self.window_minutes * 60.0


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    products: dict[str, Product]
    timezone: str = "Africa/Algiers"
    verification: VerificationLimits = VerificationLimits()
    extra: dict[str, Any] = field(default_factory=dict)

    def product(self, code: str) -> Product:
        try:
            return self.products[code]
        except KeyError:
            raise ConfigError(f"unknown card product {code!r}") from None


def _int(table: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
    return value


def _bool(table: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _positive(table: dict[str, Any], key: str, where: str, default: int) -> int:
    value = _int(table, key, where, default)
    if value == 0:
        raise ConfigError(f"{where}.{key}: expected a positive integer, got 0")
    return value


def _schedule(raw: dict[str, Any], where: str) -> Schedule:
    eff = raw.get("effective_from")
    if not isinstance(eff, dt.date):
        raise ConfigError(f"{where}.effective_from: expected a date (YYYY-MM-DD)")
    raw_limits = raw.get("limits", {})
    limits: dict[int, Limit] = {}
    for cat in LimitCategory:
        lim = raw_limits.get(cat.config_name)
        if lim is None:
            raise ConfigError(f"{where}.limits.{cat.config_name}: missing")
        w = f"{where}.limits.{cat.config_name}"
        limits[cat] = Limit(
            daily_amount=_int(lim, "daily_amount", w),
            per_txn=_int(lim, "per_txn", w, 0),
            daily_count=_int(lim, "daily_count", w),
        )
    validity = _positive(raw, "preauth_validity_hours", where, DEFAULT_PREAUTH_VALIDITY_HOURS)
    return Schedule(
        effective_from=eff,
        min_atm_withdrawal=_int(raw, "min_atm_withdrawal", where, 0),
        fee_own_atm=_int(raw, "fee_own_atm", where, 0),
        fee_other_atm=_int(raw, "fee_other_atm", where, 0),
        fee_balance_inquiry=_int(raw, "fee_balance_inquiry", where, 0),
        limits=limits,
        preauth_validity_hours=validity,
        fuel_preauth_validity_hours=_positive(raw, "fuel_preauth_validity_hours", where, validity),
    )


def parse_config(data: dict[str, Any]) -> SwitchConfig:
    products: dict[str, Product] = {}
    for i, raw in enumerate(data.get("product", [])):
        where = f"product[{i}]"
        code = raw.get("code")
        if not isinstance(code, str) or not code:
            raise ConfigError(f"{where}.code: missing")
        scheds = [
            _schedule(s, f"{where}.schedule[{j}]") for j, s in enumerate(raw.get("schedule", []))
        ]
        if not scheds:
            raise ConfigError(f"{where}.schedule: at least one schedule is needed")
        products[code] = Product(
            code=code,
            name=str(raw.get("name", code)),
            currency=_int(raw, "currency", where, 12),
            pin_length=_int(raw, "pin_length", where, 4),
            pin_tries=_int(raw, "pin_tries", where, 3),
            otp_tries=_int(raw, "otp_tries", where, 3),
            allow_transfers=bool(raw.get("allow_transfers", True)),
            allow_ecommerce=bool(raw.get("allow_ecommerce", True)),
            schedules=tuple(sorted(scheds, key=lambda s: s.effective_from)),
            allow_chip_fallback=_bool(raw, "allow_chip_fallback", where, False),
        )
    if not products:
        raise ConfigError("product: at least one card product is needed")
    tz = data.get("timezone", "Africa/Algiers")
    if not isinstance(tz, str):
        raise ConfigError("timezone: expected a string")
    return SwitchConfig(
        products=products, timezone=tz, verification=_verification(data.get("verification", {}))
    )


def _verification(raw: object) -> VerificationLimits:
    """The ``[verification]`` table; every key optional (the defaults above)."""
    if not isinstance(raw, dict):
        raise ConfigError("verification: expected a table")
    known = {"codes_per_card", "codes_per_merchant", "window_minutes"}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"verification.{key}: unknown key (known: {', '.join(sorted(known))})"
            )
    d = VerificationLimits()
    return VerificationLimits(
        codes_per_card=_positive(raw, "codes_per_card", "verification", d.codes_per_card),
        codes_per_merchant=_positive(
            raw, "codes_per_merchant", "verification", d.codes_per_merchant
        ),
        window_minutes=_positive(raw, "window_minutes", "verification", d.window_minutes),
    )


def load_config(path: Path | None = None) -> SwitchConfig:
    """Load ``path``, or the shipped defaults (``switch/core/products.toml``) when ``None``."""
    if path is None:
        text = resources.files("switch.core").joinpath("products.toml").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path or 'products.toml'}: {exc}") from exc
    return parse_config(data)
