"""LMK creation/loading and the audit trail (what it records, and what it never does)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Awaitable
from pathlib import Path

import pytest
from psec import des

from switch.hsm import errors
from switch.hsm.audit import AUDIT_LOGGER_NAME
from switch.hsm.client import HsmError, KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk, LmkError
from tests.test_hsm_commands import clear_key, encrypt_pin_block, kcv

pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")


def test_load_or_create_makes_a_private_file_and_reloads_it(tmp_path: Path) -> None:
    path = tmp_path / "state" / "hsm" / "lmk.json"
    first = Lmk.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not first.is_test
    again = Lmk.load_or_create(path)
    assert again.check_value() == first.check_value()
    assert again.pairs == first.pairs and again.keyblock == first.keyblock
    assert json.loads(path.read_text())["check_value"] == first.check_value()
    assert Lmk.generate().check_value() != first.check_value()
    # every LMK key has odd parity
    assert all(des.adjust_key_parity(p) == p for p in first.pairs)


def test_the_test_lmk_is_fixed_and_repr_hides_keys() -> None:
    lmk = Lmk.test()
    assert lmk.is_test
    assert lmk.check_value() == Lmk.test().check_value()
    assert lmk.check_value() == des.encrypt_tdes_ecb(lmk.pair(0), bytes(8)).hex().upper()
    text = repr(lmk)
    assert lmk.check_value() in text
    assert all(p.hex().upper() not in text.upper() for p in lmk.pairs)


def test_malformed_lmk_configuration_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(LmkError, match="pairs"):
        Lmk.from_dict({"pairs": ["00"], "keyblock": "00" * 32})
    with pytest.raises(LmkError, match="keyblock"):
        Lmk.from_dict({"pairs": ["01" * 16] * 20, "keyblock": "zz"})
    bad = tmp_path / "lmk.json"
    bad.write_text("{not json")
    with pytest.raises(LmkError, match=r"lmk\.json"):
        Lmk.load(bad)
    loaded = Lmk.from_dict(Lmk.test().to_dict())
    assert loaded.check_value() == Lmk.test().check_value()


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_every_command_is_audited_without_secrets() -> None:
    logger = logging.getLogger(AUDIT_LOGGER_NAME)
    capture = _Capture()
    logger.addHandler(capture)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)  # the routine successes (CA rc=00) are DEBUG

    async def scenario() -> None:
        hsm = InProcessHsm(Lmk.test(), authorised=True)
        tpk_clear, zpk_clear = clear_key(), clear_key()
        tpk = await hsm.form_key_from_clear_components(KeyType.TPK, [tpk_clear.hex()])
        zpk = await hsm.form_key_from_clear_components(KeyType.ZPK, [zpk_clear.hex()])
        block = encrypt_pin_block(tpk_clear, "01", "1234", "4012345678909")
        out = await hsm.translate_pin_tpk_to_zpk(
            tpk.key_under_lmk, zpk.key_under_lmk, block, "4012345678909"
        )
        with pytest.raises(HsmError):
            await hsm.translate_pin_tpk_to_zpk(
                zpk.key_under_lmk, zpk.key_under_lmk, block, "4012345678909"
            )
        with pytest.raises(HsmError):
            await hsm.translate_pin_tpk_to_zpk(
                tpk.key_under_lmk, zpk.key_under_lmk, block, "4012345678909", "01", "05"
            )
        lmk_pin = await hsm.encrypt_pin("1234", "4012345678909")
        secrets_seen = [block.hex(), out.hex(), tpk_clear.hex(), zpk_clear.hex(), lmk_pin]
        secrets_seen += [tpk.key_under_lmk, zpk.key_under_lmk, "4012345678909"]
        text = "\n".join(capture.lines).upper()
        for secret in secrets_seen:
            assert secret.upper() not in text
        assert capture.lines[:2] == [
            f"cmd=FK rc=00 kcv={kcv(tpk_clear)}",
            f"cmd=FK rc=00 kcv={kcv(zpk_clear)}",
        ]
        assert capture.lines[2] == f"cmd=CA rc=00 kcv={kcv(tpk_clear)},{kcv(zpk_clear)}"
        assert capture.lines[3] == "cmd=CA rc=10 kcv=-"
        assert capture.lines[4] == "cmd=CA rc=69 kcv=-"
        assert capture.lines[5] == "cmd=BA rc=00 kcv=-"
        assert len(capture.lines) == 6

    try:
        asyncio.run(scenario())
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)


def test_concurrent_first_starts_agree_on_one_lmk(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "lmk.json"
    with ThreadPoolExecutor(max_workers=8) as pool:
        values = list(pool.map(lambda _: Lmk.load_or_create(path).check_value(), range(16)))
    assert len(set(values)) == 1
    assert values[0] == Lmk.load(path).check_value()
    assert [p.name for p in tmp_path.iterdir()] == ["lmk.json"]  # no temporary left behind


def test_a_refused_pin_check_is_audited_once_under_the_command_it_was() -> None:
    """DC/EC and DA/EA share their core methods (``interchange`` picks the command): a
    refusal found before the PIN is looked at leaves one record, under the right command."""
    logger = logging.getLogger(AUDIT_LOGGER_NAME)
    capture = _Capture()
    logger.addHandler(capture)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    pan = "4012345678909"

    async def refused(call: Awaitable[bool]) -> str:
        with pytest.raises(HsmError) as info:
            await call
        return info.value.code

    async def scenario() -> list[str]:
        hsm = InProcessHsm(Lmk.test(), authorised=True)
        tpk_clear = clear_key()
        tpk = await hsm.form_key_from_clear_components(KeyType.TPK, [tpk_clear.hex()])
        zpk = await hsm.form_key_from_clear_components(KeyType.ZPK, [clear_key().hex()])
        pvk = await hsm.form_key_from_clear_components(KeyType.PVK, [clear_key().hex()])
        block = encrypt_pin_block(tpk_clear, "01", "1234", pan)
        t, z, p = tpk.key_under_lmk, zpk.key_under_lmk, pvk.key_under_lmk
        del capture.lines[:]
        return [
            await refused(hsm.verify_pin_pvv(t, p, block, pan, 12, "1234")),
            await refused(hsm.verify_pin_pvv(z, p, block, pan, 1, "12a4", "01", True)),
            await refused(hsm.verify_pin_ibm(t, p, block, pan, "1234", "K000", "N", 3)),
            await refused(hsm.verify_pin_ibm(z, p, block, pan, "1234", "K000", "N", 4, "99", True)),
        ]

    try:
        codes = asyncio.run(scenario())
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)
    assert codes == [errors.INVALID_PVKI, errors.INVALID_INPUT, errors.INVALID_INPUT,
                     errors.INVALID_PIN_FORMAT]  # fmt: skip
    assert capture.lines == [
        f"cmd=DC rc={codes[0]} kcv=-",
        f"cmd=EC rc={codes[1]} kcv=-",
        f"cmd=DA rc={codes[2]} kcv=-",
        f"cmd=EA rc={codes[3]} kcv=-",
    ]
