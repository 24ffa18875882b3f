"""Merchant gRPC API throughput and latency: e-commerce sales over the network.

A ``grpc.aio`` client in this process keeps many ``Sale`` calls in flight against the API
served by another process (``python -m switch.api.standalone``: the core, in-process HSM and
SQLite store live there). Baseline in the same run: the same sales through
``SwitchCore.authorize`` in process (no gRPC, no protobuf, no second process). Every sale is
a full card-not-present authorization: CVV2 verified by the HSM, limits, postings, journal,
idempotency entry and SMS outbox row committed before the answer. Fresh store copy per run.
A third line runs the same load against a server whose Sale answers at once: the ceiling of
grpc.aio itself (Python client and server sharing the machine's cores), so the cost of the
API layer + core shows as the gap between the last two lines.
Run: ``python -m bench bench_grpc``. Knobs: ``BENCH_GRPC_SALES``, ``BENCH_GRPC_CONCURRENCY``,
``BENCH_GRPC_CHANNELS``, ``BENCH_GRPC_FSYNC`` (1 = durable commits, the default).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import grpc

from bench.bench_core import add_cards, bench_pans
from switch.api import mapping
from switch.api.client import MerchantClient
from switch.core import demo
from switch.core.model import TxnType
from switch.core.service import SwitchCore
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import merchant_pb2_grpc as mgrpc
from switch.gen.switch.v1 import types_pb2 as pb

N_SALES = int(os.environ.get("BENCH_GRPC_SALES", "20000"))
CONCURRENCY = int(os.environ.get("BENCH_GRPC_CONCURRENCY", "64"))
CHANNELS = int(os.environ.get("BENCH_GRPC_CHANNELS", "4"))
DURABLE = os.environ.get("BENCH_GRPC_FSYNC", "1") == "1"
UVLOOP = os.environ.get("BENCH_GRPC_UVLOOP", "1") == "1"  # the server's event loop
PER_CARD = 20  # the e-commerce daily count limit of the default product
EXPIRY = "3012"
AMOUNT = 10_000  # 100 DZD
ECOM = demo.MERCHANTS[0]


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def report(name: str, n: int, elapsed: float, lat: list[float], approved: int) -> None:
    lat.sort()
    print(
        f"  {name:<40} {n / elapsed:>8,.0f} sales/s   p50 {percentile(lat, 0.50) * 1e3:6.2f} ms"
        f"   p99 {percentile(lat, 0.99) * 1e3:6.2f} ms   ({approved}/{n} approved)"
    )


async def in_process(state: Path, cards: list[tuple[str, str]]) -> None:
    core = await SwitchCore.open(state, durable=DURABLE)
    merchant = core.merchant(ECOM.merchant_id)
    assert merchant is not None
    acquirer = demo.ACQUIRER_ID
    base = mapping.base_request(merchant, acquirer, TxnType.PURCHASE, "x", AMOUNT, 12)
    reqs = [
        replace(base, pan=pan, expiry=EXPIRY, cvv2=cvv2, idempotency_key=f"in-{i}",
                stan=mapping.stan_of(f"in-{i}"))
        for i, (pan, cvv2) in enumerate(cards[i % len(cards)] for i in range(N_SALES))
    ]  # fmt: skip
    it = iter(reqs)
    lat: list[float] = []
    approved = 0

    async def worker() -> None:
        nonlocal approved
        for req in it:
            t = time.perf_counter()
            r = await core.authorize(req)
            lat.append(time.perf_counter() - t)
            approved += r.approved

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - t0
    await core.close()
    report("in-process authorize", N_SALES, elapsed, lat, approved)


async def over_grpc(target: str, cards: list[tuple[str, str]], label: str = "gRPC Sale") -> None:
    clients = [MerchantClient(target, ECOM.merchant_id, ECOM.api_key) for _ in range(CHANNELS)]
    reqs = [
        mpb.CardPaymentRequest(
            idempotency_key=f"g-{i}",
            amount=pb.Money(amount_minor=AMOUNT, currency=12),
            card=pb.Card(pan=pan, expiry=EXPIRY, cvv2=cvv2),
        )
        for i, (pan, cvv2) in enumerate(cards[i % len(cards)] for i in range(N_SALES))
    ]
    # warm the channels (connection set-up is not what is measured)
    await asyncio.gather(*(c.channel.channel_ready() for c in clients))
    it = iter(reqs)
    lat: list[float] = []
    approved = 0

    async def worker(c: MerchantClient) -> None:
        nonlocal approved
        sale = c.payments.Sale
        md = c.metadata
        for req in it:
            t = time.perf_counter()
            r = await sale(req, metadata=md, timeout=30)
            lat.append(time.perf_counter() - t)
            approved += r.approved

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(clients[i % CHANNELS]) for i in range(CONCURRENCY)))
    elapsed = time.perf_counter() - t0
    for c in clients:
        await c.close()
    report(f"{label} ({CHANNELS} channels)", N_SALES, elapsed, lat, approved)


class EmptyPayments(mgrpc.PaymentsServicer):
    """A Sale that answers at once: the ceiling of grpc.aio itself on this machine."""

    async def Sale(self, request: mpb.CardPaymentRequest, context: object) -> pb.PaymentResult:
        return pb.PaymentResult(payment_id="1", approved=True, response_code="00")


async def serve_empty() -> None:
    server = grpc.aio.server()
    mgrpc.add_PaymentsServicer_to_server(EmptyPayments(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"LISTENING {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(None)


def start_server(state: Path | None) -> tuple[subprocess.Popen[str], str]:
    if state is None:
        cmd = [sys.executable, "-m", "bench.bench_grpc", "serve-empty"]
    else:
        cmd = [sys.executable, "-m", "switch.api.standalone", "--state-dir", str(state)]
    if not DURABLE:
        cmd.append("--no-fsync")
    if UVLOOP:
        cmd.append("--uvloop")
    sys.stdout.flush()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("LISTENING "):
        proc.kill()
        raise RuntimeError(f"API server did not start: {line!r}")
    return proc, f"127.0.0.1:{int(line.split()[1])}"


def stop_server(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-grpc-"))
    try:
        pans = bench_pans(max(1, -(-N_SALES // PER_CARD)))
        cards = [(p, demo.cvv2(p, EXPIRY)) for p in pans]
        template = base / "template"
        asyncio.run(add_cards(template, pans))
        print(
            f"bench_grpc: {N_SALES} e-commerce sales (CVV2-verified) over {len(pans)} cards, "
            f"{CONCURRENCY} in flight, {'durable' if DURABLE else 'no-fsync'} SQLite"
        )
        state = base / "inproc"
        shutil.copytree(template, state)
        asyncio.run(in_process(state, cards))
        state = base / "grpc"
        shutil.copytree(template, state)
        proc, target = start_server(state)
        try:
            asyncio.run(over_grpc(target, cards))
        finally:
            stop_server(proc)
        proc, target = start_server(None)
        try:
            asyncio.run(over_grpc(target, cards, "gRPC empty handler (ceiling)"))
        finally:
            stop_server(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-empty"]:
        import uvloop

        uvloop.run(serve_empty())
    else:
        main()
