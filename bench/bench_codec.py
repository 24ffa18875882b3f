"""ISO 8583 codec speed through Python: the native codec against pyiso8583 (the baseline),
on the same typical 0200 cash withdrawal (19 fields incl. PAN, track 2, 43 and PIN block),
measured in the same run. Run: ``python -m bench bench_codec``.

Prints µs per message for decode and encode and the speed-up. The Rust-only figures come
from ``cargo bench -p switch-iso8583`` (criterion) in ``native/``.
"""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable
from typing import Any

import iso8583
from iso8583.specs import default_ascii

from switch.iso8583.codec import Codec
from switch.iso8583.message import Message

NUMBER = int(os.environ.get("BENCH_CODEC_NUMBER", "10000"))
REPEAT = int(os.environ.get("BENCH_CODEC_REPEAT", "15"))


def withdrawal() -> Message:
    return Message(
        "0200",
        {
            2: "4761739001010119",
            3: "011000",
            4: "000000500000",
            7: "1129034512",
            11: "000123",
            12: "044512",
            13: "1129",
            14: "2812",
            18: "6011",
            22: "051",
            25: "00",
            32: "00799",
            35: "4761739001010119=28122011143857589",
            37: "333303000123",
            41: "ATM00001",
            42: "POSTE0000000001",
            43: "ALGERIE POSTE GAB 01 ALGER".ljust(38) + "DZ",
            49: "012",
            52: bytes.fromhex("123456789ABCDEF0"),
        },
    )


def _binary87_pyiso_spec() -> dict[str, dict[str, Any]]:
    """binary87 in pyiso8583 terms (same as the oracle test's)."""
    spec: dict[str, dict[str, Any]] = {
        "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0},
        "t": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 2},
        "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8},
        "1": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8},
    }
    for n, kind, _enc, length, _prefix, max_len, pad in Codec("binary87").spec.fields():
        if kind == "x+n" or n == 65:  # not expressible (sign byte + BCD; tertiary bitmap)
            continue  # and not in the benchmarked withdrawal
        entry: dict[str, Any] = {
            "len_enc": "bcd",
            "len_type": {"fixed": 0, "LL": 1, "LLL": 2}[length],
            "max_len": max_len,
        }
        if kind in ("n", "z"):
            side = "left_pad" if pad == "left" else "right_pad"
            entry |= {"data_enc": "b", "len_count": "nibbles", side: "0"}
        else:
            entry |= {"data_enc": "b" if kind == "b" else "ascii"}
        spec[str(n)] = entry
    return spec


def _per_call_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=REPEAT)) / number * 1e6


def _pyiso_doc(m: Message, binary: bool) -> dict[str, str]:
    doc = {"t": m.mti}
    for n, v in m.fields.items():
        text = v.hex().upper() if isinstance(v, bytes) else v
        doc[str(n)] = text.replace("=", "D") if binary and n == 35 else text
    return doc


def run_one(spec_name: str) -> dict[str, float]:
    codec = Codec(spec_name)
    m = withdrawal()
    wire = codec.encode(m)
    assert codec.decode(wire) == m
    pyspec = default_ascii if spec_name == "ascii87" else _binary87_pyiso_spec()
    doc = _pyiso_doc(m, spec_name == "binary87")
    theirs, _ = iso8583.encode(dict(doc), pyspec)
    assert bytes(theirs) == wire, "pyiso8583 and the native codec disagree on the bytes"
    wire_ba = bytearray(wire)

    slow = max(NUMBER // 20, 200)
    return {
        "bytes": float(len(wire)),
        "native_decode": _per_call_us(lambda: codec.decode(wire), NUMBER),
        "native_encode": _per_call_us(lambda: codec.encode(m), NUMBER),
        "pyiso_decode": _per_call_us(lambda: iso8583.decode(wire_ba, pyspec), slow),
        "pyiso_encode": _per_call_us(lambda: iso8583.encode(dict(doc), pyspec), slow),
    }


def main() -> None:
    print("ISO 8583 codec: typical 0200 cash withdrawal (19 fields), µs per message")
    print(f"{'spec':<9} {'op':<7} {'switch_native':>14} {'pyiso8583':>10} {'speed-up':>9}")
    for spec_name in ("ascii87", "binary87"):
        r = run_one(spec_name)
        for op in ("decode", "encode"):
            ours, theirs = r[f"native_{op}"], r[f"pyiso_{op}"]
            print(f"{spec_name:<9} {op:<7} {ours:>14.2f} {theirs:>10.2f} {theirs / ours:>8.1f}x")
    print("(switch_native through Python: Codec.decode -> Message, Codec.encode(Message) -> bytes)")


if __name__ == "__main__":
    main()
