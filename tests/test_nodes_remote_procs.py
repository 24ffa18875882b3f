"""Remote issuers with several real ``switch run`` processes (issue 13): the issuer of BIN
627000 is a second switch (``tests.remote_issuer_peer``), the acquirer nodes are ``switch run
--remote-issuers`` processes, ATMs talk ISO 8583 to them.

* Two nodes over PostgreSQL: node A approves two acquirer reversals of remote withdrawals
  while the issuer is down (queued in the store's ``saf`` table, durable before the 00), is
  SIGKILLed holding the issuer's lease, the issuer comes back: node B delivers both once
  the lease ran out, in the order they were queued, each reversal applied once at the
  issuer, the queue empty.
* ``switch run --workers 2`` with a remote issuer (one ``saf.db`` for both workers): each
  worker has remote inquiries answered by the issuer, a remote withdrawal's acquirer
  reversal is delivered and acknowledged.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from switch.atm import AtmClient, financial, reversal
from switch.core import demo
from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.iso8583.message import Message
from tests import remote_issuer_peer as peer
from tests.pg_server import PgServer
from tests.switch_proc import stop, wait_ready
from tests.test_nodes_pg_failover import start_node
from tests.test_remote_link import IssuerProcess

SWITCH = [sys.executable, "-m", "switch.cli"]
PAN = demo.REMOTE_CARD_PAN
STANS = itertools.count(1)
ISSUER_ACCOUNT = 4  # the remote card's account in the issuer's own data set


def remotes_toml(state: Path, issuer_port: int) -> Path:
    """``[remote_issuers.remote-bank]`` with the link's ZPK formed under ``state``'s LMK
    (created here when new: the nodes that copy it share the key), short retries, and a
    time-out long enough that a loaded machine does not turn a slow answer into 91 + a
    reversal of its own."""
    ceremony = InProcessHsm(Lmk.load_or_create(state / "lmk.json"), authorised=True)
    zpk = asyncio.run(ceremony.form_key_from_clear_components(KeyType.ZPK, [peer.LINK_ZPK_CLEAR]))
    path = state.parent / f"{state.name}-remotes.toml"
    path.write_text(
        f'[remote_issuers.remote-bank]\nhost = "127.0.0.1"\nport = {issuer_port}\n'
        f'zpk = "{zpk.key_under_lmk}"\ntimeout = 10\nsaf_retry = 0.3\nreconnect_max = 0.5\n'
        "echo_interval = 0.5\nsaf_lease = 12\n"
    )
    return path


async def ask(port: int, msg: Message) -> Message:
    atm = AtmClient()
    await atm.connect("127.0.0.1", port)
    try:
        return await atm.request(msg, timeout=20)
    finally:
        await atm.close()


def withdraw(port: int, amount: int, proc: str = "010000") -> Message:
    """A remote withdrawal (or with ``proc`` 310000 a balance inquiry) approved through
    ``port``: asked again (a new STAN) while the node's link to the issuer is still signing
    on (91)."""
    deadline = time.monotonic() + 60
    while True:
        msg = financial(proc, PAN, peer.CARD_PIN, amount, stan=f"{next(STANS):06d}")
        answer = asyncio.run(ask(port, msg))
        if answer.text(39) == "00":
            return msg
        assert answer.text(39) == "91", answer.fields
        assert time.monotonic() < deadline, "no approval from the issuer within 60 s"
        time.sleep(0.2)


def reverse(port: int, original: Message) -> None:
    """The ATM's reversal (0420) of ``original``: accepted at once, owed to the issuer."""
    msg = reversal(PAN, int(original.text(4)), original.text(11), original.text(7))
    answer = asyncio.run(ask(port, msg))
    assert answer.text(39) == "00", answer.fields


def poll(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        time.sleep(0.1)


def issuer_balance(issuer: IssuerProcess) -> int:
    db = sqlite3.connect(f"file:{issuer.state_dir / 'switch.db'}?mode=ro", uri=True)
    try:
        ((balance,),) = db.execute(
            "SELECT balance FROM accounts WHERE account_id = ?", (ISSUER_ACCOUNT,)
        )
        return int(balance)
    finally:
        db.close()


def reversals_at_issuer(issuer: IssuerProcess, *originals: Message) -> list[tuple[str, int, str]]:
    """(response code, amount, original STAN) of each reversal the issuer journaled of one
    of ``originals`` (the ATM's STAN is the one the issuer journaled), in its order. Others
    -- a request that timed out on a loaded machine is reversed by the queue too -- are
    not the test's."""
    stans = tuple(m.text(11) for m in originals)
    db = sqlite3.connect(f"file:{issuer.state_dir / 'switch.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT r.response_code, r.amount, o.stan FROM journal r"
            " JOIN journal o ON o.txn_id = r.original_txn_id"
            " WHERE r.txn_type = 'reversal' ORDER BY r.txn_id"
        ).fetchall()
    finally:
        db.close()
    return [(str(c), int(a), str(st)) for c, a, st in rows if st in stans]


def test_a_killed_nodes_queued_reversals_are_delivered_by_the_other(
    tmp_path: Path, pg_server: PgServer
) -> None:
    url = pg_server.url(pg_server.create_database())

    counts = {"saf": "SELECT COUNT(*) FROM saf", "leases": "SELECT COUNT(*) FROM saf_leases"}

    def queued(table: str = "saf") -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute(counts[table]).fetchone()
        assert row is not None
        return int(row[0])

    issuer = IssuerProcess(tmp_path / "issuer")
    issuer_port = issuer.start()
    a_state, b_state = tmp_path / "node-a", tmp_path / "node-b"
    a_state.mkdir(mode=0o700)
    toml = remotes_toml(a_state, issuer_port)
    extra = ["--sms-worker", "off", "--remote-issuers", str(toml)]
    a: subprocess.Popen[bytes] | None = None
    b: subprocess.Popen[bytes] | None = None
    try:
        a, a_port = start_node(a_state, url, tmp_path / "a.out", extra)
        b_state.mkdir(mode=0o700)
        for name in ("lmk.json", "pan.key"):  # the same keys on every node
            shutil.copy2(a_state / name, b_state / name)
        b, _ = start_node(b_state, url, tmp_path / "b.out", extra)
        first, second = withdraw(a_port, 100_000), withdraw(a_port, 200_000)
        paid = peer.CARD_BALANCE - issuer_balance(issuer)
        assert paid > 300_000  # both withdrawals and their fees
        poll(lambda: queued() == 0, "nothing owed yet")  # (a request timed out under load)
        issuer.stop()  # the issuer is down: the reversals can only be queued
        reverse(a_port, first)
        reverse(a_port, second)
        assert queued() == 2  # durable in the shared store before the 00s came back
        a.send_signal(signal.SIGKILL)
        assert a.wait(timeout=30) == -signal.SIGKILL
        # as if A died mid-delivery: its lease on the issuer's queue runs 3 more seconds
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO saf_leases (name, holder, expires_at) VALUES ('issuer:remote-bank',"
                " 'node-a', EXTRACT(EPOCH FROM clock_timestamp()) + 3)"
            )
        issuer.start(issuer_port)  # back on its port: node B's link signs on again
        poll(lambda: queued() == 0, "node B delivers the queue once A's lease ran out")
        poll(lambda: queued("leases") == 0, "node B gives its lease back")
        assert b.poll() is None
        # in order, each applied once: the issuer gave the money and the fees back
        assert reversals_at_issuer(issuer, first, second) == [
            ("00", 100_000, first.text(11)),
            ("00", 200_000, second.text(11)),
        ]
        assert issuer_balance(issuer) == peer.CARD_BALANCE
    finally:
        for proc in (a, b):
            if proc is not None:
                stop(proc)
        issuer.stop()


def answered_ok(out: Path) -> dict[str, int]:
    """STAN -> the worker that approved it, from the workers' transaction lines."""
    found = re.findall(r"\[worker (\d+)\] .*switch\.txn.* stan=(\d+) .* rc=00 ", out.read_text())
    return {stan: int(worker) for worker, stan in found}


def test_workers_with_a_remote_issuer(tmp_path: Path) -> None:
    issuer = IssuerProcess(tmp_path / "issuer")
    issuer_port = issuer.start()
    state = tmp_path / "var"
    asyncio.run(_created(state))
    toml = remotes_toml(state, issuer_port)
    out = tmp_path / "switch.out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SWITCH_SMS", None)
    env.pop("SWITCH_STORE", None)
    cmd = [*SWITCH, "run", "--workers", "2", "--state-dir", str(state), "--iso-port", "0"]
    cmd += ["--grpc-port", "0", "--http-port", "0", "--no-fsync", "--remote-issuers", str(toml)]
    proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(proc, out, 60, "switch ready -- 2 workers")
        found = re.search(r"ISO 8583 port (\d+)", out.read_text())
        assert found is not None, out.read_text()
        port = int(found.group(1))
        deadline = time.monotonic() + 90
        # each new connection lands on either worker: until both had a remote inquiry
        # answered by the issuer (inquiries: no daily count the loop could run into)
        while len(set(answered_ok(out).values())) < 2:
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            withdraw(port, 0, proc="310000")
            time.sleep(0.05)  # its trace line reaches the supervisor's output
        withdrawal = withdraw(port, 100_000)
        reverse(port, withdrawal)
        poll(lambda: _saf_rows(state) == 0, "the workers deliver the reversal")
        assert reversals_at_issuer(issuer, withdrawal) == [("00", 100_000, withdrawal.text(11))]
    finally:
        stop(proc)
        issuer.stop()
    assert proc.returncode == 0, out.read_text()[-3000:]


async def _created(state: Path) -> None:
    """The state directory with its LMK, keys and demo data (as a first ``switch run``)."""
    await (await SwitchCore.open(state, durable=False, store_spec=str(state / "switch.db"))).close()


def _saf_rows(state: Path) -> int:
    db = sqlite3.connect(f"file:{state / 'saf.db'}?mode=ro", uri=True)
    try:
        ((n,),) = db.execute("SELECT COUNT(*) FROM saf")
        return int(n)
    finally:
        db.close()
