"""Dated product configuration and the ``switch demo show --json`` contract."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tomllib
from importlib import resources

import pytest

from switch.config import ConfigError, load_config, parse_config
from switch.core.categories import LimitCategory
from switch.core.domain import luhn_ok


def shipped() -> dict[str, object]:
    return tomllib.loads(resources.files("switch.core").joinpath("products.toml").read_text())


def test_default_product_is_edahabia_classic() -> None:
    p = load_config().product("EDAHABIA_CLASSIC")
    s = p.schedule_on(dt.date(2026, 11, 29))
    assert s.limits[LimitCategory.ATM_CASH].daily_amount == 5_000_000
    assert s.limits[LimitCategory.CARD_PAYMENT].daily_amount == 20_000_000
    assert s.limits[LimitCategory.COUNTER_CASH].daily_amount == 20_000_000
    assert (s.min_atm_withdrawal, s.fee_own_atm, s.fee_other_atm) == (100_000, 3_000, 3_500)
    assert p.pin_tries == 3 and p.otp_tries == 3


def test_schedules_take_effect_on_their_date() -> None:
    data = shipped()
    product = data["product"][0]  # type: ignore[index]
    later = json.loads(json.dumps(product["schedule"][0], default=str))
    later["effective_from"] = dt.date(2027, 1, 1)
    later["fee_own_atm"] = 4_000
    product["schedule"].append(later)
    p = parse_config(data).product("EDAHABIA_CLASSIC")
    assert p.schedule_on(dt.date(2026, 12, 31)).fee_own_atm == 3_000
    assert p.schedule_on(dt.date(2027, 1, 1)).fee_own_atm == 4_000


def test_bad_config_names_the_key() -> None:
    data = shipped()
    del data["product"][0]["schedule"][0]["limits"]["fuel"]  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"limits\.fuel"):
        parse_config(data)
    data = shipped()
    data["product"][0]["schedule"][0]["fee_own_atm"] = -1  # type: ignore[index]
    with pytest.raises(ConfigError, match="fee_own_atm"):
        parse_config(data)


def test_demo_show_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "switch.cli", "demo", "show", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["on_us_bin"] == "628058"
    for c in doc["cards"]:
        assert luhn_ok(c["pan"]) and c["pan"].startswith("628058")
        assert {"pin", "expiry", "cvv2", "phone", "account"} <= c.keys()
        assert len(c["cvv2"]) == 3
    term = doc["terminals"][0]
    assert len(term["tpk"]) == 32 and term["pin_block_format"] == "01"
    assert doc["merchants"][0]["api_key"]
    assert {b["biller_id"] for b in doc["billers"]} == {"SONELGAZ", "ADE", "AT"}
    assert {"prefix": "627000", "destination": "remote-bank"} in doc["bin_routes"]
