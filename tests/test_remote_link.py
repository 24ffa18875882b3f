"""Remote issuer routing end to end: this switch (the acquirer, demo data) forwards BIN
627000 over ISO 8583 to a SECOND switch, ``switch run`` in its own process with its own
state directory and data set (``tests.remote_issuer_peer``), as the issuer.

Covers approvals and declines across the link, PIN translation (the issuer verifies under its
own key), 91 + store-and-forward 0420 on time-out (issuer SIGSTOPped), the queue surviving an
acquirer restart, 91 without a reversal when the line is down, echo keep-alive, reconnect
after the issuer restarts, and many requests in flight on one connection (MUX).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from switch.core import testing as t
from switch.core.interchange import AcquirerConfig
from switch.core.model import AuthRequest, AuthResult, ResponseCode
from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.iso8583.framing import Framing
from switch.iso8583.remote import (
    RemoteIssuerClient,
    RemoteIssuerConfig,
    open_saf,
    start_remote_issuers,
)
from switch.iso8583.saf import SafQueue
from tests import remote_issuer_peer as peer

RC = ResponseCode
ROOT = Path(__file__).resolve().parent.parent
WRONG_ZPK_CLEAR = "FEDCBA9876543210FEDCBA9876543210"
NETWORK_ZPK_CLEAR = "1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A"  # zone key of another acquirer network


class IssuerProcess:
    """The issuer switch (``switch run``) as a subprocess: start (on a port), pause, resume,
    stop."""

    def __init__(self, state_dir: Path, *, mac: bool = False) -> None:
        self.state_dir = state_dir
        self.mac = mac  # the issuer knows the acquirer's ZAK: checks MACs, signs answers
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.binary87_port = 0
        self.tpdu_port = 0  # binary87 behind a TPDU (NAC framing)

    def start(self, port: int = 0) -> int:
        extra = ("0:binary87", "0:binary87:tpdu")
        if self.mac:
            self.proc, ports = peer.start_issuer_switch(self.state_dir, port, extra, mac=True)
        else:
            self.proc, ports = peer.start_issuer_switch(self.state_dir, port, extra)
        self.port, self.binary87_port, self.tpdu_port = ports
        return self.port

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[IssuerProcess]:
    p = IssuerProcess(tmp_path / "issuer")
    p.start()
    yield p
    p.stop()


class Acquirer:
    """This switch: demo data (BIN 627000 routed to "remote-bank") + the remote issuer."""

    def __init__(self, core: SwitchCore, remote: RemoteIssuerClient, saf: SafQueue) -> None:
        self.core = core
        self.remote = remote
        self.saf = saf
        self.closed = False

    @classmethod
    async def open(
        cls,
        state_dir: Path,
        port: int,
        zpk_clear: str = peer.LINK_ZPK_CLEAR,
        timeout: float = 5.0,
        spec: str = "ascii87",
        tpdu: bytes | None = None,
        zak_clear: str | None = None,
    ) -> Acquirer:
        """``timeout``: the answer wait. 5 s by default: a live issuer switch on a loaded CI
        machine can take over a second, which a 1 s wait would answer 91; the tests that
        pause the issuer to see a time-out ask for 1 s."""
        core = await SwitchCore.open(state_dir, durable=False)
        ceremony = InProcessHsm(Lmk.load_or_create(state_dir / "lmk.json"), authorised=True)

        async def zpk_of(clear: str) -> str:
            formed = await ceremony.form_key_from_clear_components(KeyType.ZPK, [clear])
            return formed.key_under_lmk

        zak = ""
        if zak_clear is not None:
            formed = await ceremony.form_key_from_clear_components(KeyType.ZAK, [zak_clear])
            zak = formed.key_under_lmk
        config = RemoteIssuerConfig(
            "remote-bank", "127.0.0.1", port, await zpk_of(zpk_clear), spec=spec, timeout=timeout,
            echo_interval=0.3, saf_retry=0.3, reconnect_max=0.5,
            framing=Framing(tpdu=tpdu is not None), tpdu=tpdu, zak=zak,
        )  # fmt: skip
        # the other network's acquirer, as an [acquirers.<id>] table makes it in ``switch run``
        core.register_acquirer(
            AcquirerConfig(peer.NETWORK_ACQUIRER, zpk=await zpk_of(NETWORK_ZPK_CLEAR))
        )
        started = await start_remote_issuers(core, [config], state_dir)  # as ``switch run``
        remote, saf = started.issuers["remote-bank"], started.saf
        assert await remote.client.wait_connected(30), "no sign-on with the issuer"
        return cls(core, remote, saf)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.remote.close()
        await self.core.close()
        self.saf.close()

    async def authorize(self, req: AuthRequest) -> AuthResult:
        return await self.core.authorize(req)

    async def available(self) -> int:
        r = await self.authorize(t.balance_inquiry(pan=peer.CARD_PAN, pin=peer.CARD_PIN))
        assert r.response_code is RC.APPROVED, r
        assert r.available_balance is not None
        return r.available_balance


def withdrawal(amount: int = 500_000, pin: str = peer.CARD_PIN) -> AuthRequest:
    return t.withdrawal(pan=peer.CARD_PAN, amount=amount, pin=pin)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def test_approvals_and_declines_across_the_link(tmp_path: Path, issuer: IssuerProcess) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port)
        try:
            before = await acq.available()
            assert before == peer.CARD_BALANCE
            ok = await acq.authorize(withdrawal(500_000))
            assert ok.response_code is RC.APPROVED, ok
            assert ok.auth_code and ok.transaction_id
            assert ok.approved_amount == 500_000
            # the issuer posted it: 500,000 + its 35 DZD other-bank ATM fee
            assert await acq.available() == before - 500_000 - 3_500
            over = await acq.authorize(withdrawal(6_000_000))  # above the 50,000 DZD cap
            assert over.response_code is RC.EXCEEDS_AMOUNT_LIMIT, over
            bad_pin = await acq.authorize(withdrawal(100_000, pin="9999"))
            assert bad_pin.response_code is RC.INCORRECT_PIN, bad_pin
            # a remote decline is the acquirer's journal entry too, with the issuer's code
            row = await acq.core.store.journal_entry(bad_pin.transaction_id or "")
            assert row is not None and row.response_code == "55"
        finally:
            await acq.close()

    run(go())


def test_binary87_link(tmp_path: Path, issuer: IssuerProcess) -> None:
    """The issuer's spec is per link: the same flow over its binary87 listener."""

    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.binary87_port, spec="binary87")
        try:
            before = await acq.available()
            assert (await acq.authorize(withdrawal(200_000))).response_code is RC.APPROVED
            assert await acq.available() == before - 200_000 - 3_500
        finally:
            await acq.close()

    run(go())


def test_tpdu_link(tmp_path: Path, issuer: IssuerProcess) -> None:
    """An issuer behind a NAC: every message framed with the configured TPDU (the issuer's
    listener refuses frames without one, and answers with the addresses swapped)."""

    async def go() -> None:
        acq = await Acquirer.open(
            tmp_path / "acq", issuer.tpdu_port, spec="binary87", tpdu=bytes.fromhex("6000010000")
        )
        try:
            before = await acq.available()
            assert (await acq.authorize(withdrawal(200_000))).response_code is RC.APPROVED
            assert await acq.available() == before - 200_000 - 3_500
            assert acq.remote.client.unmatched_answers == 0
        finally:
            await acq.close()

    run(go())


def test_pin_is_translated_to_the_issuer_zone_key(tmp_path: Path, issuer: IssuerProcess) -> None:
    """Under a ZPK the issuer does not share, the right PIN is refused by the issuer (55):
    so the approvals above really were verified under the issuer's own key."""

    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port, zpk_clear=WRONG_ZPK_CLEAR)
        try:
            r = await acq.authorize(withdrawal(100_000))
            assert r.response_code is RC.INCORRECT_PIN, r
        finally:
            await acq.close()

    run(go())


def test_pin_from_another_network_is_translated_zpk_to_zpk(
    tmp_path: Path, issuer: IssuerProcess
) -> None:
    """A request from a terminal we do not know, whose acquirer network shares a ZPK with us:
    its PIN block is under that ZPK and goes to the issuer through CC."""

    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port)
        try:
            base = replace(
                withdrawal(100_000), terminal_id=peer.NETWORK_TERMINAL,
                acquirer_id=peer.NETWORK_ACQUIRER,
            )  # fmt: skip
            ok = replace(base, pin_block=t.pin_block(peer.CARD_PAN, "1234", NETWORK_ZPK_CLEAR))
            assert (await acq.authorize(ok)).response_code is RC.APPROVED
            bad = replace(
                base,
                stan=t.next_stan(),
                pin_block=t.pin_block(peer.CARD_PAN, "1234", WRONG_ZPK_CLEAR),
            )
            assert (await acq.authorize(bad)).response_code is RC.INCORRECT_PIN
        finally:
            await acq.close()

    run(go())


def test_timeout_answers_91_and_the_reversal_is_delivered_later(
    tmp_path: Path, issuer: IssuerProcess
) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port, timeout=1.0)
        try:
            before = await acq.available()
            issuer.pause()
            start = time.monotonic()
            req = withdrawal(700_000)
            r = await acq.authorize(req)
            took = time.monotonic() - start
            assert r.response_code is RC.ISSUER_UNAVAILABLE, r
            assert 0.9 <= took < 15.0, took  # the configured 1 s time-out, not a hang
            assert await acq.saf.count("remote-bank") == 1
            issuer.resume()
            # the issuer did act on the stalled request once resumed; the 0420 undoes it
            await eventually(lambda: _saf_empty(acq.saf))
            assert acq.remote.reversals_delivered == 1
            assert await acq.available() == before
            rows = issuer_journal(issuer.state_dir)
            assert ("cash_withdrawal", "00", 700_000, req.stan) in rows  # it did happen...
            assert [x[1] for x in rows if x[0] == "reversal"] == ["00"]  # ...and was undone
            # the acquirer never resent the request: one journal row for its STAN on each side
            assert len([x for x in rows if x[3] == req.stan]) == 1
        finally:
            issuer.resume()
            await acq.close()

    run(go())


def issuer_journal(state_dir: Path) -> list[tuple[str, str, int, str]]:
    """The issuer switch's journal, read while it runs (WAL: committed rows only)."""
    db = sqlite3.connect(f"file:{state_dir / 'switch.db'}?mode=ro", uri=True)
    try:
        sql = "SELECT txn_type, response_code, amount, stan FROM journal ORDER BY txn_id"
        return [(str(a), str(b), int(c), str(d)) for a, b, c, d in db.execute(sql)]
    finally:
        db.close()


async def _saf_empty(saf: SafQueue) -> bool:
    return await saf.count() == 0


def test_reversal_queue_survives_an_acquirer_restart(tmp_path: Path, issuer: IssuerProcess) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port, timeout=1.0)
        before = await acq.available()
        issuer.pause()
        try:
            req = withdrawal(900_000)
            r = await acq.authorize(req)
            assert r.response_code is RC.ISSUER_UNAVAILABLE
            await acq.close()  # the acquirer goes down with the reversal still owed
            reopened = open_saf(tmp_path / "acq")
            (entry,) = await reopened.pending("remote-bank")
            assert entry.message.mti == "0420"
            assert entry.message.text(90)[:10] == "0200" + req.stan  # names the original
            if entry.attempts == 0:  # as if the process died just after sending the 0420
                await reopened.mark_attempt(entry.entry_id)
            reopened.close()
            issuer.resume()
            acq = await Acquirer.open(tmp_path / "acq", issuer.port)
            await eventually(lambda: _saf_empty(acq.saf))
            assert acq.remote.reversals_delivered == 1
            assert await acq.available() == before
            # on the issuer: the stalled withdrawal was approved once, then reversed once
            rows = issuer_journal(issuer.state_dir)
            assert [x for x in rows if x[0] == "cash_withdrawal"] == [
                ("cash_withdrawal", "00", 900_000, req.stan)
            ]
            reversals = [x for x in rows if x[0] == "reversal"]
            assert len(reversals) == 1 and reversals[0][1] == "00", reversals
        finally:
            issuer.resume()
            await acq.close()

    run(go())


def test_line_down_answers_91_at_once_and_owes_nothing(
    tmp_path: Path, issuer: IssuerProcess
) -> None:
    async def go() -> None:
        # a 20 s time-out: "at once" is then < 10 s, which holds on a loaded machine
        acq = await Acquirer.open(tmp_path / "acq", issuer.port, timeout=20.0)
        try:
            issuer.stop()
            await eventually(lambda: _disconnected(acq.remote))
            start = time.monotonic()
            r = await acq.authorize(withdrawal(100_000))
            assert r.response_code is RC.ISSUER_UNAVAILABLE
            assert "not connected" in r.message
            assert time.monotonic() - start < 10.0
            assert await acq.saf.count() == 0
        finally:
            await acq.close()

    run(go())


async def _echoes_answered(remote: RemoteIssuerClient, n: int) -> bool:
    return remote.client.echoes_answered >= n


async def _disconnected(remote: RemoteIssuerClient) -> bool:
    return not remote.client.connected


def test_echo_keep_alive_and_reconnect_after_issuer_restart(
    tmp_path: Path, issuer: IssuerProcess
) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port)
        try:
            await eventually(lambda: _echoes_answered(acq.remote, 2))  # every 0.3 s idle
            port = issuer.port
            issuer.stop()
            await eventually(lambda: _disconnected(acq.remote))
            issuer.start(port)  # same state dir, same port
            assert await acq.remote.client.wait_connected(30)
            assert acq.remote.client.connects == 2
            r = await acq.authorize(withdrawal(100_000))
            assert r.response_code is RC.APPROVED, r
        finally:
            await acq.close()

    run(go())


def test_acquirer_reversal_of_a_remote_withdrawal(tmp_path: Path, issuer: IssuerProcess) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port)
        try:
            before = await acq.available()
            req = withdrawal(300_000)
            assert (await acq.authorize(req)).approved
            rev = await acq.authorize(t.reversal_of(req))
            assert rev.response_code is RC.APPROVED, rev
            await eventually(lambda: _saf_empty(acq.saf))
            assert await acq.available() == before
        finally:
            await acq.close()

    run(go())


def test_mux_many_requests_in_flight(tmp_path: Path, issuer: IssuerProcess) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port, timeout=5.0)
        try:
            reqs = [withdrawal(100_000 if i % 2 == 0 else 6_000_000) for i in range(16)]
            reqs += [t.balance_inquiry(pan=peer.CARD_PAN, pin=peer.CARD_PIN) for _ in range(8)]
            results = await asyncio.gather(*(acq.authorize(r) for r in reqs))
            for req, res in zip(reqs, results, strict=True):
                if req.amount == 100_000:
                    assert res.response_code is RC.APPROVED, res
                elif req.amount == 6_000_000:
                    assert res.response_code is RC.EXCEEDS_AMOUNT_LIMIT, res
                else:
                    assert res.response_code is RC.APPROVED and res.available_balance, res
            assert await acq.available() == peer.CARD_BALANCE - 8 * (100_000 + 3_500)
            assert acq.remote.client.unmatched_answers == 0
        finally:
            await acq.close()

    run(go())


def test_bad_request_fields_are_named_and_not_sent(tmp_path: Path, issuer: IssuerProcess) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port)
        try:
            long_tid = replace(withdrawal(100_000), terminal_id="GAB000012345", pin_block=None)
            r = await acq.remote.authorize(long_tid)
            assert r.response_code is RC.FORMAT_ERROR
            assert "terminal_id: longer than 8" in r.message
        finally:
            await acq.close()

    run(go())
