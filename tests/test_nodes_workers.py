"""``switch run --workers N`` (issue 13): N processes sharing the ISO 8583 and gRPC ports
(SO_REUSEPORT) and one store under a supervisor, as subprocesses on free ports.

* Both workers answer ATMs on the one port, SIGTERM to the supervisor stops them all.
* Failover: a worker SIGKILLed under load; ATMs that lose their connection reconnect and send
  the same request again (a repeat); afterwards every approval an ATM saw is in the journal
  exactly once with its postings, the postings balance, the money in the ledger is what the
  demo seeded, and no approved row lacks its postings (nothing half-committed).

Both on one SQLite file and on PostgreSQL (``store_backend``: ``SWITCH_STORE``, which the
supervisor and its workers inherit).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from switch.atm import AtmClient, AtmError, financial
from switch.core import demo
from switch.iso8583.message import Message
from tests.posting_checks import assert_approvals_posted_once
from tests.switch_proc import stop, wait_ready

pytestmark = pytest.mark.usefixtures("store_backend")

SWITCH = [sys.executable, "-m", "switch.cli"]
CARDS = [c for c in demo.CARDS if c.status.value == "active"]
STANS = itertools.count(1)


def start_workers(state: Path, out: Path, n: int = 2) -> tuple[subprocess.Popen[bytes], int]:
    """``switch run --workers n`` on free ports; its ISO 8583 port once every worker is ready."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SWITCH_SMS", None)
    cmd = [*SWITCH, "run", "--workers", str(n), "--state-dir", str(state), "--iso-port", "0"]
    cmd += ["--grpc-port", "0", "--http-port", "0", "--no-fsync"]
    proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=env)
    wait_ready(proc, out, 60, f"switch ready -- {n} workers")
    found = re.search(r"ISO 8583 port (\d+)", out.read_text())
    assert found is not None, out.read_text()
    return proc, int(found.group(1))


def worker_pids(out: Path) -> dict[int, int]:
    """The last pid each worker was started with, from the supervisor's output."""
    pids: dict[int, int] = {}
    for index, pid in re.findall(r"\[worker (\d+)\] started \(pid (\d+)\)", out.read_text()):
        pids[int(index)] = int(pid)
    return pids


def answered_by(out: Path) -> set[int]:
    """The workers whose log shows a transaction answered."""
    return {int(i) for i in re.findall(r"\[worker (\d+)\] .*switch\.txn", out.read_text())}


def test_two_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    out = tmp_path / "switch.out"
    proc, port = start_workers(tmp_path / "var", out)
    try:
        pids = worker_pids(out)
        assert set(pids) == {0, 1}

        async def until_both_answered() -> None:
            deadline = time.monotonic() + 60
            while answered_by(out) != {0, 1}:  # each new connection lands on either worker
                assert time.monotonic() < deadline, out.read_text()[-3000:]
                atm = AtmClient()
                await atm.connect("127.0.0.1", port)
                card = CARDS[0]
                inquiry = financial("310000", card.pan, card.pin, 0, stan=f"{next(STANS):06d}")
                answer = await atm.request(inquiry)
                assert answer.text(39) == "00"
                await atm.close()
                await asyncio.sleep(0.05)  # the trace line reaches the output file

        asyncio.run(until_both_answered())
    finally:
        stop(proc)
    assert proc.returncode == 0, out.read_text()[-3000:]
    for pid in pids.values():  # no worker left behind
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
    assert out.read_text().rstrip().endswith("switch: stopped")


async def _atm_run(
    port: int, n: int, seen: list[tuple[Message, Message]], answers: list[int]
) -> None:
    """One ATM: ``n`` withdrawals in turn; a lost connection (its worker killed) is opened
    again and the same request sent again, until it is answered."""
    atm: AtmClient | None = None
    for i in range(n):
        card = CARDS[i % len(CARDS)]
        # a STAN of its own (a random one could repeat within the second: a retransmission)
        msg = financial("010000", card.pan, card.pin, 100_000, stan=f"{next(STANS):06d}")
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "no worker answered within 30 s"
            try:
                if atm is None:
                    atm = AtmClient()
                    await atm.connect("127.0.0.1", port)
                answer = await atm.request(msg, timeout=10)
                break
            except (AtmError, OSError):
                if atm is not None:
                    await atm.close()
                atm = None
                await asyncio.sleep(0.05)
        seen.append((msg, answer))
        answers.append(1)
    if atm is not None:
        await atm.close()


def test_failover_kill_one_worker_under_load(tmp_path: Path) -> None:
    out = tmp_path / "switch.out"
    state = tmp_path / "var"
    proc, port = start_workers(state, out)
    seen: list[tuple[Message, Message]] = []
    try:
        victim = worker_pids(out)[1]

        async def load() -> None:
            answers: list[int] = []
            atms = [asyncio.create_task(_atm_run(port, 15, seen, answers)) for _ in range(8)]
            deadline = time.monotonic() + 60
            while len(answers) < 25:  # mid-load
                assert time.monotonic() < deadline, out.read_text()[-3000:]
                await asyncio.sleep(0.01)
            os.kill(victim, signal.SIGKILL)
            await asyncio.gather(*atms)

        asyncio.run(load())
        deadline = time.monotonic() + 30  # the supervisor notices within its poll, not at once
        while f"[worker 1] exited with status -{int(signal.SIGKILL)}" not in out.read_text():
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.05)
    finally:
        stop(proc)
    assert proc.returncode == 0, out.read_text()[-3000:]
    assert len(seen) == 8 * 15
    approved = [(m, a) for m, a in seen if a.text(39) == "00"]
    assert approved, [a.text(39) for _, a in seen]

    assert_approvals_posted_once(state, approved)


def test_workers_refuses_what_it_cannot_share(tmp_path: Path) -> None:
    """--workers with an inline SMS worker, or 0 workers: refused naming the option, nothing
    started. (Remote issuers are accepted since the store-and-forward queue is shared:
    tests/test_nodes_remote_procs.py runs them under --workers.)"""
    cases = [
        (["--workers", "2", "--sms-worker", "inline"], "--sms-worker"),
        (["--workers", "0"], "--workers 0"),
    ]
    for extra, named in cases:
        run = subprocess.run(
            [*SWITCH, "run", "--state-dir", str(tmp_path / "var"), *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 2, (extra, run.stdout, run.stderr)
        assert named in run.stderr, run.stderr
        assert not (tmp_path / "var").exists()  # refused before the state was touched
