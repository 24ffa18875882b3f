"""``switch run`` delivers merchant notifications itself (``--merchant-notify inline``, the
default): the callback set with ``python -m switch.merchant_notify set-callback`` beforehand,
a sale over gRPC, the signed POST at a receiver in this test (stdlib HTTP server)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from switch.api.client import MerchantClient
from switch.api.testing import ECOM
from switch.core import demo
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import types_pb2 as pb
from tests.switch_proc import bound_ports, stop, wait_ready

SWITCH = [sys.executable, "-m", "switch.cli"]
NOTIFY = [sys.executable, "-m", "switch.merchant_notify"]
CARD = demo.CARDS[0]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)


@contextmanager
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    got: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/switch-events", got
    finally:
        server.shutdown()
        server.server_close()


async def _sale(target: str) -> pb.PaymentResult:
    async with MerchantClient(target, ECOM.merchant_id, ECOM.api_key, timeout=10) as c:
        req = mpb.CardPaymentRequest(
            idempotency_key="run-1",
            amount=c.money(123_400),
            card=c.card(CARD.pan, CARD.expiry, CVV2),
            order_reference="CMD-RUN-1",
            metadata={"cart": "7"},
        )
        result: pb.PaymentResult = await c.payments.Sale(req, metadata=c.metadata, timeout=10)
        return result


@pytest.mark.parametrize("mode", ["inline", "off"])
def test_switch_run_posts_a_signed_notification_of_a_grpc_sale(
    state: Path, tmp_path: Path, mode: str
) -> None:
    """``inline``: switch run delivers; ``off``: it only records, and a separate
    ``python -m switch.merchant_notify worker`` process delivers."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SWITCH_SMS", None)
    with receiver() as (url, got):
        secret_file = tmp_path / "secret"
        secret_file.write_text("whsec_run-test-0123456789abcdef\n")
        setup = subprocess.run(
            [*NOTIFY, "set-callback", "--state-dir", str(state), ECOM.merchant_id, url,
             "--secret-file", str(secret_file)],
            capture_output=True, text=True, timeout=30, check=False, env=env,
        )  # fmt: skip
        assert setup.returncode == 0, setup.stderr
        out = tmp_path / "switch.out"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                [*SWITCH, "run", "--state-dir", str(state), "--iso-port", "0",
                 "--grpc-port", "0", "--http-port", "-1", "--sms-worker", "off",
                 "--no-fsync", "--merchant-notify", mode],
                stdout=sink, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        worker: subprocess.Popen[bytes] | None = None
        try:
            wait_ready(proc, out, 30)
            port = bound_ports(out)[1]  # port 0: none picked free and taken meanwhile
            banner = "delivered inline" if mode == "inline" else "recorded; deliver with"
            assert f"merchant notifications: {banner}" in out.read_text()
            sale = asyncio.run(_sale(f"127.0.0.1:{port}"))
            assert sale.approved
            if mode == "off":
                assert not got  # recorded only: no worker yet
                worker_out = tmp_path / "worker.out"
                with worker_out.open("wb") as sink:
                    worker = subprocess.Popen(
                        [*NOTIFY, "worker", "--state-dir", str(state)],
                        stdout=sink, stderr=subprocess.STDOUT, env=env,
                    )  # fmt: skip
            deadline = time.monotonic() + 20
            while not got:
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.05)
        finally:
            if worker is not None:
                stop(worker)
                assert worker.returncode == 0
            stop(proc)
    headers, body = got[0]
    items = dict(p.split("=", 1) for p in headers["X-Switch-Signature"].split(","))
    msg = items["t"].encode() + b"." + body
    mac = hmac.new(b"whsec_run-test-0123456789abcdef", msg, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, items["v1"])
    doc = json.loads(body)
    assert doc["event_id"] == headers["X-Switch-Event-Id"] and doc["type"] == "payment.paid"
    assert (doc["payment_id"], doc["order_reference"], doc["metadata"]) == (
        sale.payment_id,
        "CMD-RUN-1",
        {"cart": "7"},
    )
    assert (doc["amount"], doc["currency"], doc["status"]) == (123_400, 12, "captured")
