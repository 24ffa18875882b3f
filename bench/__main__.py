"""``make bench``: runs every benchmark module listed here, in order."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: list[str] = [
    "bench_limits",
    "bench_hsm",
    "bench_core",
    "bench_crypto",
    "bench_codec",
    "bench_grpc",
    "bench_iso",
    "bench_remote",
    "bench_import",
    "bench_notify",  # ~15-25 s: merchant notifications' cost per sale, delivery rate
]


def main() -> int:
    names = sys.argv[1:] or BENCHMARKS
    for name in names:
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
