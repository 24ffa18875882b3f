"""AES keys in TR-31 key blocks (scheme S) and ISO 9564 format 4 (payShield code 48)."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from psec import pinblock

from switch.hsm.client import KeyType
from tests.test_hsm_commands import (
    Hsm,
    clear_key,
    decrypt_pin_block,
    encrypt_pin_block,
    expect_error,
    run_scenario,
    transport,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")
__all__ = ["transport"]  # the fixture, re-used
PAN = "5213410012345678901"  # 19 digits: format 4 binds the whole PAN


def aes_kcv(key: bytes) -> str:
    mac = CMAC(algorithms.AES(key))
    mac.update(bytes(16))
    return mac.finalize()[:3].hex().upper()


async def load_aes(hsm: Hsm, key_type: KeyType, key: bytes) -> str:
    loaded = await hsm.form_key_from_clear_components(key_type, [key.hex()], key_scheme="S")
    assert loaded.key_under_lmk.startswith("SD")
    assert loaded.check_value == aes_kcv(key)
    return loaded.key_under_lmk


def test_format_4_translations_between_aes_and_des_keys(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        tpk_aes, zpk_aes = secrets.token_bytes(16), secrets.token_bytes(16)
        tpk = await load_aes(hsm, KeyType.TPK, tpk_aes)
        zpk = await load_aes(hsm, KeyType.ZPK, zpk_aes)
        block = pinblock.encipher_pinblock_iso_4(tpk_aes, "123456", PAN)
        out = await hsm.translate_pin_tpk_to_zpk(tpk, zpk, block, PAN, "48", "48")
        assert len(out) == 16
        assert pinblock.decipher_pinblock_iso_4(zpk_aes, out, PAN) == "123456"
        # DES TPK (format 0) -> AES ZPK (format 4) and back to a DES ZPK.
        tpk_des_clear, zpk_des_clear = clear_key(), clear_key()
        tpk_des = await hsm.form_key_from_clear_components(KeyType.TPK, [tpk_des_clear.hex()])
        zpk_des = await hsm.form_key_from_clear_components(KeyType.ZPK, [zpk_des_clear.hex()])
        des_block = encrypt_pin_block(tpk_des_clear, "01", "8080", PAN)
        up = await hsm.translate_pin_tpk_to_zpk(
            tpk_des.key_under_lmk, zpk, des_block, PAN, "01", "48"
        )
        assert pinblock.decipher_pinblock_iso_4(zpk_aes, up, PAN) == "8080"
        down = await hsm.translate_pin_zpk_to_zpk(zpk, zpk_des.key_under_lmk, up, PAN, "48", "01")
        assert decrypt_pin_block(zpk_des_clear, "01", down, PAN) == "8080"
        # PAN-bound format 4 never becomes format 1.
        await expect_error(
            "69", hsm.translate_pin_zpk_to_zpk(zpk, zpk_des.key_under_lmk, up, PAN, "48", "05")
        )

    run_scenario(transport, scenario)


def test_key_block_usage_is_enforced(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        zpk_aes = secrets.token_bytes(16)
        zpk = await load_aes(hsm, KeyType.ZPK, zpk_aes)
        other = await load_aes(hsm, KeyType.ZPK, secrets.token_bytes(16))
        block = pinblock.encipher_pinblock_iso_4(zpk_aes, "1234", PAN)
        # A ZPK key block (usage P0) presented as the TPK of CA: key function not permitted.
        await expect_error("29", hsm.translate_pin_tpk_to_zpk(zpk, other, block, PAN, "48", "48"))
        # Tampered key block: its MAC fails.
        tampered = zpk[:-1] + ("0" if zpk[-1] != "0" else "1")
        await expect_error("15", hsm.key_check_value(KeyType.ZPK, tampered))

    run_scenario(transport, scenario)


def test_generated_key_block_keys(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        zpk = await hsm.generate_key(KeyType.ZPK, key_scheme="S")
        assert zpk.key_under_lmk.startswith("SD") and "P0A" in zpk.key_under_lmk[:10]
        assert await hsm.key_check_value(KeyType.ZPK, zpk.key_under_lmk) == zpk.check_value
        tak = await hsm.generate_key(KeyType.TAK, key_scheme="S")  # 3DES in a key block
        assert "M3T" in tak.key_under_lmk[:10]
        mac = await hsm.generate_mac(KeyType.TAK, tak.key_under_lmk, b"message")
        assert await hsm.verify_mac(KeyType.TAK, tak.key_under_lmk, b"message", mac)
        zmk = (await hsm.generate_key(KeyType.ZMK)).key_under_lmk
        await expect_error("29", hsm.export_key(KeyType.TAK, zmk, tak.key_under_lmk))

    run_scenario(transport, scenario)
