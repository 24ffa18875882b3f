"""Payment-crypto throughput through Python: the native core vs psec/pyemv, in the same run.

The headline is the HSM's hot call, a format 0 PIN block translation TPK -> ZPK (two-key
3DES), which must cost ~1-2 µs so the HSM can do 200,000/s on one core. It is measured with
the same two keys every call (the per-thread key-schedule cache hits, as in production) and
with 1,000 rotating key pairs (every call misses), beside psec doing the same decrypt,
decode, encode and encrypt. Then PVV and CVV verification, ARQC and retail MAC.
Run: ``python -m bench bench_crypto``.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable

import switch_native as sn
from cryptography.utils import CryptographyDeprecationWarning
from psec import cvv as psec_cvv
from psec import des as psec_des
from psec import mac as psec_mac
from psec import pin as psec_pin
from psec import pinblock as psec_pb
from pyemv import ac as pyemv_ac

PAN = "4012345678909"
N = 100_000
N_REF = 5_000


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    """Best of three runs, in microseconds per call."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def _row(label: str, ours: float, ref: float | None, ref_label: str = "psec") -> None:
    line = f"  {label:<38} {ours:7.2f} µs  {1e6 / ours:>11,.0f}/s"
    if ref is not None:
        line += f"   {ref_label} {ref:8.2f} µs  (x{ref / ours:.0f})"
    print(line)


def main() -> None:
    # psec/pyemv drive `cryptography`'s deprecated TripleDES; that is the baseline's business.
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
    r = random.Random(7)
    tpk, zpk = r.randbytes(16), r.randbytes(16)
    block = sn.pin_block_encrypt(tpk, 0, "1234", PAN)

    def psec_translate() -> bytes:
        pin = psec_pb.decode_pinblock_iso_0(psec_des.decrypt_tdes_ecb(tpk, block), PAN)
        return psec_des.encrypt_tdes_ecb(zpk, psec_pb.encode_pinblock_iso_0(pin, PAN))

    assert sn.pin_block_translate(tpk, 0, zpk, 0, block, PAN) == psec_translate()
    print("bench_crypto: payment crypto per call through Python (one core)")
    ref = _per_call_us(psec_translate, N_REF)
    _row(
        "PIN translate 0->0, same keys",
        _per_call_us(lambda: sn.pin_block_translate(tpk, 0, zpk, 0, block, PAN), N),
        ref,
    )
    _row(
        "PIN translate 0->3, same keys",
        _per_call_us(lambda: sn.pin_block_translate(tpk, 0, zpk, 3, block, PAN), N),
        None,
    )
    pairs = [(r.randbytes(16), r.randbytes(16)) for _ in range(1000)]
    blocks = [sn.pin_block_encrypt(a, 0, "1234", PAN) for a, _ in pairs]
    jobs = [(a, b, blk) for (a, b), blk in zip(pairs, blocks, strict=True)] * (N // 1000)
    it = iter(jobs * 3)

    def rotating() -> bytes:
        a, b, blk = next(it)
        return sn.pin_block_translate(a, 0, b, 0, blk, PAN)

    _row("PIN translate 0->0, 1,000 key pairs", _per_call_us(rotating, N), ref)

    pvk = r.randbytes(16)
    pvv = sn.pvv_generate(pvk, PAN, 1, "1234")
    _row(
        "PVV verify (decrypt block + PVV)",
        _per_call_us(lambda: sn.pvv_verify(tpk, 0, block, PAN, pvk, 1, pvv), N),
        _per_call_us(lambda: psec_pin.generate_visa_pvv(pvk, "1", "1234", PAN), N_REF),
        "psec PVV only",
    )
    cvk = r.randbytes(16)
    cvv = sn.cvv_generate(cvk, PAN, "2812", "000")
    _row(
        "CVV2 verify",
        _per_call_us(lambda: sn.cvv_verify(cvk, PAN, "2812", "000", cvv), N),
        _per_call_us(lambda: psec_cvv.generate_cvv(cvk, PAN, "2812", "000"), N_REF),
    )
    sk, data = r.randbytes(16), r.randbytes(37)
    _row(
        "ARQC (MAC alg 3, 37 bytes)",
        _per_call_us(lambda: sn.emv_generate_ac(sk, data), N),
        _per_call_us(lambda: pyemv_ac.generate_ac(sk, data), N_REF),
        "pyemv",
    )
    msg = r.randbytes(1024)
    _row(
        "retail MAC (alg 3), 1 KiB",
        _per_call_us(lambda: sn.mac_iso9797_1_alg3(sk, msg, 2), N // 10),
        _per_call_us(lambda: psec_mac.generate_retail_mac(sk[:8], sk[8:], msg, 2), N_REF // 5),
    )


if __name__ == "__main__":
    main()
