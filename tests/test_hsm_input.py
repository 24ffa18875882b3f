"""Malformed input gets its payShield error code (never a crash), in-process and on the wire."""

from __future__ import annotations

import asyncio

import pytest

from switch.hsm.client import HsmError, KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.hsm.server import bound_port, start_hsm_server, stop_hsm_server
from tests.test_hsm_server import ask

pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")
PAN = "4012345678909"


def test_in_process_bad_arguments_name_their_field() -> None:
    async def scenario() -> None:
        hsm = InProcessHsm(Lmk.test(), authorised=True)
        tpk = (await hsm.generate_key(KeyType.TPK)).key_under_lmk
        zpk = (await hsm.generate_key(KeyType.ZPK)).key_under_lmk
        pvk = (await hsm.generate_key(KeyType.PVK)).key_under_lmk
        cvk = (await hsm.generate_key(KeyType.CVK)).key_under_lmk
        cases: list[tuple[str, str, object]] = [
            ("15", "pan", hsm.translate_pin_tpk_to_zpk(tpk, zpk, bytes(8), "12345")),
            ("20", "block", hsm.translate_pin_tpk_to_zpk(tpk, zpk, bytes(7), PAN)),
            ("23", "format", hsm.translate_pin_tpk_to_zpk(tpk, zpk, bytes(8), PAN, "99")),
            ("15", "PIN", hsm.encrypt_pin("123", PAN)),
            ("15", "PIN", hsm.encrypt_pin("12a4", PAN)),
            ("21", "PVKI", hsm.verify_pin_pvv(tpk, pvk, bytes(8), PAN, 12, "1234")),
            ("15", "PVV", hsm.verify_pin_pvv(tpk, pvk, bytes(8), PAN, 1, "12345")),
            (
                "15",
                "check length",
                hsm.verify_pin_ibm(tpk, pvk, bytes(8), PAN, "1234", "0" * 16, "N", 3),
            ),
            (
                "25",  # payShield: decimalisation table error (not 16 digits, or weak)
                "decimalisation",
                hsm.verify_pin_ibm(tpk, pvk, bytes(8), PAN, "1234", "0" * 15, "N"),
            ),
            ("15", "expiry", hsm.generate_cvv(cvk, PAN, "1", "101")),
            ("15", "service code", hsm.verify_cvv(cvk, PAN, "2612", "10", "123")),
            (
                "15",
                "ATC",
                hsm.verify_arqc(
                    (await hsm.generate_key(KeyType.MK_AC)).key_under_lmk,
                    PAN,
                    "01",
                    b"\x00",
                    bytes(4),
                    b"data",
                    bytes(8),
                    b"00",
                ),
            ),
            (
                "15",
                "MAC",
                hsm.verify_mac(
                    KeyType.TAK, (await hsm.generate_key(KeyType.TAK)).key_under_lmk, b"x", b"123"
                ),
            ),
            ("04", "key type", hsm.generate_mac(KeyType.ZPK, zpk, b"x")),
            ("15", "components", hsm.form_key_from_clear_components(KeyType.ZPK, ["zz"])),
            (
                "15",
                "components",
                hsm.form_key_from_clear_components(KeyType.ZPK, ["00" * 16, "00" * 8]),
            ),
        ]
        for code, field, call in cases:
            assert asyncio.iscoroutine(call)
            with pytest.raises(HsmError) as info:
                await call
            assert info.value.code == code, (field, info.value)
            assert field.lower() in info.value.message.lower(), (field, info.value.message)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_malformed_commands_on_the_wire() -> None:
    async def scenario() -> None:
        server = await start_hsm_server(Lmk.test(), "127.0.0.1", 0, authorised=True)
        port = bound_port(server)
        try:
            tpk = (await ask(port, b"A0070DU"))[4:37]
            zpk = (await ask(port, b"A00001U"))[4:37]
            pvk = (await ask(port, b"A00002U"))[4:37]
            mk = (await ask(port, b"A00109U"))[4:37]
            tak = (await ask(port, b"A00003U"))[4:37]
            block = b"0123456789ABCDEF"
            cases = [
                (b"CB15", b"CA" + tpk + zpk + b"12" + block + b"0101" + b"40123456789"),  # short
                (b"CB15", b"CA" + tpk + zpk + b"12" + b"0123456789ABCDEG" + b"0101401234567890"),
                (b"CB23", b"CA" + tpk + zpk + b"12" + block + b"0201401234567890"),
                (b"CB15", b"CA" + tpk + zpk + b"1x" + block + b"0101401234567890"),
                (b"CB26", b"CA" + b"Q" + tpk[1:] + zpk + b"12" + block + b"0101401234567890"),
                (b"DD15", b"DC" + tpk + pvk + block + b"01" + b"40123456789A" + b"11234"),
                (b"DB15", b"DA" + tpk + pvk + b"12" + block + b"01" + b"04" + b"401234567890"),
                (b"CX15", b"CW" + mk + b"4012345678909" + b"2612101"),  # no ';'
                (b"KR15", b"KQ19" + mk + bytes(8)),
                (b"KR15", b"KQ11" + mk + bytes.fromhex("4012345678909001")),
                (b"M715", b"M6" + b"0013" + b"1003" + tak + b"0010" + b"short"),
                (b"M715", b"M6" + b"0023" + b"1003" + tak + b"0001" + b"x"),
                (b"M715", b"M6" + b"001" + b"31003" + tak + b"ZZZZ" + b"x"),
                (b"BB15", b"BA" + b"12\xff4F" + b"401234567890"),
                (b"NH20", b"NG" + b"401234567890" + b"0123456789ABCDEF"),
                (b"A715", b"A6" + b"001" + zpk),
                (b"FL15", b"FK" + b"001" + b"U" + b"2" + b"00" * 16),
            ]
            for expected, command in cases:
                assert await ask(port, command) == expected, command
        finally:
            await stop_hsm_server(server)

    asyncio.run(asyncio.wait_for(scenario(), 30))
