"""Two separate switch nodes over one PostgreSQL (issue 13): what two machines would run,
here two ``switch run --store postgresql://...`` processes with state directories of their
own that hold the same keys (``lmk.json``, ``pan.key``), each on its own port.

ATMs send withdrawals to either node; node A is SIGKILLed under load; ATMs that lose their
connection repeat the same request on node B, which keeps answering. Afterwards every
approval an ATM saw is in the journal exactly once with its postings, transaction numbers of
both nodes never collide, the postings balance and the ledger's total is what was seeded.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from switch.atm import AtmClient, AtmError, financial
from switch.core import demo
from switch.iso8583.message import Message
from tests.pg_server import PgServer
from tests.posting_checks import assert_approvals_posted_once
from tests.switch_proc import bound_ports, stop, wait_ready

SWITCH = [sys.executable, "-m", "switch.cli"]
CARDS = [c for c in demo.CARDS if c.status.value == "active"]
STANS = itertools.count(1)


def start_node(
    state: Path, url: str, out: Path, extra: list[str]
) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SWITCH_SMS", None)
    env.pop("SWITCH_STORE", None)
    cmd = [*SWITCH, "run", "--state-dir", str(state), "--store", url, "--iso-port", "0"]
    cmd += ["--grpc-port", "0", "--http-port", "-1", "--no-fsync", *extra]
    proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=env)
    wait_ready(proc, out, 60)
    return proc, bound_ports(out)[0]  # port 0: no port picked free and taken meanwhile


async def atm_run(
    ports: list[int], first: int, n: int, seen: list[tuple[Message, Message]]
) -> None:
    """``n`` withdrawals on one connection to ``ports[first]``; on a lost connection the same
    request again on the next node, until answered."""
    atm: AtmClient | None = None
    which = first
    for i in range(n):
        card = CARDS[i % len(CARDS)]
        # a STAN of its own (a random one could repeat within the second: a retransmission)
        msg = financial("010000", card.pan, card.pin, 100_000, stan=f"{next(STANS):06d}")
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "no node answered within 30 s"
            try:
                if atm is None:
                    atm = AtmClient()
                    await atm.connect("127.0.0.1", ports[which])
                answer = await atm.request(msg, timeout=10)
                break
            except (AtmError, OSError):
                if atm is not None:
                    await atm.close()
                atm = None
                which = (which + 1) % len(ports)  # fail over to the other node
                await asyncio.sleep(0.05)
        seen.append((msg, answer))
    if atm is not None:
        await atm.close()


def test_two_nodes_on_postgresql_one_killed(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_server.url(pg_server.create_database())
    a_state, b_state = tmp_path / "node-a", tmp_path / "node-b"
    a, a_port = start_node(a_state, url, tmp_path / "a.out", ["--sms-worker", "off"])
    b_state.mkdir(mode=0o700)
    for name in ("lmk.json", "pan.key"):  # the same keys on every node
        shutil.copy2(a_state / name, b_state / name)
    b: subprocess.Popen[bytes] | None = None
    seen: list[tuple[Message, Message]] = []
    try:
        b, b_port = start_node(b_state, url, tmp_path / "b.out", ["--sms-worker", "off"])

        async def load() -> None:
            atms = [
                asyncio.create_task(atm_run([a_port, b_port], i % 2, 12, seen)) for i in range(8)
            ]
            deadline = time.monotonic() + 60
            while len(seen) < 20:  # mid-load
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            a.send_signal(signal.SIGKILL)
            await asyncio.gather(*atms)

        asyncio.run(load())
        assert a.wait(timeout=10) == -signal.SIGKILL
        # node B still answers on its own after the load
        assert b.poll() is None
    finally:
        stop(a)
        if b is not None:
            stop(b)
    assert len(seen) == 8 * 12
    approved = [(m, r) for m, r in seen if r.text(39) == "00"]
    assert approved
    monkeypatch.setenv("SWITCH_STORE", url)

    assert_approvals_posted_once(tmp_path, approved)
