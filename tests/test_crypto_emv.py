"""EMV issuer cryptography (option A master keys, common session keys, AC, ARPC 1 and 2)
against pyemv 1.5.0 and the examples documented with it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import switch_native as sn
from pyemv import ac as pyemv_ac
from pyemv import kd as pyemv_kd

from tests.test_crypto_support import CASES, IGNORE_3DES_DEPRECATION, digits, rng

pytestmark = IGNORE_3DES_DEPRECATION

K2 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_documented_examples() -> None:
    mk = sn.emv_derive_icc_master_key_option_a(K2, "12345678901234567", "01")
    assert mk.hex().upper() == "73AD54688CEF2934B0979857E3C719F1"
    sk = sn.emv_derive_common_session_key(K2, bytes.fromhex("001C"))
    assert sk.hex().upper() == "E9FB384AF807B940FEDCEA613461B0C4"
    sk = bytes.fromhex("29B33180E567CE38EA4CBC9D753B0E61")
    data = bytes.fromhex("0123456789ABCDEF0123456789ABCDEF")
    arqc = sn.emv_generate_ac(sk, data)
    assert arqc.hex().upper() == "FA624250B008B59A"
    assert sn.emv_arpc_method1(sk, arqc, bytes(2)).hex().upper() == "45D4255EEF10C920"
    assert sn.emv_arpc_method2(sk, arqc, bytes(4)).hex().upper() == "CB56FA40"


def test_full_chain_matches_pyemv() -> None:
    r = rng(30)
    for _ in range(CASES):
        imk = r.randbytes(16)
        pan = digits(r, r.randint(12, 19))
        psn = digits(r, 2)
        atc = r.randbytes(2)
        mk = sn.emv_derive_icc_master_key_option_a(imk, pan, psn)
        assert mk == pyemv_kd.derive_icc_mk_a(imk, pan, psn)
        sk = sn.emv_derive_common_session_key(mk, atc)
        assert sk == pyemv_kd.derive_common_sk(mk, atc + bytes(6))
        # CDOL1-style data: amounts, country, TVR, currency, date, type, UN, AIP, ATC, CVR.
        data = r.randbytes(r.choice([29, 33, 37, 40, 45]))
        arqc = sn.emv_generate_ac(sk, data)
        assert arqc == pyemv_ac.generate_ac(sk, data)
        assert sn.emv_verify_ac(sk, data, arqc)
        assert not sn.emv_verify_ac(sk, data + b"\x00", arqc)
        arc = r.randbytes(2)
        assert sn.emv_arpc_method1(sk, arqc, arc) == pyemv_ac.generate_arpc_1(sk, arqc, arc)
        csu, pad = r.randbytes(4), r.randbytes(r.randint(0, 8))
        assert sn.emv_arpc_method2(sk, arqc, csu, pad) == pyemv_ac.generate_arpc_2(
            sk, arqc, csu, pad
        )


def test_session_key_accepts_a_whole_r() -> None:
    r = bytes.fromhex("001C0000AABBCCDD")
    assert sn.emv_derive_common_session_key(K2, r) == pyemv_kd.derive_common_sk(K2, r)


def test_errors_name_the_argument() -> None:
    sk = K2
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: sn.emv_derive_icc_master_key_option_a(bytes(8), "1234567890123", "00"), "imk: "),
        (lambda: sn.emv_derive_icc_master_key_option_a(K2, "12345", "00"), "pan: "),
        (lambda: sn.emv_derive_icc_master_key_option_a(K2, "1234567890123", "0"), "pan_sequence: "),
        (lambda: sn.emv_derive_common_session_key(K2, bytes(3)), "atc: "),
        (lambda: sn.emv_derive_common_session_key(bytes(24), bytes(2)), "icc_master_key: "),
        (lambda: sn.emv_generate_ac(bytes(8), b"x"), "session_key: "),
        (lambda: sn.emv_verify_ac(sk, b"x", bytes(4)), "ac: "),
        (lambda: sn.emv_arpc_method1(sk, bytes(7), bytes(2)), "arqc: "),
        (lambda: sn.emv_arpc_method1(sk, bytes(8), bytes(3)), "arc: "),
        (lambda: sn.emv_arpc_method2(sk, bytes(8), bytes(3)), "csu: "),
        (lambda: sn.emv_arpc_method2(sk, bytes(8), bytes(4), bytes(9)), "proprietary_auth_data: "),
    ]
    for call, prefix in cases:
        with pytest.raises(sn.CryptoError) as info:
            call()
        assert str(info.value).startswith(prefix), (prefix, str(info.value))
