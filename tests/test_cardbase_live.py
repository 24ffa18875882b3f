"""``switch import`` while ``switch run`` holds the state directory: the records go through
the operator API and the running switch applies them (``switch.cardbase.live``).

Against a real ``switch run`` subprocess (demo data, free ports), driven by ``switch import``
and ``switch atm`` as other processes, with real ISO 8583 and PIN blocks: new accounts and
cards are authorized at once; a card blocked by a re-import is declined 62 by the very next
request; a replacement (same PAN, new PVV) takes the new PIN at once and refuses the old
one; a bad record is rejected with its line number and reason and the others load; the same
file again changes nothing; each batch leaves its audit row, and no full PAN is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import switch_native

from switch.core import demo
from switch.core.domain import luhn_complete
from tests.pg_server import query_state
from tests.switch_proc import run_with_operator

SWITCH = [sys.executable, "-m", "switch.cli"]
PVK = bytes.fromhex(demo.PVK_CLEAR)
CARD_HEADER = "pan,expiry,service_code,product,account,holder,phone,pvki,pvv,status"


def pan(n: int) -> str:
    return luhn_complete(f"{demo.ON_US_BIN}{700_000_000 + n:09d}")


def account_no(n: int) -> str:
    return f"{7_000_000_000 + n:010d}-{n % 100:02d}"


def card_line(
    n: int, *, status: str = "active", pin: str = "1234", expiry: str = "4912", account: int = 0
) -> str:
    p = pan(n)
    pvv = switch_native.pvv_generate(PVK, p, 1, pin)
    acct = account_no(account or n)
    return f"{p},{expiry},201,EDAHABIA_CLASSIC,{acct},HOLDER {n},,1,{pvv},{status}"


@dataclass
class Running:
    root: Path
    state: Path
    iso_port: int
    env: dict[str, str]
    keys: Path

    def cli(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SWITCH, *map(str, args)], env=self.env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip

    def import_(self, what: str, lines: list[str], name: str, *extra: str) -> tuple[int, str]:
        header = CARD_HEADER if what == "cards" else "account,currency,balance,holder,phone"
        path = self.root / name
        path.write_text("\n".join([header, *lines]) + "\n")
        args: list[str | Path] = ["import", what, path, "--state-dir", self.state, *extra]
        if what == "cards":
            args += ["--keys", self.keys]
        p = self.cli(*args)
        out = p.stdout + p.stderr
        for n in range(1, 10):
            assert pan(n) not in out, "a full PAN in the import's output"
        return p.returncode, out

    def withdraw(self, n: int, pin: str = "1234") -> dict[str, object]:
        p = self.cli(
            "atm", "withdraw", "--amount", "1000", "--port", str(self.iso_port), "--card",
            pan(n), "--pin", pin, "--json",
        )  # fmt: skip
        assert p.returncode in (0, 1), p.stderr
        doc = json.loads(p.stdout)
        assert isinstance(doc, dict)
        return doc

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Rows from the store the switch runs on (``SWITCH_STORE`` when set, as the switch
        was started with it, else ``switch.db`` in its state directory)."""
        return query_state(self.state, sql, args)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with start_switch(tmp_path_factory.mktemp("live-import")) as r:
        yield r


@contextlib.contextmanager
def start_switch(root: Path) -> Iterator[Running]:
    """A ``switch run`` on a new state directory under ``root`` (its store: ``SWITCH_STORE``
    if set, else the state directory's SQLite file), with operator ``alice`` and the keys
    file of the demo cards' issuer."""
    with run_with_operator(root) as sw:
        [(pvk, cvk, mk_ac)] = query_state(
            sw.state, "SELECT pvk, cvk, mk_ac FROM cards WHERE card_id = 1"
        )
        keys = root / "keys.toml"
        keys.write_text(f'pvk = "{pvk}"\ncvk = "{cvk}"\nmk_ac = "{mk_ac}"\n')
        client_env = {
            **sw.env, "SWITCH_GRPC": f"127.0.0.1:{sw.grpc_port}", "SWITCH_OPERATOR_ID": "alice",
            "SWITCH_OPERATOR_KEY": sw.key,
        }  # fmt: skip
        yield Running(root, sw.state, sw.iso_port, client_env, keys)
    log = sw.log.read_text(errors="replace")
    for n in range(1, 10):
        assert pan(n) not in log, "a full PAN reached the switch's log"


def test_new_cards_reach_the_running_switch_at_once(running: Running) -> None:
    accounts = [f"{account_no(n)},012,10000000,HOLDER {n},+21355000000{n}" for n in (1, 2, 3)]
    rc, out = running.import_("accounts", accounts, "accounts.csv")
    assert rc == 0, out
    assert "accounts: " in out and "3 loaded, 0 updated, 0 rejected" in out
    assert "through the running switch" in out
    bad = card_line(3).replace(pan(3), pan(3)[:-1] + str((int(pan(3)[-1]) + 1) % 10))
    rc, out = running.import_("cards", [card_line(1), card_line(2), bad], "cards.csv")
    assert rc == 1, out  # one record rejected
    assert "keys: PVK KCV " in out
    bad_pan = bad.split(",")[0]
    masked = f"{bad_pan[:6]}******{bad_pan[-4:]}"
    assert f"cards.csv:4: pan: bad Luhn check digit ({masked})" in out
    assert "2 loaded, 0 updated, 1 rejected" in out
    # the very next authorization of a new card: approved, no restart
    doc = running.withdraw(1)
    assert doc["response_code"] == "00", doc
    # the same file again: nothing changes (no duplicate card, the same totals)
    rc, again = running.import_("cards", [card_line(1), card_line(2), bad], "cards.csv")
    assert rc == 1 and "already imported (2 loaded, 0 updated, 1 rejected)" in again, again
    assert running.query(
        "SELECT COUNT(*) FROM cards WHERE pan_last4 = ? AND pan_first6 = ?",
        (pan(1)[-4:], pan(1)[:6]),
    ) == [(1,)]
    # without --update a known PAN is a duplicate, named with its line
    rc, out = running.import_("cards", [card_line(2, status="blocked")], "dup.csv")
    assert rc == 1 and "dup.csv:2: pan: duplicate PAN" in out and "see --update" in out, out
    audit = running.query(
        "SELECT operator_id, action, outcome, detail FROM operator_audit "
        "WHERE action IN ('ImportCards', 'ImportAccounts') ORDER BY audit_id"
    )
    assert ("alice", "ImportAccounts", "ok", "lines 2-4: 3 loaded, 0 updated, 0 rejected; "
            "file done") in audit  # fmt: skip
    assert ("alice", "ImportCards", "ok", "lines 2-4: 2 loaded, 0 updated, 1 rejected; "
            "file done") in audit  # fmt: skip


def test_block_and_replace_by_import_take_effect_at_once(running: Running) -> None:
    assert (
        running.withdraw(2)["response_code"] == "00"
    )  # the card is live in the switch's cache now
    rc, out = running.import_("cards", [card_line(2, status="blocked")], "block.csv", "--update")
    assert rc == 0 and "0 loaded, 1 updated, 0 rejected" in out, out
    doc = running.withdraw(2)
    assert doc["response_code"] == "62", doc  # the very next request
    # a replacement card: same PAN, new expiry and PIN (new PVV), active again
    line = card_line(2, pin="4321", expiry="5012")
    rc, out = running.import_("cards", [line], "replace.csv", "--update")
    assert rc == 0 and "0 loaded, 1 updated, 0 rejected" in out, out
    assert running.withdraw(2, pin="1234")["response_code"] == "55"  # the old PIN no longer works
    assert running.withdraw(2, pin="4321")["response_code"] == "00"
    assert running.query(
        "SELECT status, expiry FROM cards WHERE pan_last4 = ? AND pan_first6 = ?",
        (pan(2)[-4:], pan(2)[:6]),
    ) == [("active", "5012")]
    # a status the lifecycle forbids is rejected with its line; the card stays as it is
    rc, out = running.import_("cards", [card_line(2, status="ordered")], "back.csv", "--update")
    assert rc == 1 and "back.csv:2: status: active -> ordered is not allowed" in out, out
    assert running.withdraw(2, pin="4321")["response_code"] == "00"


def test_a_batch_sent_twice_is_applied_once_and_one_out_of_place_is_refused(
    running: Running,
) -> None:
    """The API itself: the answer to a batch may be lost (a deadline), so the client resends
    it; the switch recognises it by its offsets. A batch that does not start where the
    file's import stands is refused, naming the offset it expects."""
    import asyncio
    import hashlib

    import grpc

    from switch.gen.switch.v1 import operator_pb2 as opb
    from switch.operator.client import OperatorClient

    lines = [card_line(4, account=3), card_line(5, account=3)]  # accounts 1-3 exist
    text = "\n".join([CARD_HEADER, *lines]) + "\n"
    (running.root / "twice.csv").write_text(text)
    pvk, cvk, mk_ac = (v.split('"')[1] for v in running.keys.read_text().splitlines())
    f = opb.ImportFile(
        file_sha256=hashlib.sha256(text.encode()).hexdigest(), file_name="twice.csv",
        pvk=pvk, cvk=cvk, mk_ac=mk_ac,
    )  # fmt: skip
    header_end = len(CARD_HEADER) + 1
    fields = CARD_HEADER.split(",")
    batch = opb.ImportBatch(file=f, start_offset=0, end_offset=len(text), end_line=3, last=True)
    for line, values in ((2, lines[0]), (3, lines[1])):
        batch.records.add(line=line, fields=dict(zip(fields, values.split(","), strict=True)))
    env = running.env

    async def go() -> None:
        async with OperatorClient(
            env["SWITCH_GRPC"], env["SWITCH_OPERATOR_ID"], env["SWITCH_OPERATOR_KEY"]
        ) as op:
            early = opb.ImportBatch()
            early.CopyFrom(batch)
            early.start_offset = header_end
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await op.import_batch("cards", early)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert refused.value.details() == (
                f"start_offset: the import of this file stands at offset 0 (line 0), "
                f"not {header_end}"
            )
            first = await op.import_batch("cards", batch)
            assert (first.loaded, first.replayed, first.total.done) == (2, False, True)
            again = await op.import_batch("cards", batch)
            assert (again.loaded, again.replayed, again.total.loaded) == (0, True, 2)
            bad = opb.ImportBatch(file=f, start_offset=0, end_offset=0)
            bad.file.file_sha256 = "not hex"
            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await op.import_batch("cards", bad)
            assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert invalid.value.details().startswith("file.file_sha256:")

    asyncio.run(go())
    assert running.withdraw(4)["response_code"] == "00"
    assert running.query(
        "SELECT COUNT(*) FROM cards WHERE pan_last4 IN (?, ?) AND pan_first6 = ?",
        (pan(4)[-4:], pan(5)[-4:], pan(4)[:6]),
    ) == [(2,)]


def test_live_import_on_each_store(store_backend: str, tmp_path: Path) -> None:
    """The same path on both stores (``store_backend``: for PostgreSQL the switch runs with
    ``SWITCH_STORE`` naming a fresh database): the look-ups and the progress row are the
    store's, the batch is written by its group commit. A new card is approved at once, a
    block by import is declined 62 at once, the same file again changes nothing."""
    with start_switch(tmp_path) as running:
        accounts = [f"{account_no(n)},012,10000000,HOLDER {n}," for n in (6, 7)]
        rc, out = running.import_("accounts", accounts, "accounts.csv")
        assert rc == 0 and "2 loaded, 0 updated, 0 rejected" in out, out
        rc, out = running.import_("cards", [card_line(6), card_line(7)], "cards.csv")
        assert rc == 0 and "2 loaded, 0 updated, 0 rejected" in out, out
        assert running.withdraw(6)["response_code"] == "00"  # live in the switch's cache now
        block = [card_line(6, status="blocked")]
        if store_backend == "postgresql":  # the batch waits for another node's batch
            rc, out = _import_behind_another_nodes_batch(running, block, "block.csv")
        else:
            rc, out = running.import_("cards", block, "block.csv", "--update")
        assert rc == 0 and "0 loaded, 1 updated, 0 rejected" in out, out
        assert running.withdraw(6)["response_code"] == "62"  # the very next request
        rc, again = running.import_("cards", block, "block.csv", "--update")
        assert rc == 0 and "already imported (0 loaded, 1 updated, 0 rejected)" in again, again
        assert running.query(
            "SELECT status, COUNT(*) FROM cards WHERE pan_first6 = ? AND pan_last4 IN (?, ?) "
            "GROUP BY status ORDER BY status",
            (pan(6)[:6], pan(6)[-4:], pan(7)[-4:]),
        ) == [("active", 1), ("blocked", 1)]
        assert running.query(
            "SELECT action, detail FROM operator_audit WHERE action = 'ImportCards' "
            "ORDER BY audit_id"
        ) == [
            ("ImportCards", "lines 2-3: 2 loaded, 0 updated, 0 rejected; file done"),
            ("ImportCards", "lines 2-2: 0 loaded, 1 updated, 0 rejected; file done"),
        ]


def _import_behind_another_nodes_batch(
    running: Running, lines: list[str], name: str
) -> tuple[int, str]:
    """``running.import_(cards, --update)`` while the test holds the PostgreSQL import lock
    (as another node's batch would): the switch's batch waits for it, then goes on."""
    import threading

    import psycopg

    from switch.cardbase.live_pg import IMPORT_LOCK

    result: list[tuple[int, str]] = []
    with psycopg.connect(os.environ["SWITCH_STORE"], autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (IMPORT_LOCK,))
        t = threading.Thread(
            target=lambda: result.append(running.import_("cards", lines, name, "--update"))
        )
        t.start()
        deadline = time.monotonic() + 60
        while not other.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND objid = %s",
            (IMPORT_LOCK & 0xFFFFFFFF,),
        ).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline and t.is_alive(), result
            time.sleep(0.05)
        assert not result  # still waiting: nothing applied
        other.execute("SELECT pg_advisory_unlock(%s)", (IMPORT_LOCK,))
        t.join(120)
    return result[0]
