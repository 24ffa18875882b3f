"""ISO 9564 PIN blocks (formats 0, 1, 3, 4): encode/decode, encryption and translation,
cross-checked against psec, plus the X9.24-1 format 0 vector and the refusal rules."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import switch_native as sn
from psec import des as psec_des
from psec import pinblock as psec_pb

from tests.test_crypto_support import (
    CASES,
    IGNORE_3DES_DEPRECATION,
    aes_key,
    expand_2key,
    pan,
    pin,
    rng,
    tdes_key,
)

pytestmark = IGNORE_3DES_DEPRECATION

K2 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def psec_decrypt_0_or_3(key: bytes, fmt: int, block: bytes, p: str) -> str:
    clear = psec_des.decrypt_tdes_ecb(expand_2key(key), block)
    if fmt == 0:
        return psec_pb.decode_pinblock_iso_0(clear, p)
    return psec_pb.decode_pinblock_iso_3(clear, p)


def test_x9_24_format0_vector() -> None:
    block = sn.pin_block_encode(0, "1234", "4012345678909")
    assert block.hex().upper() == "041274EDCBA9876F"
    assert sn.pin_block_decode(0, block, "4012345678909") == "1234"


def test_clear_format0_and_3_match_psec() -> None:
    r = rng(10)
    for _ in range(CASES):
        p, a = pin(r), pan(r)
        assert sn.pin_block_encode(0, p, a) == psec_pb.encode_pinblock_iso_0(p, a)
        assert sn.pin_block_decode(0, psec_pb.encode_pinblock_iso_0(p, a), a) == p
        b3 = sn.pin_block_encode(3, p, a)
        assert psec_pb.decode_pinblock_iso_3(b3, a) == p
        assert sn.pin_block_decode(3, psec_pb.encode_pinblock_iso_3(p, a), a) == p


def test_fill_digits() -> None:
    r = rng(11)
    a = "4012345678909"
    pan_field = bytes.fromhex("0000" + a[-13:-1])
    for _ in range(50):
        p = pin(r)
        for fmt, allowed in ((3, "ABCDEF"), (1, "0123456789ABCDEF")):
            raw = sn.pin_block_encode(fmt, p, a)
            if fmt == 3:
                raw = bytes(x ^ y for x, y in zip(raw, pan_field, strict=True))
            text = raw.hex().upper()
            assert text[0] == str(fmt) and int(text[1], 16) == len(p) and text[2 : 2 + len(p)] == p
            assert set(text[2 + len(p) :]) <= set(allowed)
    # Random fill: two format 3 blocks for the same PIN differ (with overwhelming probability).
    assert sn.pin_block_encode(3, "1234", a) != sn.pin_block_encode(3, "1234", a)


def test_format4_matches_psec() -> None:
    r = rng(12)
    for _ in range(CASES):
        key, p, a = aes_key(r), pin(r), pan(r)
        ours = sn.pin_block_encrypt(key, 4, p, a)
        assert len(ours) == 16
        assert psec_pb.decipher_pinblock_iso_4(key, ours, a) == p
        theirs = psec_pb.encipher_pinblock_iso_4(key, p, a)
        assert sn.pin_block_pin_length(key, 4, theirs, a) == len(p)
        field = sn.pin_block_encode(4, p, a)
        assert psec_pb.decode_pin_field_iso_4(field) == p
        assert sn.pin_block_decode(4, field, a) == p


def test_encrypt_and_translate_match_psec() -> None:
    r = rng(13)
    for _ in range(CASES):
        tpk, zpk, p, a = tdes_key(r), tdes_key(r), pin(r), pan(r)
        src_fmt, dst_fmt = r.choice([0, 3]), r.choice([0, 3])
        block = sn.pin_block_encrypt(tpk, src_fmt, p, a)
        assert psec_decrypt_0_or_3(tpk, src_fmt, block, a) == p
        out = sn.pin_block_translate(tpk, src_fmt, zpk, dst_fmt, block, a)
        assert psec_decrypt_0_or_3(zpk, dst_fmt, out, a) == p
        assert sn.pin_block_pin_length(zpk, dst_fmt, out, a) == len(p)


def test_translate_between_3des_and_aes_and_from_format1() -> None:
    r = rng(14)
    for _ in range(CASES // 2):
        tpk, akey, p, a = tdes_key(r), aes_key(r), pin(r), pan(r)
        b0 = sn.pin_block_encrypt(tpk, 0, p, a)
        b4 = sn.pin_block_translate(tpk, 0, akey, 4, b0, a)
        assert psec_pb.decipher_pinblock_iso_4(akey, b4, a) == p
        back = sn.pin_block_translate(akey, 4, tpk, 3, b4, a)
        assert psec_decrypt_0_or_3(tpk, 3, back, a) == p
        b1 = sn.pin_block_encrypt(tpk, 1, p, "")
        from1 = sn.pin_block_translate(tpk, 1, tpk, 0, b1, a)
        assert psec_decrypt_0_or_3(tpk, 0, from1, a) == p


@pytest.mark.parametrize("src_fmt", [0, 3, 4])
def test_pan_bound_block_never_becomes_format1(src_fmt: int) -> None:
    key = bytes(range(16))
    block = sn.pin_block_encrypt(key, src_fmt, "1234", "4012345678909")
    with pytest.raises(sn.CryptoError, match=r"^dst_fmt: "):
        sn.pin_block_translate(key, src_fmt, K2, 1, block, "4012345678909")


def test_wrong_key_or_pan_is_an_error_or_a_different_pin() -> None:
    a = "4012345678909"
    block = sn.pin_block_encrypt(K2, 0, "1234", a)
    wrong = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")
    for key, p in ((wrong, a), (K2, "4012345678917")):
        try:
            out = sn.pin_block_translate(key, 0, K2, 0, block, p)
        except sn.CryptoError as e:
            assert str(e).startswith("block: ")
        else:
            assert psec_decrypt_0_or_3(K2, 0, out, p) != "1234"


def test_errors_name_the_argument() -> None:
    a = "4012345678909"
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: sn.pin_block_encode(2, "1234", a), "fmt: "),
        (lambda: sn.pin_block_encode(0, "123", a), "pin: must be 4-12 digits"),
        (lambda: sn.pin_block_encode(0, "12345678901234", a), "pin: "),
        (lambda: sn.pin_block_encode(0, "12a4", a), "pin: "),
        (lambda: sn.pin_block_encode(0, "1234", "123"), "pan: must be 13-19 digits"),
        (lambda: sn.pin_block_encode(0, "1234", "40123456789O9"), "pan: "),
        (lambda: sn.pin_block_decode(0, bytes(7), a), "block: "),
        (lambda: sn.pin_block_decode(0, bytes(8), a), "block: "),
        (lambda: sn.pin_block_encrypt(bytes(10), 0, "1234", a), "key: "),
        (lambda: sn.pin_block_encrypt(bytes(8), 4, "1234", a), "key: "),
        (lambda: sn.pin_block_translate(bytes(5), 0, K2, 0, bytes(8), a), "src_key: "),
        (lambda: sn.pin_block_translate(K2, 0, bytes(5), 0, bytes(8), a), "dst_key: "),
        (lambda: sn.pin_block_translate(K2, 9, K2, 0, bytes(8), a), "src_fmt: "),
        (lambda: sn.pin_block_translate(K2, 0, K2, 9, bytes(8), a), "dst_fmt: "),
        (lambda: sn.pin_block_pin_length(K2, 0, bytes(16), a), "block: "),
    ]
    for call, prefix in cases:
        with pytest.raises(sn.CryptoError) as info:
            call()
        assert str(info.value).startswith(prefix), (prefix, str(info.value))


def test_fuzz_bad_lengths_never_crash() -> None:
    a = "4012345678909"
    for n in range(41):
        for fmt in (0, 1, 3, 4):
            calls: list[tuple[Callable[..., object], tuple[object, ...]]] = [
                (sn.pin_block_translate, (bytes(n), fmt, K2, 0, bytes(n), a)),
                (sn.pin_block_pin_length, (K2, fmt, bytes(n), a[: n % 20])),
                (sn.pin_block_decode, (fmt, bytes(n), a)),
                (sn.pin_block_encrypt, (bytes(n), fmt, "1" * (n % 15), a)),
            ]
            for func, args in calls:
                try:
                    func(*args)
                except sn.CryptoError:
                    pass


def test_huge_or_negative_ints_are_crypto_errors() -> None:
    a = "4012345678909"
    for bad in (2**70, -(2**70), -1, 5):
        with pytest.raises(sn.CryptoError, match=r"^fmt: "):
            sn.pin_block_encode(bad, "1234", a)
        with pytest.raises(sn.CryptoError, match=r"^dst_fmt: "):
            sn.pin_block_translate(K2, 0, K2, bad, bytes(8), a)
    with pytest.raises(sn.CryptoError, match=r"^pvki: "):
        sn.pvv_generate(K2, a, 2**80, "1234")
    with pytest.raises(sn.CryptoError, match=r"^padding: "):
        sn.mac_iso9797_1_alg3(K2, b"x", 10**30)


def test_forked_processes_do_not_share_random_fill() -> None:
    """The RNG pool is per process: after a fork, parent and child draw different fill."""
    a = "4012345678909"
    sn.pin_block_encode(3, "1234", a)  # fill the pool before forking
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next blocks and leave at once
        try:
            os.write(write_fd, b"".join(sn.pin_block_encode(3, "1234", a) for _ in range(8)))
        finally:
            os._exit(0)
    os.close(write_fd)
    parent = b"".join(sn.pin_block_encode(3, "1234", a) for _ in range(8))
    with os.fdopen(read_fd, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    assert len(child) == 64
    assert {parent[i : i + 8] for i in range(0, 64, 8)}.isdisjoint(
        {child[i : i + 8] for i in range(0, 64, 8)}
    )
