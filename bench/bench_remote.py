"""Remote issuer routing: balance inquiries (PIN verified) sent to a second switch over ISO
8583, against the same inquiries on-us in the same acquirer core, measured in the same run.
Run: ``python -m bench bench_remote``.

The remote path adds: a CA PIN translation in the acquirer's HSM, encode + TCP round trip on
the persistent connection (MUX), the issuer switch's own full authorization (``switch run``
in another process: its PIN check and durable journal), and decoding the answer.
Concurrency 32 in flight.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from switch.core import testing as t
from switch.core.model import AuthRequest
from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.iso8583.remote import RemoteIssuerConfig, attach_remote_issuer, open_saf

N = int(os.environ.get("BENCH_REMOTE_N", "2000"))
CONCURRENCY = 32
ISSUER_PAN = "6270000000000018"  # tests.remote_issuer_peer's card, PIN 1234
LINK_ZPK_CLEAR = "0123456789ABCDEF0123456789ABCDEF"


async def _drive(core: SwitchCore, reqs: list[AuthRequest]) -> tuple[float, list[float]]:
    it = iter(reqs)
    latencies: list[float] = []

    async def worker() -> None:
        for req in it:
            t0 = time.perf_counter()
            r = await core.authorize(req)
            latencies.append(time.perf_counter() - t0)
            if not r.approved:
                raise RuntimeError(f"bench request declined: {r.response_code} {r.message}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - start, latencies


def _row(name: str, elapsed: float, lat: list[float]) -> str:
    q = statistics.quantiles(lat, n=100)
    return f"{name:<28}{len(lat) / elapsed:>10.0f}/s{q[49] * 1e3:>10.2f} ms{q[98] * 1e3:>10.2f} ms"


async def _run(tmp: Path, port: int) -> None:
    acq = tmp / "acq"
    core = await SwitchCore.open(acq, durable=False)
    ceremony = InProcessHsm(Lmk.load_or_create(acq / "lmk.json"), authorised=True)
    zpk = (
        await ceremony.form_key_from_clear_components(KeyType.ZPK, [LINK_ZPK_CLEAR])
    ).key_under_lmk
    saf = open_saf(acq)
    remote = await attach_remote_issuer(
        core, RemoteIssuerConfig("remote-bank", "127.0.0.1", port, zpk), saf
    )
    try:
        if not await remote.client.wait_connected(10):
            raise RuntimeError("bench: no sign-on with the issuer process")
        on_us = [t.balance_inquiry() for _ in range(N)]
        far = [t.balance_inquiry(pan=ISSUER_PAN, pin="1234") for _ in range(N)]
        await _drive(core, on_us[:200])  # warm-up
        base_elapsed, base_lat = await _drive(core, on_us)
        far_elapsed, far_lat = await _drive(core, far)
        print(f"bench_remote: {N} balance inquiries with PIN, {CONCURRENCY} in flight")
        print(f"{'':<28}{'throughput':>12}{'p50':>13}{'p99':>13}")
        print(_row("on-us (baseline)", base_elapsed, base_lat))
        print(_row("remote issuer over ISO 8583", far_elapsed, far_lat))
        print(f"remote / on-us time per request: {far_elapsed / base_elapsed:.2f}x")
    finally:
        await remote.close()
        await core.close()
        saf.close()


def main() -> None:
    from tests.remote_issuer_peer import start_issuer_switch

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, ports = start_issuer_switch(tmp / "issuer")
        try:
            asyncio.run(_run(tmp, ports[0]))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
