"""Two switch nodes over one PostgreSQL, each with its own SMS worker process, one SMS centre
(issue 13): what two machines would run -- two ``switch run --store postgresql://...`` with
state directories of their own holding the same keys, the default ``--sms-worker process``,
``SWITCH_SMS`` naming a real SMPP peer (``tests.smpp_peer``).

ATMs withdraw on both nodes; both workers claim from the one outbox at the same time (leased
claims per row, ``switch.store.postgres_outbox``). Every alert is delivered, and exactly
once: one SMS per outbox row at the SMS centre, every row marked sent.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg

from switch.atm import AtmClient, financial
from switch.core import demo
from tests.pg_server import PgServer
from tests.smpp_peer import SmppPeer
from tests.switch_proc import bound_ports, stop, wait_ready

SWITCH = [sys.executable, "-m", "switch.cli"]
CARDS = [c for c in demo.CARDS if c.status.value == "active"]
STANS = itertools.count(1)
PER_NODE = 12


def _start(state: Path, url: str, out: Path, peer: SmppPeer) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SWITCH_SMPP_PASSWORD": peer.password}
    env["SWITCH_SMS"] = f"smpp://{peer.system_id}@127.0.0.1:{peer.port}?timeout=20"
    env.pop("SWITCH_STORE", None)
    cmd = [*SWITCH, "run", "--state-dir", str(state), "--store", url, "--iso-port", "0"]
    cmd += ["--grpc-port", "0", "--http-port", "-1", "--no-fsync"]  # SMS: a worker process
    proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=env)
    wait_ready(proc, out, 60)
    return proc, bound_ports(out)[0]  # port 0: no port picked free and taken meanwhile


async def _withdrawals(port: int, n: int) -> int:
    """``n`` withdrawals on one ATM connection; the number approved."""
    atm = AtmClient()
    await atm.connect("127.0.0.1", port)
    approved = 0
    try:
        for i in range(n):
            card = CARDS[i % len(CARDS)]
            msg = financial("010000", card.pan, card.pin, 100_000, stan=f"{next(STANS):06d}")
            answer = await atm.request(msg, timeout=30)
            approved += answer.text(39) == "00"
    finally:
        await atm.close()
    return approved


def _alerts(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT alert_id, status FROM alerts ORDER BY alert_id").fetchall()
    return [(int(a), str(s)) for a, s in rows]


def test_two_nodes_deliver_every_sms_exactly_once(tmp_path: Path, pg_server: PgServer) -> None:
    db = pg_server.create_database()
    url = pg_server.url(db)
    a_state, b_state = tmp_path / "node-a", tmp_path / "node-b"
    peer = SmppPeer()
    a: subprocess.Popen[bytes] | None = None
    b: subprocess.Popen[bytes] | None = None
    try:
        a, a_port = _start(a_state, url, tmp_path / "a.out", peer)
        b_state.mkdir(mode=0o700)
        for name in ("lmk.json", "pan.key"):  # the same keys on every node
            shutil.copy2(a_state / name, b_state / name)
        b, b_port = _start(b_state, url, tmp_path / "b.out", peer)

        async def load() -> list[int]:
            return list(
                await asyncio.gather(*(_withdrawals(p, PER_NODE) for p in (a_port, b_port)))
            )

        approved = asyncio.run(asyncio.wait_for(load(), 120))
        assert all(approved), approved  # both nodes approved withdrawals
        deadline = time.monotonic() + 60
        while (rows := _alerts(url)) and any(s != "sent" for _, s in rows):
            states = Counter(s for _, s in rows)
            assert time.monotonic() < deadline, f"alerts not all sent: {states}"
            time.sleep(0.1)
        assert len(rows) >= sum(approved)  # an alert per approval (a card with a phone)
    finally:
        for proc in (a, b):
            if proc is not None:
                stop(proc)  # a worker finishes its batch, sent and marked, then stops
        peer.stop()
    for out in ("a.out", "b.out"):
        assert "delivered by worker process" in (tmp_path / out).read_text(errors="replace")
    refs = Counter(m.user_message_reference or 0 for m in peer.messages)
    assert sorted(refs) == [alert_id for alert_id, _ in rows]  # every alert ...
    assert set(refs.values()) == {1}  # ... exactly once
    pg_server.drop_database(db)
