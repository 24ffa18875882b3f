"""Merchant notifications: what they cost a payment, and how fast the worker delivers.

1. E-commerce sales through ``SwitchCore.authorize`` in process, side by side: the baseline
   (no recorder) and the same sales declared with ``payment_order(...)`` while the merchant
   has a callback, so every unit also carries its ``payment_orders`` and ``merchant_events``
   rows (``switch.merchant_notify.recorder``). Fresh store copy per run, rounds interleaved,
   the median printed.
2. Delivery: the events of those sales POSTed by one ``MerchantNotifyWorker`` (batches of 32,
   8 in flight, signed) to an aiohttp receiver in this process that answers 204, until the
   outbox is empty.

The sales run with the collector set as ``switch run`` sets it (``tune_gc_for_serving``:
start-up objects frozen, rare young collections); ``BENCH_NOTIFY_GC=default`` keeps CPython's
default thresholds instead, under which the extra objects of a notified sale also cost more
collections of the whole heap.

Run: ``python -m bench bench_notify``. Knobs: ``BENCH_NOTIFY_SALES`` (default 8000),
``BENCH_NOTIFY_ROUNDS`` (3), ``BENCH_NOTIFY_FSYNC`` (0; 1 = durable commits),
``BENCH_NOTIFY_GC`` (serving | default).
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import web

from bench.bench_core import add_cards, bench_pans
from switch.core import demo
from switch.core.model import AuthRequest, Channel, TxnType
from switch.core.service import SwitchCore
from switch.gc_tuning import tune_gc_for_serving
from switch.merchant_notify.outboxes import open_outbox
from switch.merchant_notify.recorder import PaymentOrder, ensure_recorder, payment_order
from switch.merchant_notify.secrets_seal import CallbackSeal
from switch.merchant_notify.worker import MerchantNotifyWorker

N_SALES = int(os.environ.get("BENCH_NOTIFY_SALES", "8000"))
ROUNDS = int(os.environ.get("BENCH_NOTIFY_ROUNDS", "3"))
DURABLE = os.environ.get("BENCH_NOTIFY_FSYNC", "0") == "1"
SERVING_GC = os.environ.get("BENCH_NOTIFY_GC", "serving") != "default"
PER_CARD = 20  # the e-commerce daily count limit of the default product
EXPIRY = "3012"
MERCHANT = demo.MERCHANTS[0]
IN_FLIGHT = 256


async def _sales(state: Path, cards: list[tuple[str, str]], notify: bool) -> tuple[float, float]:
    """(sales per second, CPU microseconds per sale) over ``N_SALES`` sales, ``IN_FLIGHT``
    at a time. The CPU time is this process's: on a shared machine it moves less than the
    wall-clock rate with the other processes' load."""
    core = await SwitchCore.open(state, durable=DURABLE)
    thresholds = gc.get_threshold()
    if SERVING_GC:
        tune_gc_for_serving()  # as switch run does once the state is loaded
    try:
        term = core.terminal(MERCHANT.terminal_id)
        assert term is not None
        if notify:
            ensure_recorder(core).refresh()

        async def one(i: int) -> None:
            pan, cvv2 = cards[i // PER_CARD]
            req = AuthRequest(
                TxnType.PURCHASE, Channel.ECOMMERCE, pan, 100, 12, term.acquirer_id,
                MERCHANT.terminal_id, f"{i % 1_000_000:06d}", "0101000000",
                merchant_id=MERCHANT.merchant_id, mcc=MERCHANT.mcc, expiry=EXPIRY, cvv2=cvv2,
                idempotency_key=f"bench-{i}",
            )  # fmt: skip
            if notify:
                order = PaymentOrder(MERCHANT.merchant_id, order_reference=f"CMD-{i}")
                with payment_order(order):
                    r = await core.authorize(req)
            else:
                r = await core.authorize(req)
            assert r.approved, r

        started, cpu = time.perf_counter(), time.process_time()
        for first in range(0, N_SALES, IN_FLIGHT):
            await asyncio.gather(*(one(i) for i in range(first, min(N_SALES, first + IN_FLIGHT))))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if notify:
            rows = core.store.query("SELECT COUNT(*) FROM merchant_events")[0][0]
            assert rows == N_SALES, rows
        return N_SALES / elapsed, cpu / N_SALES * 1e6
    finally:
        await core.close()
        gc.unfreeze()  # the next run starts from the same collector state
        gc.set_threshold(*thresholds)


async def _deliver(state: Path) -> float:
    """Events per second delivered from ``state``'s outbox to a local receiver."""
    received = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}/hook"
    outbox = open_outbox(state, durable=DURABLE)
    sealed = CallbackSeal.for_state_dir(state).seal(
        MERCHANT.merchant_id, url, "whsec_bench-0123456789"
    )
    outbox.set_callback(MERCHANT.merchant_id, url, sealed, time.time())
    worker = MerchantNotifyWorker(outbox, CallbackSeal.for_state_dir(state))
    try:
        started = time.perf_counter()
        while await worker.run_once():
            pass
        elapsed = time.perf_counter() - started
    finally:
        await worker.close()
        outbox.close()
        await runner.cleanup()
    assert received == N_SALES and worker.stats.delivered == N_SALES, (received, worker.stats)
    return N_SALES / elapsed


def _with_callback(state: Path) -> None:
    with open_outbox(state) as outbox:
        url = "http://127.0.0.1:9/unused"
        sealed = CallbackSeal.for_state_dir(state).seal(MERCHANT.merchant_id, url, "whsec_x" * 3)
        outbox.set_callback(MERCHANT.merchant_id, url, sealed, time.time())


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    try:
        pans = bench_pans(-(-N_SALES // PER_CARD))
        cards = [(p, demo.cvv2(p, EXPIRY)) for p in pans]
        template = base / "template"
        asyncio.run(add_cards(template, pans))
        print(
            f"bench_notify: {N_SALES} e-commerce sales over {len(pans)} cards, {IN_FLIGHT} in "
            f"flight, {'durable' if DURABLE else 'no-fsync'} SQLite, "
            f"{'serving' if SERVING_GC else 'default'} GC, {ROUNDS} rounds (median)"
        )
        plain: list[tuple[float, float]] = []
        notified: list[tuple[float, float]] = []
        last = base / "last"
        for _ in range(ROUNDS):
            for notify, rates in ((False, plain), (True, notified)):
                state = base / "run"
                shutil.rmtree(state, ignore_errors=True)
                shutil.copytree(template, state)
                if notify:
                    _with_callback(state)
                rates.append(asyncio.run(_sales(state, cards, notify)))
                if notify:
                    shutil.rmtree(last, ignore_errors=True)
                    state.rename(last)
        base_rate = statistics.median(r for r, _ in plain)
        with_rate = statistics.median(r for r, _ in notified)
        base_cpu = statistics.median(c for _, c in plain)
        with_cpu = statistics.median(c for _, c in notified)
        print(
            f"  sales, baseline (no recorder)         {base_rate:7,.0f} /s  {base_cpu:5.0f} us CPU"
        )
        print(
            f"  sales + order row + event row         {with_rate:7,.0f} /s  {with_cpu:5.0f} us CPU"
            f"  ({(with_rate / base_rate - 1) * 100:+.0f} % rate, "
            f"{(with_cpu / base_cpu - 1) * 100:+.0f} % CPU)"
        )
        rate = asyncio.run(_deliver(last))
        print(f"  delivery: signed POSTs to a local 204   {rate:9,.0f} events/s")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
