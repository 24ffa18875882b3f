"""What payShield accepts and host clients send, over TCP as such a client writes it: legacy
untagged double-length keys, 12-digit PANs in CW/CY, M6/M8 padding methods 0 and 3, text
input and multi-block mode, key type FFF with a key block, and the B2 echo.

Commands are raw frames (``tests.hsm_peer``), keys are LMK cryptograms computed with psec
under the public test LMK, and every cryptographic answer is compared with psec / pyemv.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import pytest
from psec import cvv, des, mac, pin, pinblock, tr31
from pyemv import ac, kd

from switch.hsm.lmk import Lmk
from switch.hsm.server import bound_port, start_hsm_server, stop_hsm_server
from switch.hsm.tcp_client import TcpHsmClient
from tests.hsm_peer import ask, under_lmk

pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")

PAN = "4012345678909"


def serve(scenario: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        server = await start_hsm_server(Lmk.test(), "127.0.0.1", 0)
        try:
            await scenario(bound_port(server))
        finally:
            await stop_hsm_server(server)

    asyncio.run(asyncio.wait_for(main(), 30))


def clear_key() -> bytes:
    return des.adjust_key_parity(secrets.token_bytes(16))


def kcv(key: bytes) -> str:
    return des.generate_kcv(key, 3).hex().upper()


# ---- untagged 32 H double-length keys (payShield's legacy "32H or 1A+32H") ------------------


def test_untagged_double_length_cvk_pvk_and_bu() -> None:
    cvk, pvk, tpk = clear_key(), clear_key(), clear_key()
    legacy_cvk, legacy_pvk = under_lmk(cvk, "CVK", ""), under_lmk(pvk, "PVK", "")
    assert len(legacy_cvk) == 32 and len(legacy_pvk) == 32

    async def scenario(port: int) -> None:
        # CW / CY with CVK A || CVK B untagged
        expected = cvv.generate_cvv(cvk, PAN, "2612", "101")
        for key in (legacy_cvk, under_lmk(cvk, "CVK")):
            assert await ask(port, f"CW{key}{PAN};2612101".encode()) == f"CX00{expected}".encode()
            assert await ask(port, f"CY{key}{expected}{PAN};2612101".encode()) == b"CZ00"
        wrong = f"{(int(expected) + 1) % 1000:03d}"
        assert await ask(port, f"CY{legacy_cvk}{wrong}{PAN};2612101".encode()) == b"CZ01"
        # DC with the PVK pair untagged
        pvv = pin.generate_visa_pvv(pvk, "1", "4321", PAN)
        block = des.encrypt_tdes_ecb(tpk, pinblock.encode_pinblock_iso_0("4321", PAN))
        account = PAN[:-1][-12:]
        dc = f"DC{under_lmk(tpk, 'TPK')}{legacy_pvk}{block.hex().upper()}01{account}1{pvv}"
        assert await ask(port, dc.encode()) == b"DD00"
        # DA with the PVK pair untagged
        data = "12345678901N"
        full = data[:-1] + PAN[-6:-1]
        table = "0123456789012345"
        offset = pin.generate_ibm3624_offset(pvk, table, "4321", full, 0, 16, "F")
        da = (
            f"DA{under_lmk(tpk, 'TPK')}{legacy_pvk}12{block.hex().upper()}0104{account}"
            f"{table}{data}{offset.ljust(12, 'F')}"
        )
        assert await ask(port, da.encode()) == b"DB00"
        # BU: key length flag 1 with the untagged form, legacy and FF forms
        assert await ask(port, f"BU021{legacy_pvk}".encode()) == f"BV00{kcv(pvk)}".encode()
        assert await ask(port, f"BUFF1{legacy_cvk};402".encode()) == f"BV00{kcv(cvk)}".encode()
        # The U form's body without its tag is not the legacy form: a parity error, not a key
        u_body = under_lmk(cvk, "CVK")[1:]
        assert await ask(port, f"CW{u_body}{PAN};2612101".encode()) == b"CX10"

    serve(scenario)


# ---- CW / CY with short PANs ----------------------------------------------------------------


@pytest.mark.parametrize("pan", ["412345678901", "4012345678909", "6011000990139424111"])
def test_cvv_for_pans_of_12_to_19_digits(pan: str) -> None:
    cvk = clear_key()

    async def scenario(port: int) -> None:
        key = under_lmk(cvk, "CVK")
        expected = cvv.generate_cvv(cvk, pan, "2701", "000")
        assert await ask(port, f"CW{key}{pan};2701000".encode()) == f"CX00{expected}".encode()
        assert await ask(port, f"CY{key}{expected}{pan};2701000".encode()) == b"CZ00"

    serve(scenario)


def test_cvv_refuses_a_pan_of_20_digits_or_none() -> None:
    async def scenario(port: int) -> None:
        key = under_lmk(clear_key(), "CVK")
        assert await ask(port, f"CW{key}{'4' * 20};2701000".encode()) == b"CX15"
        assert await ask(port, f"CW{key};2701000".encode()) == b"CX15"

    serve(scenario)


# ---- M6 / M8 --------------------------------------------------------------------------------


def m6(
    key: str,
    message: bytes,
    *,
    mode: str = "0",
    fmt: str = "0",
    size: str = "1",
    algorithm: str = "3",
    padding: str = "1",
    key_type: str = "003",
    iv: str = "",
    verb: str = "M6",
    mac_field: str = "",
) -> bytes:
    body = message.hex().upper().encode() if fmt == "1" else message
    head = f"{verb}{mode}{fmt}{size}{algorithm}{padding}{key_type}{key}{iv}{len(body):04X}"
    return head.encode() + body + mac_field.encode()


def retail(key: bytes, data: bytes, padding: int) -> str:
    value: bytes = mac.generate_retail_mac(key[:8], key[8:], data, padding)
    return value.hex().upper()


def test_mac_padding_methods_0_1_2_3_and_input_formats() -> None:
    tak = clear_key()
    key = under_lmk(tak, "TAK")

    async def scenario(port: int) -> None:
        aligned = secrets.token_bytes(24)
        text = b"AMOUNT=000000012500;CUR=012"
        # padding 0: no padding, the message must be whole blocks (80 otherwise)
        assert (
            await ask(port, m6(key, aligned, padding="0"))
            == b"M700" + retail(tak, aligned, 1).encode()
        )
        assert await ask(port, m6(key, aligned[:20], padding="0")) == b"M780"
        for padding in (1, 2, 3):
            for fmt in ("0", "1", "2"):
                answer = await ask(port, m6(key, text, fmt=fmt, padding=str(padding)))
                assert answer == b"M700" + retail(tak, text, padding).encode(), (padding, fmt)
        # MAC size 0: 8 H; algorithm 1 (CBC-MAC under the whole key)
        cbc = mac.generate_cbc_mac(tak, text, 2).hex().upper()
        assert await ask(port, m6(key, text, size="0", algorithm="1", padding="2")) == (
            b"M700" + cbc[:8].encode()
        )
        good = retail(tak, text, 3)
        assert await ask(port, m6(key, text, padding="3", verb="M8", mac_field=good)) == b"M900"
        bad = retail(tak, text, 2)
        assert await ask(port, m6(key, text, padding="3", verb="M8", mac_field=bad)) == b"M901"
        assert await ask(port, m6(key, "é".encode(), fmt="2")) == b"M715"  # text is ASCII

    serve(scenario)


def test_multi_block_mac_carries_the_iv_between_calls() -> None:
    tak = clear_key()
    key = under_lmk(tak, "TAK")
    message = secrets.token_bytes(40) + b"tail of the message"

    async def scenario(port: int) -> None:
        for padding, algorithm in (("1", "3"), ("2", "3"), ("0", "3"), ("2", "1")):
            data = message if padding != "0" else message[:40]  # padding 0: whole blocks
            first, middle, tail = data[:16], data[16:32], data[32:]
            answer = await ask(port, m6(key, first, mode="1", algorithm=algorithm))
            assert answer[:4] == b"M700" and len(answer) == 20
            iv = answer[4:].decode()
            answer = await ask(port, m6(key, middle, mode="2", algorithm=algorithm, iv=iv))
            assert answer[:4] == b"M700"
            iv = answer[4:].decode()
            answer = await ask(
                port, m6(key, tail, mode="3", algorithm=algorithm, padding=padding, iv=iv)
            )
            if algorithm == "3":
                expected = retail(tak, data, int(padding) or 1)
            else:
                expected = mac.generate_cbc_mac(tak, data, int(padding)).hex().upper()
            assert answer == b"M700" + expected.encode(), (padding, algorithm)
            # M8 chains the same way and checks the last block's MAC
            answer = await ask(port, m6(key, first, mode="1", algorithm=algorithm, verb="M8"))
            iv8 = answer[4:].decode()
            answer = await ask(
                port, m6(key, middle, mode="2", algorithm=algorithm, iv=iv8, verb="M8")
            )
            iv8 = answer[4:].decode()
            check = m6(
                key,
                tail,
                mode="3",
                algorithm=algorithm,
                padding=padding,
                iv=iv8,
                verb="M8",
                mac_field=expected,
            )
            assert await ask(port, check) == b"M900"
        # first and middle blocks must be whole 8-byte blocks
        assert await ask(port, m6(key, message[:12], mode="1")) == b"M780"
        # the intermediate value is not the clear CBC state (it is encrypted under the LMK)
        state = des.encrypt_tdes_cbc(tak[:8], bytes(8), message[:16])[-8:].hex().upper()
        assert (await ask(port, m6(key, message[:16], mode="1")))[4:].decode() != state
        # padding method 3 needs the whole message
        assert await ask(port, m6(key, message, mode="3", padding="3", iv="0" * 16)) == b"M715"

    serve(scenario)


def test_mac_key_type_fff_takes_the_key_block_usage() -> None:
    tak = clear_key()
    # An independent TR-31 version D block (psec) under the test key block LMK, usage M3.
    block = tr31.wrap(Lmk.test().keyblock, "D0000M3TB00N0000", tak)
    key = "S" + block

    async def scenario(port: int) -> None:
        text = b"key block MAC"
        expected = b"M700" + retail(tak, text, 2).encode()
        assert await ask(port, m6(key, text, padding="2", key_type="FFF")) == expected
        assert await ask(port, m6(key, text, padding="2", key_type="003")) == expected
        # FFF with a variant key, or a block whose usage is not a MAC key: refused
        assert await ask(port, m6(under_lmk(tak, "TAK"), text, key_type="FFF")) == b"M704"
        pvk_block = "S" + tr31.wrap(Lmk.test().keyblock, "D0000V2TB00N0000", tak)
        assert await ask(port, m6(pvk_block, text, key_type="FFF")) == b"M729"

    serve(scenario)


# ---- B2: echo -------------------------------------------------------------------------------


def test_b2_echo_answers_b3_with_the_data() -> None:
    async def scenario(port: int) -> None:
        assert await ask(port, b"B20004PING") == b"B300PING"
        assert await ask(port, b"B20000") == b"B300"
        assert await ask(port, b"B2000APING") == b"B315"  # shorter than announced
        assert await ask(port, b"B20002PING") == b"B315"  # longer than announced

    serve(scenario)


def test_untagged_mk_ac_in_kq_and_pvk_pair_in_dg() -> None:
    """KQ's MK-AC and DG's PVK pair in the legacy 32 H form (the emulator's own TCP client
    writes the fields; the keys and expected values come from psec / pyemv)."""
    imk, pvk = clear_key(), clear_key()
    pan, psn = "5413330089020011", "01"
    atc, un = bytes.fromhex("0042"), bytes.fromhex("11223344")
    data = bytes.fromhex("000000001000000000000000097800000000000978230101003800000042")
    icc = kd.derive_icc_mk_a(imk, pan, psn)
    session = kd.derive_common_sk(icc, atc + bytes(6))
    arqc = ac.generate_ac(session, data)
    arpc = ac.generate_arpc_1(session, arqc, b"00")

    async def main() -> None:
        server = await start_hsm_server(Lmk.test(), "127.0.0.1", 0, authorised=True)
        client = TcpHsmClient("127.0.0.1", bound_port(server), timeout=30.0)
        try:
            mk_ac = under_lmk(imk, "MK-AC", "")
            assert await client.verify_arqc(mk_ac, pan, psn, atc, un, data, arqc, b"00") == arpc
            lmk_pin = await client.encrypt_pin("4321", PAN)
            legacy_pvk = under_lmk(pvk, "PVK", "")
            expected = pin.generate_visa_pvv(pvk, "1", "4321", PAN)
            assert await client.generate_pvv(legacy_pvk, lmk_pin, PAN, 1) == expected
        finally:
            await client.close()
            await stop_hsm_server(server)

    asyncio.run(asyncio.wait_for(main(), 30))
