"""Block ciphers, KCV, parity and constant-time comparison against psec and published vectors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import switch_native as sn
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from psec import aes as psec_aes
from psec import des as psec_des

from tests.test_crypto_support import CASES, IGNORE_3DES_DEPRECATION, expand_2key, rng

pytestmark = IGNORE_3DES_DEPRECATION

K2 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_published_vectors() -> None:
    # FIPS 46 worked example and FIPS-197 Appendix C.1.
    des_key = bytes.fromhex("133457799BBCDFF1")
    assert sn.des_encrypt_ecb(des_key, bytes.fromhex("0123456789ABCDEF")).hex().upper() == (
        "85E813540F0AB405"
    )
    aes_key = bytes(range(16))
    pt = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert sn.aes_encrypt_ecb(aes_key, pt).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"
    assert sn.key_check_value(K2).hex().upper() == "08D7B4"


def test_des_modes_match_psec() -> None:
    r = rng(1)
    for _ in range(CASES):
        key = r.randbytes(r.choice([8, 16, 24]))
        iv = r.randbytes(8)
        data = r.randbytes(8 * r.randint(1, 8))
        ref_key = key if len(key) == 8 else expand_2key(key)
        ecb = sn.des_encrypt_ecb(key, data)
        assert ecb == psec_des.encrypt_tdes_ecb(ref_key, data)
        assert sn.des_decrypt_ecb(key, ecb) == data
        cbc = sn.des_encrypt_cbc(key, iv, data)
        assert cbc == psec_des.encrypt_tdes_cbc(ref_key, iv, data)
        assert sn.des_decrypt_cbc(key, iv, cbc) == data


def test_aes_modes_match_psec() -> None:
    r = rng(2)
    for _ in range(CASES):
        key = r.randbytes(r.choice([16, 24, 32]))
        iv = r.randbytes(16)
        data = r.randbytes(16 * r.randint(1, 6))
        ecb = sn.aes_encrypt_ecb(key, data)
        assert ecb == psec_aes.encrypt_aes_ecb(key, data)
        assert sn.aes_decrypt_ecb(key, ecb) == data
        cbc = sn.aes_encrypt_cbc(key, iv, data)
        assert cbc == psec_aes.encrypt_aes_cbc(key, iv, data)
        assert sn.aes_decrypt_cbc(key, iv, cbc) == data


def test_large_input_releases_gil_and_stays_correct() -> None:
    r = rng(3)
    key = r.randbytes(24)
    data = r.randbytes(64 * 1024)
    assert sn.des_encrypt_cbc(key, bytes(8), data) == psec_des.encrypt_tdes_cbc(key, bytes(8), data)


def test_kcv_matches_psec_and_cmac() -> None:
    r = rng(4)
    for _ in range(CASES):
        key = r.randbytes(r.choice([8, 16, 24]))
        ref_key = key if len(key) == 8 else expand_2key(key)
        n = r.randint(1, 8)
        assert sn.key_check_value(key, "des", n) == psec_des.generate_kcv(ref_key, n)
        akey = r.randbytes(r.choice([16, 24, 32]))
        c = CMAC(algorithms.AES(akey))
        c.update(bytes(16))
        assert sn.key_check_value(akey, "aes", 5) == c.finalize()[:5]


def test_parity_matches_psec() -> None:
    r = rng(5)
    for _ in range(CASES):
        key = r.randbytes(r.choice([8, 16, 24]))
        adjusted = sn.adjust_key_parity(key)
        assert adjusted == psec_des.adjust_key_parity(key)
        assert sn.key_parity_is_odd(adjusted)
        assert sn.key_parity_is_odd(key) == (key == adjusted)


def test_constant_time_eq() -> None:
    assert sn.constant_time_eq(b"abc", b"abc")
    assert not sn.constant_time_eq(b"abc", b"abd")
    assert not sn.constant_time_eq(b"abc", b"ab")
    assert sn.constant_time_eq(b"", b"")


def test_crypto_error_is_value_error_naming_the_argument() -> None:
    assert issubclass(sn.CryptoError, ValueError)
    with pytest.raises(sn.CryptoError, match=r"^key: length 10 is not 8, 16 or 24$"):
        sn.des_encrypt_ecb(bytes(10), bytes(8))
    with pytest.raises(sn.CryptoError, match=r"^key: length 8 is not 16, 24 or 32$"):
        sn.aes_encrypt_ecb(bytes(8), bytes(16))
    with pytest.raises(sn.CryptoError, match=r"^data: "):
        sn.des_encrypt_ecb(K2, bytes(7))
    with pytest.raises(sn.CryptoError, match=r"^data: "):
        sn.aes_decrypt_cbc(bytes(16), bytes(16), b"")
    with pytest.raises(sn.CryptoError, match=r"^iv: length 16 is not 8$"):
        sn.des_encrypt_cbc(K2, bytes(16), bytes(8))
    with pytest.raises(sn.CryptoError, match=r"^algorithm: "):
        sn.key_check_value(K2, "rsa")
    with pytest.raises(sn.CryptoError, match=r"^length: "):
        sn.key_check_value(K2, "des", 0)
    with pytest.raises(sn.CryptoError, match=r"^length: "):
        sn.key_check_value(K2, "des", -1)
    with pytest.raises(sn.CryptoError, match=r"^key: "):
        sn.adjust_key_parity(b"")


def test_bad_lengths_never_crash() -> None:
    """Fuzz-ish: every length from 0 to 40 for keys, data and IVs raises CryptoError or works."""
    funcs = [sn.des_encrypt_ecb, sn.des_decrypt_ecb, sn.aes_encrypt_ecb, sn.aes_decrypt_ecb]
    cbc = [sn.des_encrypt_cbc, sn.des_decrypt_cbc, sn.aes_encrypt_cbc, sn.aes_decrypt_cbc]
    for n in range(41):
        for f in funcs:
            for m in (0, 8, 16, n):
                try:
                    f(bytes(n), bytes(m))
                except sn.CryptoError:
                    pass
        for g in cbc:
            try:
                g(bytes(n), bytes(n % 17), bytes(16))
            except sn.CryptoError:
                pass
        for alg in ("des", "aes"):
            try:
                sn.key_check_value(bytes(n), alg, n % 10)
            except sn.CryptoError:
                pass


def test_concurrent_calls_from_threads_agree() -> None:
    """Large inputs run with the GIL released and the key caches are per thread: results from
    eight threads at once must equal the single-threaded ones."""
    r = rng(6)
    jobs = [(r.randbytes(24), r.randbytes(8 * 1024)) for _ in range(16)]
    want = [sn.des_encrypt_cbc(k, bytes(8), d) for k, d in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda kd: sn.des_encrypt_cbc(kd[0], bytes(8), kd[1]), jobs * 4))
    assert got == want * 4


def test_clearing_the_key_cache_keeps_results() -> None:
    before = sn.pin_block_encrypt(K2, 0, "1234", "4012345678909")
    sn.clear_key_cache()
    assert sn.key_check_value(K2).hex().upper() == "08D7B4"
    assert sn.pin_block_decode(0, sn.des_decrypt_ecb(K2, before), "4012345678909") == "1234"
