"""``[acquirers.<acquirer_id>]`` tables: parsing, errors naming the key, the HSM key check at
start, and the key-selection rule (our terminal's keys, else the field 32 acquirer's zone keys).
Real TOML files in a temp dir, the real in-process HSM on a fresh LMK."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from switch.core.domain import Terminal
from switch.core.interchange import (
    AcquirerConfig,
    MacKey,
    PinKey,
    acquirers_from_toml,
    check_acquirer_keys,
    load_acquirers,
    mac_key,
    pin_key,
)
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk

ZPK = "U0123456789ABCDEF0123456789ABCDEF"
ZAK = "UFEDCBA9876543210FEDCBA9876543210"


def test_a_full_table_and_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "links.toml"
    path.write_text(
        '[remote_issuers.remote-bank]\nhost = "10.0.0.5"\nport = 8600\nzpk = "U00"\n\n'
        f'[acquirers.000077]\nname = "Network"\nzpk = "{ZPK}"\nzak = "{ZAK}"\n'
        'pin_block_format = "47"\n\n'
        f'[acquirers.628058]\nzpk = "{ZPK}"\n'
    )
    first, second = load_acquirers([path])
    assert first == AcquirerConfig("000077", ZPK, ZAK, "47", "Network")
    assert first.label == "000077 (Network)"
    assert second == AcquirerConfig("628058", ZPK)
    assert (second.zak, second.pin_block_format, second.label) == ("", "01", "628058")


def test_a_file_without_acquirers_has_none(tmp_path: Path) -> None:
    path = tmp_path / "links.toml"
    path.write_text('[remote_issuers.x]\nhost = "h"\nport = 1\nzpk = "U00"\n')
    assert load_acquirers([path]) == []


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[acquirers.000077]\nname = "x"\n', "acquirers.000077.zpk: required"),
        ("[acquirers.000077]\nzpk = 12\n", "acquirers.000077.zpk: must be a string"),
        ('[acquirers.000077]\nzpk = ""\n', "acquirers.000077.zpk: must be a key under the LMK"),
        ('[acquirers.000077]\nzpk = "U 12"\n', "acquirers.000077.zpk: must be a key under"),
        (f'[acquirers.000077]\nzpk = "{ZPK}"\nzak = "-"\n', "acquirers.000077.zak: must be a key"),
        (
            f'[acquirers.000077]\nzpk = "{ZPK}"\npin_block_format = "02"\n',
            "acquirers.000077.pin_block_format: '02' is not one of 01, 05, 47, 48",
        ),
        (f'[acquirers.000077]\nzpk = "{ZPK}"\nzapk = "x"\n', "acquirers.000077.zapk: unknown key"),
        (f'[acquirers.BANK-A]\nzpk = "{ZPK}"\n', "acquirers.BANK-A: the acquirer id (field 32)"),
        (f'[acquirers.123456789012]\nzpk = "{ZPK}"\n', "acquirers.123456789012: the acquirer id"),
        ('acquirers = "628058"\n', "acquirers: must be a table of [acquirers.<acquirer_id>]"),
        ("[acquirers]\n000077 = 5\n", "acquirers.000077: must be a table"),
    ],
)
def test_bad_tables_name_the_key(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "links.toml"
    path.write_text(table)
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        load_acquirers([path])


def test_an_acquirer_in_two_files_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    for p in (a, b):
        p.write_text(f'[acquirers.000077]\nzpk = "{ZPK}"\n')
    with pytest.raises(ValueError, match=r"^acquirers\.000077: configured twice"):
        load_acquirers([a, b])


def test_parsed_mapping_directly() -> None:
    assert acquirers_from_toml({}) == []
    (acq,) = acquirers_from_toml({"acquirers": {"77": {"zpk": f" {ZPK} "}}})
    assert acq.zpk == ZPK  # surrounding blanks of a pasted key are dropped


def test_the_hsm_checks_each_zone_key_at_start(tmp_path: Path) -> None:
    async def go() -> None:
        hsm = InProcessHsm(Lmk.load_or_create(tmp_path / "lmk.json"), authorised=True)
        zpk = await hsm.form_key_from_clear_components(KeyType.ZPK, ["1C" * 8 + "2A" * 8])
        zak = await hsm.form_key_from_clear_components(KeyType.ZAK, ["4C" * 8 + "5B" * 8])
        tpk = await hsm.form_key_from_clear_components(KeyType.TPK, ["1C" * 8 + "2A" * 8])
        good = [
            AcquirerConfig("000077", zpk.key_under_lmk, zak.key_under_lmk, name="Network"),
            AcquirerConfig("628058", zpk.key_under_lmk),
        ]
        lines = await check_acquirer_keys(hsm, good)
        assert lines == [
            f"interchange acquirer 000077 (Network): ZPK KCV {zpk.check_value}, "
            f"ZAK KCV {zak.check_value}, MAC required",
            f"interchange acquirer 628058: ZPK KCV {zpk.check_value}, no MAC",
        ]
        assert all(k.key_under_lmk[1:] not in "".join(lines) for k in (zpk, zak))
        # a terminal key configured as a zone key, a ZPK as the ZAK, a malformed cryptogram
        for bad, message in (
            (AcquirerConfig("1", tpk.key_under_lmk), r"^acquirers\.1\.zpk: the HSM refused it"),
            (
                AcquirerConfig("2", zpk.key_under_lmk, zpk.key_under_lmk),
                r"^acquirers\.2\.zak: the HSM refused it as a ZAK",
            ),
            (AcquirerConfig("3", "U1234"), r"^acquirers\.3\.zpk: the HSM refused it"),
        ):
            with pytest.raises(ValueError, match=message):
                await check_acquirer_keys(hsm, [bad])

    asyncio.run(go())


# -- key selection -------------------------------------------------------------------------
OUR_ATM = Terminal("GAB00001", "atm", "628058", True, "Alger", "UTPK", "UTAK", "01", 10)
OUR_POS = Terminal("POS00001", "pos", "628058", True, "Hydra", "UTPK2", "", "01", 11)
NETWORK = AcquirerConfig("000077", "UZPK", "UZAK", "47")
NO_MAC = AcquirerConfig("000088", "UZPK8")


def test_our_terminal_keeps_its_own_keys() -> None:
    assert pin_key(OUR_ATM, "628058", None, "01") == PinKey("UTPK", "01", False)
    assert mac_key(OUR_ATM, "628058", None) == MacKey(KeyType.TAK, "UTAK", False)
    # its acquirer registered as an interchange acquirer too: still our terminal's keys
    same = AcquirerConfig("628058", "UZPK", "UZAK")
    assert pin_key(OUR_ATM, "628058", same, "47") == PinKey("UTPK", "47", False)
    assert mac_key(OUR_ATM, "628058", same).key == "UTAK"


def test_a_foreign_terminal_uses_the_acquirer_zone_keys() -> None:
    assert pin_key(None, "000077", NETWORK, "01") == PinKey("UZPK", "47", True)
    assert mac_key(None, "000077", NETWORK) == MacKey(KeyType.ZAK, "UZAK", True)
    # the same terminal id as one of ours, from another acquirer: not ours
    assert pin_key(OUR_ATM, "000077", NETWORK, "01") == PinKey("UZPK", "47", True)
    assert mac_key(OUR_ATM, "000077", NETWORK) == MacKey(KeyType.ZAK, "UZAK", True)
    # our terminal without a TAK, its acquirer without a ZAK: no MAC key, nothing required
    assert mac_key(None, "000088", NO_MAC).key == ""
    assert not mac_key(OUR_POS, "628058", None).required


def test_no_key_without_a_registered_acquirer() -> None:
    assert pin_key(None, "000099", None, "01") is None
    assert mac_key(None, "000099", None).key == ""
    no_tpk = Terminal("VT-ECOM1", "virtual", "628058", True, "web", "", "", "01", 12)
    assert pin_key(no_tpk, "628058", None, "01") is None
    # an unregistered field 32 on our terminal: the terminal's keys, as before
    assert pin_key(OUR_ATM, "999999", None, "01") == PinKey("UTPK", "01", False)
