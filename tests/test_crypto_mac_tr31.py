"""ISO 9797-1 MAC algorithms 1 and 3 against psec/pyemv and ISO 9797-1 Annex B; TR-31 version D
key blocks against psec and the TR-31:2018 A.7.4 example."""

from __future__ import annotations

import pytest
import switch_native as sn
from psec import mac as psec_mac
from psec import tr31 as psec_tr31
from pyemv import mac as pyemv_mac

from tests.test_crypto_support import CASES, IGNORE_3DES_DEPRECATION, expand_2key, rng

pytestmark = IGNORE_3DES_DEPRECATION

K2 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
A74_KBPK = bytes.fromhex("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6")
A74_BLOCK = (
    "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E"
    "31DA05F7425509593D03A457DC34"
)


def test_retail_mac_annex_b() -> None:
    mac = sn.mac_iso9797_1_alg3(K2, b"Now is the time for all ", 1)
    assert mac.hex().upper().startswith("A1C72E74")


def test_macs_match_psec_and_pyemv() -> None:
    r = rng(40)
    for _ in range(CASES):
        data = r.randbytes(r.randint(1, 70))
        padding = r.choice([1, 2, 3])
        key16 = r.randbytes(16)
        alg3 = sn.mac_iso9797_1_alg3(key16, data, padding)
        assert alg3 == psec_mac.generate_retail_mac(key16[:8], key16[8:], data, padding)
        if padding != 3:
            assert alg3 == pyemv_mac.mac_iso9797_3(key16[:8], key16[8:], data, padding)
        key = r.randbytes(r.choice([8, 16, 24]))
        ref_key = key if len(key) == 8 else expand_2key(key)
        alg1 = sn.mac_iso9797_1_alg1(key, data, padding)
        assert alg1 == psec_mac.generate_cbc_mac(ref_key, data, padding, 8, psec_mac.Algorithm.DES)


def test_mac_defaults_and_empty_message() -> None:
    assert sn.mac_iso9797_1_alg1(K2, b"abc") == sn.mac_iso9797_1_alg1(K2, b"abc", 1)
    assert sn.mac_iso9797_1_alg1(K2, b"") == sn.des_encrypt_ecb(K2, bytes(8))
    assert len(sn.mac_iso9797_1_alg3(K2, b"", 2)) == 8


def test_mac_errors() -> None:
    with pytest.raises(sn.CryptoError, match=r"^padding: "):
        sn.mac_iso9797_1_alg1(K2, b"x", 4)
    with pytest.raises(sn.CryptoError, match=r"^padding: "):
        sn.mac_iso9797_1_alg3(K2, b"x", -1)
    with pytest.raises(sn.CryptoError, match=r"^key: length 24 is not 16$"):
        sn.mac_iso9797_1_alg3(K2 + K2[:8], b"x")


def test_tr31_published_example() -> None:
    header, key = sn.tr31_unwrap(A74_KBPK, A74_BLOCK)
    assert header == "D0112P0AE00E0000"
    assert key.hex().upper() == "3F419E1CB7079442AA37474C2EFBF8B8"


def test_tr31_round_trips_with_psec() -> None:
    r = rng(41)
    headers = ["D0000P0AE00E0000", "D0000K0TB00N0000", "D0000M3TC00E0000", "D0000B0AX00S0000"]
    for _ in range(CASES // 2):
        kbpk = r.randbytes(r.choice([16, 24, 32]))
        hdr = r.choice(headers)
        key = r.randbytes(16 if hdr[7] == "T" else r.choice([16, 24, 32]))
        ours = sn.tr31_wrap(kbpk, hdr, key)
        assert int(ours[1:5]) == len(ours)
        h, k = psec_tr31.unwrap(kbpk, ours)
        assert k == key and h.key_usage == hdr[5:7] and h.algorithm == hdr[7]
        theirs = psec_tr31.wrap(kbpk, hdr, key)
        h2, k2 = sn.tr31_unwrap(kbpk, theirs)
        assert k2 == key and h2 == theirs[:16]


def test_tr31_optional_blocks_round_trip() -> None:
    kbpk = bytes(range(32))
    hdr = "D0000K0AB00E0200KS0C01234567PB140000000000000000"
    block = sn.tr31_wrap(kbpk, hdr, bytes(range(32)))
    h, k = sn.tr31_unwrap(kbpk, block)
    assert h[5:] == hdr[5:] and k == bytes(range(32))
    ph, pk = psec_tr31.unwrap(kbpk, block)
    assert pk == k and ph.blocks["KS"] == "01234567"


def test_tr31_rejects_tampering_and_wrong_kbpk() -> None:
    for i in range(5, len(A74_BLOCK)):
        c = A74_BLOCK[i]
        flipped = A74_BLOCK[:i] + ("1" if c != "1" else "2") + A74_BLOCK[i + 1 :]
        with pytest.raises(sn.CryptoError, match=r"^key_block: "):
            sn.tr31_unwrap(A74_KBPK, flipped)
    with pytest.raises(sn.CryptoError, match=r"^key_block: MAC does not match"):
        sn.tr31_unwrap(bytes(32), A74_BLOCK)


def test_tr31_errors_and_fuzz() -> None:
    with pytest.raises(sn.CryptoError, match=r"^kbpk: "):
        sn.tr31_wrap(bytes(8), "D0000P0AE00E0000", bytes(16))
    with pytest.raises(sn.CryptoError, match=r"^header: "):
        sn.tr31_wrap(bytes(16), "B0000P0TE00E0000", bytes(16))
    with pytest.raises(sn.CryptoError, match=r"^header: "):
        sn.tr31_wrap(bytes(16), "D0000P0AE00E0100KS0C01234567", bytes(16))
    with pytest.raises(sn.CryptoError, match=r"^key: "):
        sn.tr31_wrap(bytes(16), "D0000P0AE00E0000", b"")
    r = rng(42)
    for n in range(len(A74_BLOCK) + 1):
        for text in (A74_BLOCK[:n], A74_BLOCK[:16] + "".join(r.choice("0F") for _ in range(n))):
            try:
                sn.tr31_unwrap(A74_KBPK, text)
            except sn.CryptoError:
                pass
