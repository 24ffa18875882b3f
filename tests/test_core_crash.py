"""Crash safety: a process authorizing a burst through the durable store is SIGKILLed
mid-burst; after restart every approval it printed has exactly one balanced posting, and
every posting belongs to an approved journal entry (nothing lost, nothing doubled)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from switch.core import demo
from switch.core.service import SwitchCore

pytestmark = pytest.mark.usefixtures("store_backend")
PG_DURABLE = True  # on PostgreSQL: a server with fsync on (tests/conftest.py)

CHILD = r"""
import asyncio, sys
from pathlib import Path
from switch.config import load_config
from switch.core import demo, testing as t
from switch.core.service import SwitchCore

async def main(state, cfg):
    core = await SwitchCore.open(Path(state), durable=True, config=load_config(Path(cfg)))
    cards = [demo.CARDS[0], demo.CARDS[7]]
    reqs = [t.withdrawal(pan=cards[i % 2].pan, pin=cards[i % 2].pin, amount=100_000,
                         stan=f"{i:06d}") for i in range(20000)]
    it = iter(reqs)
    async def worker():
        for req in it:
            r = await core.authorize(req)
            if r.approved:
                sys.stdout.write(f"APPROVED {r.transaction_id} {req.stan}\n")
                sys.stdout.flush()
    print("READY", flush=True)
    await asyncio.gather(*(worker() for _ in range(64)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def big_limits_config(path: Path) -> Path:
    from importlib import resources

    text = resources.files("switch.core").joinpath("products.toml").read_text("utf-8")
    text = re.sub(r"daily_count = \d+", "daily_count = 1000000", text)
    text = re.sub(r"daily_amount = [\d_]+", "daily_amount = 100_000_000_000", text)
    out = path / "limits.toml"
    out.write_text(text)
    return out


def test_sigkill_mid_burst_loses_and_doubles_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = big_limits_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state), str(cfg)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    printed: list[str] = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("APPROVED"):
                printed.append(line.split()[1])
                if len(printed) >= 1000:
                    break
            assert time.monotonic() < deadline, "child too slow"
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        # lines already written before the kill are approvals too
        printed += [ln.split()[1] for ln in rest.splitlines() if ln.startswith("APPROVED")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(printed) >= 1000

    async def verify() -> None:
        core = await SwitchCore.open(state)
        try:
            q = core.store.query
            postings: dict[str, list[int]] = {}
            for txn, amount in q("SELECT txn_id, amount FROM postings"):
                postings.setdefault(str(txn), []).append(int(amount))
            approved = {str(x) for (x,) in q("SELECT txn_id FROM journal WHERE response_code='00'")}
            for txn in printed:
                assert sorted(postings[txn]) == [-103_000, 3_000, 100_000], txn
            assert set(postings) <= approved  # every posting had an approval
            assert all(sum(v) == 0 for v in postings.values())
            assert len(set(printed)) == len(printed)
            opening = sum(c.balance for c in demo.CARDS)
            assert q("SELECT SUM(balance) FROM accounts") == [(opening,)]
            # the balances on disk are exactly opening + committed postings
            for c in (demo.CARDS[0], demo.CARDS[7]):
                ((bal,),) = q("SELECT balance FROM accounts WHERE number = ?", (c.account,))
                ((posted,),) = q(
                    "SELECT COALESCE(SUM(p.amount), 0) FROM postings p JOIN accounts a "
                    "USING (account_id) WHERE a.number = ?",
                    (c.account,),
                )
                assert bal == c.balance + posted
        finally:
            await core.close()

    asyncio.run(asyncio.wait_for(verify(), 60))
