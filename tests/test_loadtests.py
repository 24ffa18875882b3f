"""Smoke runs of the Locust files against one real ``switch run`` (subprocess, free ports, temp
state dir): each locustfile runs headless for a few seconds with 2 users, its ``_stats.csv``
must show requests and no failures, Locust must exit 0 with ``--exit-code-on-error`` set, and
the switch must show that the load really arrived (its /metrics counters for the ISO 8583
ATMs, the merchant's ``ListPayments`` for the gRPC merchant). A run against a port where
nothing listens proves the failures path: failures in the CSV and the chosen exit code.

Why: a locustfile is code that only runs when someone load-tests, so without this it rots
silently (a renamed module, a changed stub, a wrong metadata key) and a load test then
measures errors instead of the switch."""

from __future__ import annotations

import asyncio
import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switch.api.client import MerchantClient
from switch.core import demo
from switch.gen.switch.v1 import types_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
LOCUST = [sys.executable, "-m", "locust"]
FAILED_EXIT = 3  # what we ask Locust to return when any request failed
PANS = [c.pan for c in demo.CARDS]
METRIC = re.compile(r'^switch_authorizations_total\{txn_type="(\w+)",[^}]*\} (\d+)$', re.M)
ATM_TXNS = {"balance_inquiry", "cash_withdrawal"}  # what the ISO locustfile sends


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Switch:
    iso_port: int
    grpc_port: int
    http_port: int
    out: Path


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    tmp = tmp_path_factory.mktemp("loadtests")
    out = tmp / "switch.out"
    iso, grpc_port = _free_port(), _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SWITCH_SMS": f"file:{tmp / 'sms.txt'}"}
    cmd = [sys.executable, "-m", "switch.cli", "run", "--state-dir", str(tmp / "var")]
    cmd += ["--iso-port", str(iso), "--grpc-port", str(grpc_port), "--http-port", "0"]
    proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while "switch ready" not in out.read_text(errors="replace"):
            assert proc.poll() is None, out.read_text(errors="replace")
            assert time.monotonic() < deadline, "switch run did not start"
            time.sleep(0.1)
        found = re.search(r"HTTP health/metrics on [\d.]+:(\d+)", out.read_text())
        assert found, out.read_text()
        yield Switch(iso, grpc_port, int(found.group(1)), out)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass(frozen=True)
class LocustRun:
    returncode: int
    output: str
    rows: dict[str, dict[str, str]]  # _stats.csv rows by Name ("Aggregated" included)


def _locust(locustfile: str, host: str, csv_prefix: Path) -> LocustRun:
    """A headless 4 s run with 2 users; the process is killed if it overruns."""
    cmd = [*LOCUST, "-f", str(ROOT / "loadtests" / locustfile), "--headless", "-u", "2"]
    cmd += ["-r", "2", "-t", "4s", "--host", host, "--csv", str(csv_prefix), "--only-summary"]
    cmd += ["--exit-code-on-error", str(FAILED_EXIT), "--loglevel", "WARNING"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=40, check=False, cwd=ROOT)
    stats = Path(f"{csv_prefix}_stats.csv")
    assert stats.exists(), result.stdout + result.stderr
    with stats.open(newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    return LocustRun(result.returncode, result.stdout + result.stderr, rows)


def _assert_clean(run: LocustRun) -> int:
    """Requests were made, none failed, Locust said so with exit 0; the request count."""
    total = run.rows["Aggregated"]
    assert int(total["Request Count"]) > 0, run.output
    assert int(total["Failure Count"]) == 0, run.output
    assert run.returncode == 0, run.output
    assert "Traceback" not in run.output, run.output  # e.g. an error in a user's on_start
    assert not any(pan in run.output for pan in PANS)  # never a full PAN in Locust's output
    return int(total["Request Count"])


def _metric_total(switch: Switch, txn_types: set[str]) -> int:
    """The switch's own count of authorization answers of those transaction types."""
    url = f"http://127.0.0.1:{switch.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 -- our own http URL
        text = response.read().decode()
    total = 0
    for m in METRIC.finditer(text):
        if m.group(1) in txn_types:
            total += int(m.group(2))
    return total


def test_iso_locustfile_smoke(switch: Switch, tmp_path: Path) -> None:
    before = _metric_total(switch, ATM_TXNS)
    run = _locust("locustfile_iso.py", f"tcp://127.0.0.1:{switch.iso_port}", tmp_path / "iso")
    count = _assert_clean(run)
    assert set(run.rows) >= {"0200 balance inquiry", "Aggregated"}, run.rows.keys()
    # every answered 0200 went through the core (a request cut at the stop may add one more)
    assert _metric_total(switch, ATM_TXNS) - before >= count


def test_grpc_locustfile_smoke(switch: Switch, tmp_path: Path) -> None:
    run = _locust("locustfile_grpc.py", f"grpc://127.0.0.1:{switch.grpc_port}", tmp_path / "g")
    _assert_clean(run)
    sales = int(run.rows["Sale"]["Request Count"])
    assert sales > 0 and "ListPayments" in run.rows, run.rows.keys()

    async def listed() -> list[pb.Payment]:
        merchant = next(m for m in demo.MERCHANTS if m.merchant_id == "M-ECOM-001")
        target = f"127.0.0.1:{switch.grpc_port}"
        async with MerchantClient(target, merchant.merchant_id, merchant.api_key) as client:
            return list((await client.list_payments(page_size=500)).payments)

    payments = asyncio.run(listed())
    sold = [p for p in payments if p.type == pb.PAYMENT_TYPE_SALE]
    assert len(sold) >= sales, (len(sold), sales)  # the journal holds every answered Sale
    assert any(p.response_code == "00" for p in sold)
    assert not any(pan in switch.out.read_text(errors="replace") for pan in PANS)


def test_a_failing_run_is_reported_with_the_chosen_exit_code(tmp_path: Path) -> None:
    """Nothing listens: every gRPC call fails (UNAVAILABLE), Locust exits FAILED_EXIT."""
    run = _locust("locustfile_grpc.py", f"grpc://127.0.0.1:{_free_port()}", tmp_path / "down")
    assert int(run.rows["Aggregated"]["Failure Count"]) > 0, run.output
    assert run.returncode == FAILED_EXIT, run.output
    assert "UNAVAILABLE" in Path(f"{tmp_path / 'down'}_failures.csv").read_text()
