"""Every HSM command, in-process and over real TCP, cross-checked against psec / pyemv.

Keys are generated here in the clear (the oracle knows them), loaded into the HSM through
form-key-from-components (authorised state), and every HSM result is compared with what the
independent library computes on the clear keys, plus the published vectors of
docs/architecture.md §5.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable

import pytest
from psec import des, mac, pin, pinblock
from pyemv import ac, kd

from switch.hsm.client import HsmError, KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.keys import KeyStore, key_type
from switch.hsm.lmk import Lmk
from switch.hsm.server import bound_port, start_hsm_server, stop_hsm_server
from switch.hsm.tcp_client import TcpHsmClient

pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")

Hsm = InProcessHsm | TcpHsmClient
Scenario = Callable[[Hsm], Awaitable[None]]
PAN = "4012345678909"


def run_scenario(transport: str, scenario: Scenario, authorised: bool = True) -> None:
    """Run ``scenario`` against an in-process HSM or a TCP server started on a free port."""

    async def main() -> None:
        if transport == "inprocess":
            hsm = InProcessHsm(Lmk.test(), authorised=authorised)
            await scenario(hsm)
            return
        server = await start_hsm_server(Lmk.test(), "127.0.0.1", 0, authorised=authorised)
        client = TcpHsmClient("127.0.0.1", bound_port(server), pool_size=2, timeout=30.0)
        try:
            await scenario(client)
        finally:
            await client.close()
            await stop_hsm_server(server)

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.fixture(params=["inprocess", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


# ---- oracle helpers (psec on clear keys) -------------------------------------------------


def clear_key(length: int = 16) -> bytes:
    return des.adjust_key_parity(secrets.token_bytes(length))


def kcv(key: bytes) -> str:
    return des.generate_kcv(key, 3).hex().upper()


def encrypt_pin_block(key: bytes, fmt: str, pin_value: str, pan: str) -> bytes:
    if fmt == "01":
        clear = pinblock.encode_pinblock_iso_0(pin_value, pan)
    elif fmt == "47":
        clear = pinblock.encode_pinblock_iso_3(pin_value, pan)
    else:  # ISO 1: control 1, length, PIN, random fill
        field = f"1{len(pin_value):X}{pin_value}"
        clear = bytes.fromhex(field + os.urandom(8).hex().upper()[: 16 - len(field)])
    return des.encrypt_tdes_ecb(key, clear)


def decrypt_pin_block(key: bytes, fmt: str, block: bytes, pan: str) -> str:
    clear = des.decrypt_tdes_ecb(key, block)
    if fmt == "01":
        return pinblock.decode_pinblock_iso_0(clear, pan)
    if fmt == "47":
        return pinblock.decode_pinblock_iso_3(clear, pan)
    h = clear.hex().upper()
    assert h[0] == "1"
    return h[2 : 2 + int(h[1], 16)]


async def load(hsm: Hsm, key_type: KeyType, key: bytes) -> str:
    loaded = await hsm.form_key_from_clear_components(key_type, [key.hex().upper()])
    assert loaded.check_value == kcv(key)
    return loaded.key_under_lmk


async def expect_error(code: str, call: Awaitable[object]) -> None:
    with pytest.raises(HsmError) as info:
        await call
    assert info.value.code == code, info.value


# ---- NC, A0, BU, A6, A8, FK --------------------------------------------------------------


def test_diagnostics_reports_the_lmk_check_value(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        value = await hsm.diagnostics()
        pair_00_01 = Lmk.test().pair(0)
        assert value == des.encrypt_tdes_ecb(pair_00_01, bytes(8)).hex().upper()

    run_scenario(transport, scenario)


def test_form_key_from_components_matches_the_published_kcv(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        vector = await hsm.form_key_from_clear_components(
            KeyType.TPK, ["0123456789ABCDEFFEDCBA9876543210"]
        )
        assert vector.check_value == "08D7B4"
        assert vector.key_under_lmk.startswith("U") and len(vector.key_under_lmk) == 33
        a, b, c = clear_key(), clear_key(), clear_key()
        combined = bytes(x ^ y ^ z for x, y, z in zip(a, b, c, strict=True))
        formed = await hsm.form_key_from_clear_components(KeyType.ZPK, [a.hex(), b.hex(), c.hex()])
        assert formed.check_value == kcv(combined)
        assert await hsm.key_check_value(KeyType.ZPK, formed.key_under_lmk) == kcv(combined)

    run_scenario(transport, scenario)


def test_generate_key_and_check_value(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        double = await hsm.generate_key(KeyType.ZPK)
        triple = await hsm.generate_key(KeyType.TAK, triple=True)
        assert double.key_under_lmk[0] == "U" and len(double.key_under_lmk) == 33
        assert triple.key_under_lmk[0] == "T" and len(triple.key_under_lmk) == 49
        assert await hsm.key_check_value(KeyType.ZPK, double.key_under_lmk) == double.check_value
        assert await hsm.key_check_value(KeyType.TAK, triple.key_under_lmk) == triple.check_value
        other = await hsm.generate_key(KeyType.ZPK)
        assert other.key_under_lmk != double.key_under_lmk

    run_scenario(transport, scenario)


def test_key_exchange_under_a_zmk_round_trips(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        zmk_clear = clear_key()
        zmk = await load(hsm, KeyType.ZMK, zmk_clear)
        # A0 mode 1: generated ZPK also under the ZMK (X9.17 scheme X: ECB under the ZMK).
        generated = await hsm.generate_key(KeyType.ZPK, zmk=zmk)
        assert generated.key_under_zmk is not None and generated.key_under_zmk[0] == "X"
        partner_view = des.decrypt_tdes_ecb(zmk_clear, bytes.fromhex(generated.key_under_zmk[1:]))
        assert kcv(partner_view) == generated.check_value
        # A6: a partner's key sent under the ZMK.
        zpk_clear = clear_key()
        sent = "X" + des.encrypt_tdes_ecb(zmk_clear, zpk_clear).hex().upper()
        imported = await hsm.import_key(KeyType.ZPK, zmk, sent)
        assert imported.check_value == kcv(zpk_clear)
        assert await hsm.key_check_value(KeyType.ZPK, imported.key_under_lmk) == kcv(zpk_clear)
        # A8: export back under the ZMK.
        exported = await hsm.export_key(KeyType.ZPK, zmk, imported.key_under_lmk)
        assert exported.key_under_zmk == sent
        # A wrong ZMK (another key) gives a parity error on import.
        other_zmk = await load(hsm, KeyType.ZMK, clear_key())
        with pytest.raises(HsmError) as info:
            await hsm.import_key(KeyType.ZPK, other_zmk, sent)
        assert info.value.code in ("10", "11")

    run_scenario(transport, scenario)


# ---- CA, CC ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src_fmt", "dst_fmt"), [("01", "01"), ("01", "47"), ("47", "01"), ("05", "01"), ("05", "05")]
)
def test_translate_tpk_to_zpk(transport: str, src_fmt: str, dst_fmt: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        tpk_clear, zpk_clear = clear_key(), clear_key()
        tpk = await load(hsm, KeyType.TPK, tpk_clear)
        zpk = await load(hsm, KeyType.ZPK, zpk_clear)
        for pin_value, pan in (("1234", PAN), ("987654321098", "5213410012345678")):
            block = encrypt_pin_block(tpk_clear, src_fmt, pin_value, pan)
            out = await hsm.translate_pin_tpk_to_zpk(tpk, zpk, block, pan, src_fmt, dst_fmt)
            assert decrypt_pin_block(zpk_clear, dst_fmt, out, pan) == pin_value

    run_scenario(transport, scenario)


def test_translate_zpk_to_zpk(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        src_clear, dst_clear = clear_key(), clear_key()
        src = await load(hsm, KeyType.ZPK, src_clear)
        dst = await load(hsm, KeyType.ZPK, dst_clear)
        block = encrypt_pin_block(src_clear, "01", "4321", PAN)
        out = await hsm.translate_pin_zpk_to_zpk(src, dst, block, PAN)
        assert decrypt_pin_block(dst_clear, "01", out, PAN) == "4321"
        assert out != block

    run_scenario(transport, scenario)


@pytest.mark.parametrize("src_fmt", ["01", "47"])
def test_translation_of_a_pan_bound_block_to_format_1_is_refused(
    transport: str, src_fmt: str
) -> None:
    async def scenario(hsm: Hsm) -> None:
        tpk_clear = clear_key()
        tpk = await load(hsm, KeyType.TPK, tpk_clear)
        zpk = await load(hsm, KeyType.ZPK, clear_key())
        block = encrypt_pin_block(tpk_clear, src_fmt, "1234", PAN)
        await expect_error("69", hsm.translate_pin_tpk_to_zpk(tpk, zpk, block, PAN, src_fmt, "05"))
        await expect_error("69", hsm.translate_pin_zpk_to_zpk(zpk, zpk, block, PAN, src_fmt, "05"))

    run_scenario(transport, scenario)


def test_translate_refuses_bad_blocks_and_formats(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        tpk_clear = clear_key()
        tpk = await load(hsm, KeyType.TPK, tpk_clear)
        zpk = await load(hsm, KeyType.ZPK, clear_key())
        block = encrypt_pin_block(tpk_clear, "01", "1234", PAN)
        await expect_error("23", hsm.translate_pin_tpk_to_zpk(tpk, zpk, block, PAN, "02", "01"))
        garbage = des.encrypt_tdes_ecb(tpk_clear, bytes.fromhex("0F" * 8))
        await expect_error("20", hsm.translate_pin_tpk_to_zpk(tpk, zpk, garbage, PAN))

    run_scenario(transport, scenario)


# ---- wrong key types and parity ----------------------------------------------------------


def test_a_key_used_as_another_type_is_refused(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        tpk_clear, zpk_clear, pvk_clear = clear_key(), clear_key(), clear_key()
        tpk = await load(hsm, KeyType.TPK, tpk_clear)
        zpk = await load(hsm, KeyType.ZPK, zpk_clear)
        pvk = await load(hsm, KeyType.PVK, pvk_clear)
        # A PVK (002) presented as a TPK (70D): other LMK variant -> parity error 10.
        block = encrypt_pin_block(pvk_clear, "01", "1234", PAN)
        await expect_error("10", hsm.translate_pin_tpk_to_zpk(pvk, zpk, block, PAN))
        # A ZPK as the source TPK, a TPK as the destination ZPK.
        await expect_error("10", hsm.translate_pin_tpk_to_zpk(zpk, zpk, block, PAN))
        await expect_error("11", hsm.translate_pin_tpk_to_zpk(tpk, tpk, block, PAN))
        # A TPK used as the PVK of a PVV check, and as a CVK.
        await expect_error("11", hsm.verify_pin_pvv(tpk, tpk, block, PAN, 1, "1234"))
        await expect_error("10", hsm.generate_cvv(tpk, PAN, "2612", "101"))
        await expect_error("10", hsm.key_check_value(KeyType.PVK, tpk))

    run_scenario(transport, scenario)


def test_a_corrupted_cryptogram_fails_parity(transport: str) -> None:
    # A flipped cipher digit decrypts to 8 random bytes, which are all odd parity once in 256
    # tries, so the corrupted cryptogram is made deterministic: a ZPK whose second byte has
    # even parity, encrypted under the test LMK.
    bad = bytearray(clear_key())
    bad[1] ^= 0x01
    corrupted = KeyStore(Lmk.test()).encrypt(bytes(bad), key_type(KeyType.ZPK.value))

    async def scenario(hsm: Hsm) -> None:
        zpk = (await hsm.generate_key(KeyType.ZPK)).key_under_lmk
        await expect_error("10", hsm.key_check_value(KeyType.ZPK, corrupted))
        await expect_error("15", hsm.key_check_value(KeyType.ZPK, "U1234"))
        await expect_error("26", hsm.key_check_value(KeyType.ZPK, "Q" + zpk[1:]))

    run_scenario(transport, scenario)


# ---- DC / EC (PVV), DA / EA (IBM 3624) ---------------------------------------------------


def test_pvv_vector_and_cross_check(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        pvk_clear = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
        pvk = await load(hsm, KeyType.PVK, pvk_clear)
        tpk_clear, zpk_clear = clear_key(), clear_key()
        tpk = await load(hsm, KeyType.TPK, tpk_clear)
        zpk = await load(hsm, KeyType.ZPK, zpk_clear)
        pan = "1122334455667788"
        block = encrypt_pin_block(tpk_clear, "01", "4524", pan)
        assert await hsm.verify_pin_pvv(tpk, pvk, block, pan, 3, "4021")  # published vector
        assert not await hsm.verify_pin_pvv(tpk, pvk, block, pan, 3, "4022")
        for fmt in ("01", "47"):
            pin_value = f"{secrets.randbelow(10**4):04d}"
            expected = pin.generate_visa_pvv(pvk_clear, "1", pin_value, PAN)
            zblock = encrypt_pin_block(zpk_clear, fmt, pin_value, PAN)
            assert await hsm.verify_pin_pvv(zpk, pvk, zblock, PAN, 1, expected, fmt, True)
            # the wrong PIN is one whose PVV (by the oracle) differs from the right PIN's
            other_pin = next(
                p
                for p in (f"{(int(pin_value) + i) % 10**4:04d}" for i in range(1, 10))
                if pin.generate_visa_pvv(pvk_clear, "1", p, PAN) != expected
            )
            wrong = encrypt_pin_block(zpk_clear, fmt, other_pin, PAN)
            assert not await hsm.verify_pin_pvv(zpk, pvk, wrong, PAN, 1, expected, fmt, True)
        # The same ZPK block under the terminal command (DC expects a TPK): refused.
        await expect_error("10", hsm.verify_pin_pvv(zpk, pvk, block, pan, 3, "4021"))

    run_scenario(transport, scenario)


def test_ibm_offset_cross_check(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        pvk_clear = clear_key()
        pvk = await load(hsm, KeyType.PVK, pvk_clear)
        tpk_clear, zpk_clear = clear_key(), clear_key()
        tpk = await load(hsm, KeyType.TPK, tpk_clear)
        zpk = await load(hsm, KeyType.ZPK, zpk_clear)
        table = "0123456789012345"
        pan = "5213410012345678"
        # payShield validation data: 11 hex + N (N = last 5 digits of the account number).
        data = "12345678901N"
        full = data[:-1] + pan[-6:-1]
        pin_value = "2468"
        offset = pin.generate_ibm3624_offset(pvk_clear, table, pin_value, full, 0, 16, "F")
        block = encrypt_pin_block(tpk_clear, "01", pin_value, pan)
        assert await hsm.verify_pin_ibm(tpk, pvk, block, pan, offset, table, data)
        assert await hsm.verify_pin_ibm(tpk, pvk, block, pan, offset, table, full)
        assert not await hsm.verify_pin_ibm(
            tpk, pvk, encrypt_pin_block(tpk_clear, "01", "2469", pan), pan, offset, table, data
        )
        zblock = encrypt_pin_block(zpk_clear, "47", pin_value, pan)
        assert await hsm.verify_pin_ibm(
            zpk, pvk, zblock, pan, offset, table, data, pin_format="47", interchange=True
        )

    run_scenario(transport, scenario)


# ---- BA / DG / NG (authorised state) -----------------------------------------------------


def test_personalisation_pin_under_lmk_and_pvv(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        pvk_clear = clear_key()
        pvk = await load(hsm, KeyType.PVK, pvk_clear)
        lmk_pin = await hsm.encrypt_pin("7391", PAN)
        assert len(lmk_pin) == 16 and "7391" not in lmk_pin
        pvv = await hsm.generate_pvv(pvk, lmk_pin, PAN, 1)
        assert pvv == pin.generate_visa_pvv(pvk_clear, "1", "7391", PAN)
        assert await hsm.decrypt_pin(lmk_pin, PAN) == "7391"

    run_scenario(transport, scenario)


def test_authorised_only_commands_are_refused_by_default(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        await expect_error("17", hsm.encrypt_pin("1234", PAN))
        await expect_error("17", hsm.form_key_from_clear_components(KeyType.ZPK, ["11" * 16]))
        pvk = (await hsm.generate_key(KeyType.PVK)).key_under_lmk
        await expect_error("17", hsm.generate_pvv(pvk, "00" * 8, PAN, 1))
        await expect_error("17", hsm.decrypt_pin("00" * 8, PAN))

    run_scenario(transport, scenario, authorised=False)


# ---- CW / CY -----------------------------------------------------------------------------


def test_cvv_vector_and_cross_check(transport: str) -> None:
    async def scenario(hsm: Hsm) -> None:
        cvk = await load(hsm, KeyType.CVK, bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))
        assert await hsm.generate_cvv(cvk, "4123456789012345", "8701", "101") == "561"
        assert await hsm.verify_cvv(cvk, "4123456789012345", "8701", "101", "561")
        assert not await hsm.verify_cvv(cvk, "4123456789012345", "8701", "101", "562")
        cvk_clear = clear_key()
        cvk2 = await load(hsm, KeyType.CVK, cvk_clear)
        for service_code in ("101", "000", "999"):
            expected = psec_cvv(cvk_clear, PAN + "123", "2705", service_code)
            assert await hsm.generate_cvv(cvk2, PAN + "123", "2705", service_code) == expected
        await expect_error("15", hsm.generate_cvv(cvk2, PAN, "27A5", "101"))

    run_scenario(transport, scenario)


def psec_cvv(key: bytes, pan: str, expiry: str, service_code: str) -> str:
    from psec import cvv

    value: str = cvv.generate_cvv(key, pan, expiry, service_code)
    return value


# ---- KQ ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [1, 2])
def test_arqc_verification_and_arpc(transport: str, method: int) -> None:
    async def scenario(hsm: Hsm) -> None:
        imk = clear_key()
        mk_ac = await load(hsm, KeyType.MK_AC, imk)
        pan, psn = "5213410012345678", "01"
        atc, un = bytes.fromhex("001C"), bytes.fromhex("1A2B3C4D")
        data = bytes.fromhex("000000010000000000000000001200000000000012251129") + un + atc
        data += bytes.fromhex("5C00000000")
        icc = kd.derive_icc_mk_a(imk, pan, psn)
        session = kd.derive_common_sk(icc, atc + bytes(6))
        arqc = ac.generate_ac(session, data)
        arc, csu = b"00", bytes.fromhex("00820000")
        expected = (
            ac.generate_arpc_1(session, arqc, arc)
            if method == 1
            else ac.generate_arpc_2(session, arqc, csu)
        )
        arpc = await hsm.verify_arqc(mk_ac, pan, psn, atc, un, data, arqc, arc, method, csu)
        assert arpc == expected
        bad = bytes([arqc[0] ^ 1]) + arqc[1:]
        assert await hsm.verify_arqc(mk_ac, pan, psn, atc, un, data, bad, arc, method, csu) is None

    run_scenario(transport, scenario)


# ---- M6 / M8 -----------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", [KeyType.TAK, KeyType.ZAK])
def test_mac_vector_and_cross_check(transport: str, key_type: KeyType) -> None:
    async def scenario(hsm: Hsm) -> None:
        key_clear = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
        key = await load(hsm, key_type, key_clear)
        value = await hsm.generate_mac(key_type, key, b"Now is the time for all ")
        assert value.hex().upper().startswith("A1C72E74")
        other_clear = clear_key()
        other = await load(hsm, key_type, other_clear)
        data = os.urandom(97)
        expected = mac.generate_retail_mac(other_clear[:8], other_clear[8:], data, 1)
        assert await hsm.generate_mac(key_type, other, data) == expected
        assert await hsm.verify_mac(key_type, other, data, expected)
        assert await hsm.verify_mac(key_type, other, data, expected[:4])
        assert not await hsm.verify_mac(key_type, other, data + b"x", expected)
        wrong = KeyType.ZAK if key_type is KeyType.TAK else KeyType.TAK
        await expect_error("10", hsm.generate_mac(wrong, other, data))

    run_scenario(transport, scenario)
