"""Visa PVV, IBM 3624 offsets and CVV/CVV2/iCVV against psec and the published vectors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import switch_native as sn
from psec import cvv as psec_cvv
from psec import pin as psec_pin

from tests.test_crypto_support import (
    CASES,
    IGNORE_3DES_DEPRECATION,
    digits,
    expand_2key,
    pan,
    pin,
    rng,
    tdes_key,
)

pytestmark = IGNORE_3DES_DEPRECATION

K2 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
DEC_TABLE = "1234567890123456"


def test_published_vectors() -> None:
    assert sn.pvv_generate(K2, "1122334455667788", 3, "4524") == "4021"
    assert sn.cvv_generate(K2, "4123456789012345", "8701", "101") == "561"
    offset = sn.ibm3624_offset_generate(K2, "1234", "1122334455667788", DEC_TABLE, 4)
    assert offset == "7710"
    assert sn.ibm3624_offset_generate(K2, "4524", "1122334455667788", DEC_TABLE, 4) == "0000"


def test_pvv_matches_psec_and_verifies() -> None:
    r = rng(20)
    for _ in range(CASES):
        pvk, a, pvki = tdes_key(r), pan(r), r.randint(0, 9)
        p = digits(r, 4)
        pvv = sn.pvv_generate(pvk, a, pvki, p)
        assert pvv == psec_pin.generate_visa_pvv(expand_2key(pvk), str(pvki), p, a)
        zpk = tdes_key(r)
        fmt = r.choice([0, 3])
        block = sn.pin_block_encrypt(zpk, fmt, p, a)
        assert sn.pvv_verify(zpk, fmt, block, a, pvk, pvki, pvv)
        wrong = f"{(int(pvv) + 1) % 10000:04d}"
        assert not sn.pvv_verify(zpk, fmt, block, a, pvk, pvki, wrong)
        other_pin = f"{(int(p) + 1) % 10000:04d}"
        other = sn.pin_block_encrypt(zpk, fmt, other_pin, a)
        assert sn.pvv_verify(zpk, fmt, other, a, pvk, pvki, pvv) == (
            sn.pvv_generate(pvk, a, pvki, other_pin) == pvv
        )


def test_pvv_uses_the_leftmost_four_digits_of_longer_pins() -> None:
    assert sn.pvv_generate(K2, "1122334455667788", 3, "452499") == "4021"


def test_ibm3624_matches_psec_and_verifies() -> None:
    r = rng(21)
    for _ in range(CASES):
        pvk, a = tdes_key(r), pan(r)
        p = pin(r)
        table = digits(r, 16)
        check = r.randint(4, len(p))
        vd = a[-16:]
        offset = sn.ibm3624_offset_generate(pvk, p, vd, table, check)
        ref = psec_pin.generate_ibm3624_offset(
            expand_2key(pvk), table, p, a, len(a) - len(vd), len(vd), "F"
        )
        assert offset == ref
        zpk, fmt = tdes_key(r), r.choice([0, 3])
        block = sn.pin_block_encrypt(zpk, fmt, p, a)
        assert sn.ibm3624_verify(zpk, fmt, block, a, pvk, offset, vd, table, check)
        padded = offset.ljust(12, "F")
        assert sn.ibm3624_verify(zpk, fmt, block, a, pvk, padded, vd, table, check)
        bad = str((int(offset[0]) + 1) % 10) + offset[1:]
        assert not sn.ibm3624_verify(zpk, fmt, block, a, pvk, bad, vd, table, check)


def test_cvv_matches_psec_and_verifies() -> None:
    r = rng(22)
    for _ in range(CASES):
        cvk, a = r.randbytes(16), pan(r)
        exp, sc = digits(r, 4), r.choice(["101", "201", "000", "999", digits(r, 3)])
        cvv = sn.cvv_generate(cvk, a, exp, sc)
        assert cvv == psec_cvv.generate_cvv(cvk, a, exp, sc)
        assert sn.cvv_verify(cvk, a, exp, sc, cvv)
        assert not sn.cvv_verify(cvk, a, exp, sc, f"{(int(cvv) + 1) % 1000:03d}")


def test_errors_name_the_argument() -> None:
    a = "4123456789012345"
    block = sn.pin_block_encrypt(K2, 0, "1234", a)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: sn.pvv_generate(bytes(7), a, 1, "1234"), "pvk: "),
        (lambda: sn.pvv_generate(K2, a, 10, "1234"), "pvki: "),
        (lambda: sn.pvv_generate(K2, "123", 1, "1234"), "pan: "),
        (lambda: sn.pvv_generate(K2, a, 1, "12"), "pin: "),
        (lambda: sn.pvv_verify(K2, 0, block, a, K2, 1, "12"), "pvv: "),
        (lambda: sn.pvv_verify(bytes(3), 0, block, a, K2, 1, "1234"), "pin_key: "),
        (lambda: sn.cvv_generate(bytes(8), a, "2512", "101"), "cvk: "),
        (lambda: sn.cvv_generate(K2, a, "251", "101"), "expiry_yymm: "),
        (lambda: sn.cvv_generate(K2, a, "2512", "1O1"), "service_code: "),
        (lambda: sn.cvv_verify(K2, a, "2512", "101", "12"), "cvv: "),
        (lambda: sn.ibm3624_offset_generate(K2, "1234", "12G4", DEC_TABLE, 4), "validation_data: "),
        (
            lambda: sn.ibm3624_offset_generate(K2, "1234", "1234", "123", 4),
            "decimalisation_table: ",
        ),
        (lambda: sn.ibm3624_offset_generate(K2, "1234", "1234", DEC_TABLE, 5), "check_length: "),
        (
            lambda: sn.ibm3624_verify(K2, 0, block, a, K2, "12", a, DEC_TABLE, 4),
            "offset: ",
        ),
    ]
    for call, prefix in cases:
        with pytest.raises(sn.CryptoError) as info:
            call()
        assert str(info.value).startswith(prefix), (prefix, str(info.value))
