"""Operator tools against a real ``switch run`` (a subprocess on free ports), driven by the
``switch card|txn|account|operator`` commands (other processes) and real ISO 8583 messages.

What is proved: a card blocked through the CLI is declined 62 by the very next ATM request of
the running switch, and approved again once unblocked; ``switch txn search`` finds a
withdrawal by terminal + STAN, by PAN (hashed by the switch), by RRN (assigned by the switch
when the ATM sent none, an acquirer's own RRN kept) and by card and time, page by page, the
PAN masked in every output; merchant and operator credentials are not interchangeable
(UNAUTHENTICATED both ways); an operator added or removed while the switch runs is seen at
once; and each action leaves its audit row (who, what, target, outcome, no full PAN).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from switch.api.client import MerchantClient
from switch.api.testing import ECOM
from switch.atm import AtmClient, financial, sign
from switch.core import demo
from switch.gen.switch.v1 import operator_pb2 as opb
from switch.gen.switch.v1 import operator_pb2_grpc as ogrpc
from tests.switch_proc import run_with_operator

SWITCH = [sys.executable, "-m", "switch.cli"]
BLOCK_CARD = demo.CARDS[0]  # active
SEARCH_CARD = demo.CARDS[7]  # active, a large balance; only the search test uses it
PIN_CARD = demo.CARDS[1]  # active
LOST_CARD = demo.CARDS[3]  # lost: final
ATM = demo.TERMINALS[0]
ALL_PANS = [c.pan for c in demo.CARDS]


@dataclass
class Running:
    state: Path
    target: str
    iso_port: int
    key: str  # alice's operator key

    def env(self, operator: str = "alice", key: str | None = None) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SWITCH_GRPC": self.target}
        env["SWITCH_OPERATOR_ID"] = operator
        env["SWITCH_OPERATOR_KEY"] = self.key if key is None else key
        return env

    def cli(
        self, *args: str, operator: str = "alice", key: str | None = None, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SWITCH, *args], env=self.env(operator, key), capture_output=True, text=True,
            timeout=60, input=stdin,
        )  # fmt: skip

    def ok_json(self, *args: str) -> Any:
        p = self.cli(*args, "--json")
        assert p.returncode == 0, p.stderr
        for pan in ALL_PANS:
            assert pan not in p.stdout
        return json.loads(p.stdout)

    def atm(self, card: demo.DemoCard, amount: str = "1000", pin: str | None = None) -> str:
        p = self.cli(
            "atm", "withdraw", "--amount", amount, "--port", str(self.iso_port),
            "--card", card.pan, "--pin", card.pin if pin is None else pin,
        )  # fmt: skip
        assert p.returncode in (0, 1), p.stderr
        return p.stdout

    def audit(self) -> list[tuple[str, str, str, str, str]]:
        conn = sqlite3.connect(f"file:{self.state / 'switch.db'}?mode=ro", uri=True)
        try:
            return conn.execute(
                "SELECT operator_id, action, target, outcome, detail FROM operator_audit "
                "ORDER BY audit_id"
            ).fetchall()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("operator")
    with run_with_operator(root) as sw:
        assert "gRPC operator API on 127.0.0.1:" in sw.log.read_text()
        yield Running(sw.state, f"127.0.0.1:{sw.grpc_port}", sw.iso_port, sw.key)
    log = sw.log.read_text(errors="replace")
    for pan in ALL_PANS:
        assert pan not in log, "a full PAN reached the switch's log"


def _stan_rrn(atm_output: str) -> tuple[str, str]:
    m = re.search(r"STAN (\d{6}), transmission \d{10}, RRN (\w+)", atm_output)
    assert m is not None, atm_output
    return m[1], m[2]


def test_a_blocked_card_is_declined_at_once_and_approved_once_unblocked(running: Running) -> None:
    assert "APPROVED (00)" in running.atm(BLOCK_CARD)
    blocked = running.ok_json("card", "block", "--pan", BLOCK_CARD.pan, "--reason", "card lost")
    assert blocked["status"] == "blocked"
    assert blocked["previous_status"] == "active"
    assert blocked["masked_pan"] == "628058******0017"
    card_id = str(blocked["card_id"])  # a number in the JSON (int64), an argument here

    out = running.atm(BLOCK_CARD)  # the running switch, no restart, no reload
    assert "DECLINED (62)" in out, out

    unblocked = running.ok_json("card", "unblock", "--card", card_id)
    assert (unblocked["status"], unblocked["previous_status"]) == ("active", "blocked")
    assert "APPROVED (00)" in running.atm(BLOCK_CARD)

    # the declined attempt is in the journal, found by card with the code
    found = running.ok_json("txn", "search", "--card", card_id, "--code", "62")
    assert [t["response_code"] for t in found["transactions"]] == ["62"]
    assert found["transactions"][0]["masked_pan"] == "628058******0017"

    target = f"card {card_id} (628058******0017)"
    changes = [r for r in running.audit() if r[1] == "SetCardStatus" and r[2] == target]
    assert changes == [
        ("alice", "SetCardStatus", target, "ok", "active -> blocked; reason: card lost"),
        ("alice", "SetCardStatus", target, "ok", "blocked -> active"),
    ]
    # a second block of a blocked card changes nothing, and says so in the trail
    running.ok_json("card", "block", "--card", card_id)
    again = running.ok_json("card", "block", "--card", card_id)
    assert (again["status"], again["previous_status"]) == ("blocked", "blocked")
    assert running.audit()[-1][3:] == ("unchanged", "blocked -> blocked")
    running.ok_json("card", "unblock", "--card", card_id)


def test_txn_search_by_terminal_stan_pan_rrn_card_and_time_pages_masked(
    running: Running,
) -> None:
    stan, rrn = _stan_rrn(running.atm(SEARCH_CARD, "2000"))
    hits = running.ok_json("txn", "search", "--terminal", ATM.terminal_id, "--stan", stan)
    assert len(hits["transactions"]) == 1, hits
    t = hits["transactions"][0]
    assert (t["stan"], t["terminal_id"], t["response_code"]) == (stan, ATM.terminal_id, "00")
    assert t["masked_pan"] == "628058******0082"
    assert t["amount"] == {"amount_minor": 200_000, "currency": 12}  # int64 as a number
    # no RRN from the ATM: the switch assigned one (its transaction id), stored and answered
    assert t["rrn"] == rrn == t["transaction_id"]
    assert running.ok_json("txn", "search", "--rrn", rrn)["transactions"] == [t]
    assert running.ok_json("txn", "search", "--stan", stan)["transactions"][0] == t
    assert running.ok_json("txn", "show", t["transaction_id"]) == t

    text = running.cli("txn", "show", t["transaction_id"])
    assert text.returncode == 0 and "628058******0082" in text.stdout
    assert SEARCH_CARD.pan not in text.stdout

    # by time: the window around the row's own timestamp (no wall clock involved)
    created = dt.datetime.fromisoformat(t["created_at"].replace("Z", "+00:00"))
    second = dt.timedelta(seconds=1)
    window = ["--from", created.isoformat(), "--to", (created + second).isoformat()]
    assert (
        t in running.ok_json("txn", "search", "--card", str(t["card_id"]), *window)["transactions"]
    )
    later = ["--from", (created + second).isoformat()]
    assert (
        running.ok_json("txn", "search", "--card", str(t["card_id"]), *later)["transactions"] == []
    )

    # by PAN (sent once, hashed by the switch), newest first, page by page
    for _ in range(2):
        assert "APPROVED (00)" in running.atm(SEARCH_CARD, "1000")
    everything = running.ok_json("txn", "search", "--pan", SEARCH_CARD.pan)
    ids = [x["transaction_id"] for x in everything["transactions"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True) and t["transaction_id"] == ids[-1]
    assert everything["next_page_token"] == ""
    paged: list[str] = []
    token = ""
    while True:
        args = ["txn", "search", "--pan", SEARCH_CARD.pan, "--page-size", "1"]
        page = running.ok_json(*args, *(["--page-token", token] if token else []))
        paged += [x["transaction_id"] for x in page["transactions"]]
        token = page["next_page_token"]
        if not token:
            break
    assert paged == ids

    table = running.cli("txn", "search", "--pan", SEARCH_CARD.pan, "--page-size", "2")
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("628058******0082") == 2
    assert f"more: --page-token {ids[1]}" in table.stdout
    assert SEARCH_CARD.pan not in table.stdout

    searches = [r for r in running.audit() if r[1] == "SearchTransactions"]
    assert any("pan=628058******0082" in r[4] for r in searches)
    assert all(SEARCH_CARD.pan not in "".join(r) for r in running.audit())


def test_an_acquirers_rrn_is_kept_and_answered(running: Running) -> None:
    async def send() -> dict[int, Any]:
        client = AtmClient()
        msg = financial("010000", BLOCK_CARD.pan, BLOCK_CARD.pin, 100_000, ATM.terminal_id)
        msg.fields[37] = "ACQ000000042"
        if ATM.tak_clear:
            sign(msg, ATM.tak_clear, client.codec)
        await client.connect("127.0.0.1", running.iso_port)
        try:
            answer = await client.request(msg)
        finally:
            await client.close()
        return dict(answer.fields)

    fields = asyncio.run(send())
    assert (fields[39], fields[37]) == ("00", "ACQ000000042")
    found = running.ok_json("txn", "search", "--rrn", "ACQ000000042")["transactions"]
    assert [x["stan"] for x in found] == [fields[11]]


def test_merchant_and_operator_credentials_are_not_interchangeable(running: Running) -> None:
    async def calls() -> list[tuple[grpc.StatusCode, str]]:
        out = []
        async with grpc.aio.insecure_channel(running.target) as channel:
            op = ogrpc.OperatorStub(channel)
            merchant_md = (("x-merchant-id", ECOM.merchant_id), ("x-api-key", ECOM.api_key))
            as_operator = (("x-operator-id", ECOM.merchant_id), ("x-operator-key", ECOM.api_key))
            for md in (merchant_md, as_operator):
                try:
                    await op.GetAccount(
                        opb.GetAccountRequest(account_number=BLOCK_CARD.account), metadata=md
                    )
                except grpc.aio.AioRpcError as e:
                    out.append((e.code(), e.details() or ""))
        for mid, key in (("alice", running.key),):
            async with MerchantClient(running.target, mid, key) as merchant:
                try:
                    await merchant.list_payments()
                except grpc.aio.AioRpcError as e:
                    out.append((e.code(), e.details() or ""))
        async with grpc.aio.insecure_channel(running.target) as channel:
            from switch.gen.switch.v1 import merchant_pb2 as mpb
            from switch.gen.switch.v1 import merchant_pb2_grpc as mgrpc

            payments = mgrpc.PaymentsStub(channel)
            md = (("x-operator-id", "alice"), ("x-operator-key", running.key))
            try:
                await payments.ListPayments(mpb.ListPaymentsRequest(), metadata=md)
            except grpc.aio.AioRpcError as e:
                out.append((e.code(), e.details() or ""))
        return out

    results = asyncio.run(calls())
    assert results == [
        (grpc.StatusCode.UNAUTHENTICATED, "x-operator-id: missing"),
        (grpc.StatusCode.UNAUTHENTICATED, "x-operator-key: invalid operator credentials"),
        (grpc.StatusCode.UNAUTHENTICATED, "x-api-key: invalid merchant credentials"),
        (grpc.StatusCode.UNAUTHENTICATED, "x-merchant-id: missing"),
    ]
    wrong = running.cli("account", "show", BLOCK_CARD.account, key="not-the-key")
    assert wrong.returncode == 3  # refused by the switch (switch.exits)
    assert "UNAUTHENTICATED: x-operator-key: invalid operator credentials" in wrong.stderr
    refused = [r for r in running.audit() if r[3] == "refused: UNAUTHENTICATED"]
    assert ("alice", "GetAccount") in [(r[0], r[1]) for r in refused]
    assert (ECOM.merchant_id, "GetAccount") in [(r[0], r[1]) for r in refused]


def test_an_operator_added_or_removed_while_running_counts_at_once(running: Running) -> None:
    added = running.cli("operator", "add", "bob", "--state-dir", str(running.state))
    assert added.returncode == 0, added.stderr
    bob_key = added.stdout.strip().splitlines()[-1]
    ops = json.loads((running.state / "operators.json").read_text())
    assert bob_key not in json.dumps(ops)  # only a salted hash is kept
    assert (running.state / "operators.json").stat().st_mode & 0o777 == 0o600

    shown = running.cli("account", "show", BLOCK_CARD.account, operator="bob", key=bob_key)
    assert shown.returncode == 0, shown.stderr
    assert "0001000001-17 (ccp)" in shown.stdout and "Amina Benali" in shown.stdout
    assert running.audit()[-1][:4] == ("bob", "GetAccount", "account 0001000001-17", "ok")

    again = running.cli("operator", "add", "bob", "--state-dir", str(running.state))
    assert again.returncode == 2 and "already exists" in again.stderr
    removed = running.cli("operator", "remove", "bob", "--state-dir", str(running.state))
    assert removed.returncode == 0, removed.stderr
    refused = running.cli("account", "show", BLOCK_CARD.account, operator="bob", key=bob_key)
    assert refused.returncode == 3 and "UNAUTHENTICATED" in refused.stderr


def test_pin_tries_lifecycle_rules_and_refusals(running: Running) -> None:
    assert "DECLINED (55)" in running.atm(PIN_CARD, pin="0000")
    shown = running.ok_json("card", "show", "--pan", PIN_CARD.pan)
    assert (shown["pin_tries"], shown["account_number"]) == (1, PIN_CARD.account)
    assert shown["holder"] == PIN_CARD.holder
    reset = running.ok_json("card", "reset-pin-tries", "--pan", PIN_CARD.pan, "--reason", "call")
    assert reset["pin_tries"] == 0
    last = running.audit()[-1]
    assert last[1:] == (
        "ResetPinTries", f"card {shown['card_id']} (628058******0025)", "ok",
        "pin_tries 1 -> 0; reason: call",
    )  # fmt: skip

    lost = running.cli("card", "unblock", "--pan", LOST_CARD.pan)
    assert lost.returncode == 3
    assert "FAILED_PRECONDITION: status: the card is lost, not blocked" in lost.stderr
    final = running.cli("card", "set-status", "active", "--pan", LOST_CARD.pan)
    assert final.returncode == 3
    assert "FAILED_PRECONDITION: status: lost -> active is not allowed" in final.stderr
    assert running.audit()[-1][3].startswith("refused: FAILED_PRECONDITION")

    missing = running.cli("card", "show", "--card", "999999")
    assert missing.returncode == 3 and "NOT_FOUND: card_id: no card 999999" in missing.stderr
    bad = running.cli("card", "show", "--pan", "6280580000000018")
    assert bad.returncode == 3 and "INVALID_ARGUMENT: pan: not a valid card number" in bad.stderr
    nothing = running.cli("txn", "show", "999999999999")
    assert nothing.returncode == 3 and "NOT_FOUND: transaction_id" in nothing.stderr

    # the PAN from stdin keeps it out of ps and the shell history
    piped = running.cli("card", "show", "--pan", "-", "--json", stdin=PIN_CARD.pan + "\n")
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["masked_pan"] == "628058******0025"
    listed = running.cli("operator", "list", "--state-dir", str(running.state), "--json")
    assert "alice" in [o["operator_id"] for o in json.loads(listed.stdout)]
    assert running.key not in listed.stdout

    account = running.ok_json("account", "show", PIN_CARD.account)
    assert account["holder"] == PIN_CARD.holder
    assert account["available_minor"] == PIN_CARD.balance

    # the trail without SQL: `switch operator audit`, newest first, read while the switch runs
    args = ["operator", "audit", "--state-dir", str(running.state), "--operator", "alice"]
    trail = json.loads(running.cli(*args, "--limit", "500", "--json").stdout)
    assert (trail[0]["action"], trail[0]["target"]) == ("GetAccount", f"account {PIN_CARD.account}")
    assert trail == [t for t in trail if t["operator_id"] == "alice"]
    assert len(trail) == len([r for r in running.audit() if r[0] == "alice"])
    text = running.cli(*args, "--limit", "1")
    assert text.returncode == 0 and text.stdout.count("\n") == 1
    assert f"alice  GetAccount  account {PIN_CARD.account}  ok" in text.stdout
