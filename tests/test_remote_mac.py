"""MAC on a remote-issuer link (``zak``): what we send is signed, what we accept must be.

Two issuers play the other side:

* a small in-test ISO 8583 host (the real codec and framing) that checks our MACs with an
  independent retail MAC (``psec``) under the clear test ZAK and signs its answers as told --
  under the link key, under another key, or not at all;
* the issuer switch (``tests.remote_issuer_peer``, a real ``switch run``) configured with the
  acquirer's ZAK (``mac=True``): it refuses our unsigned or wrongly signed requests and signs
  its answers.

A missing or wrong answer MAC is no answer: 91 to the acquirer and a reversal queued, which
stays queued until an answer with a valid MAC acknowledges it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from psec.mac import generate_retail_mac

from switch.core import testing as t
from switch.core.model import AuthRequest, ResponseCode, TxnType
from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.iso8583.codec import Codec
from switch.iso8583.framing import FrameSplitter, frame
from switch.iso8583.mac import MacLayout, mac_field
from switch.iso8583.mapping import answer_mti
from switch.iso8583.message import Message
from switch.iso8583.remote import RemoteIssuerClient, RemoteIssuerConfig, start_remote_issuers
from tests import remote_issuer_peer as peer
from tests.test_remote_followups import pos
from tests.test_remote_link import Acquirer, IssuerProcess, eventually, issuer_journal

pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")  # psec's 3DES, the oracle
RC = ResponseCode
ZAK_CLEAR = "0123456789ABCDEFFEDCBA9876543210"  # test value, odd parity
OTHER_CLEAR = "1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A"


def retail_mac(clear: str, data: bytes) -> bytes:
    """ISO 9797-1 algorithm 3, padding method 1, computed outside the switch."""
    key = bytes.fromhex(clear)
    return generate_retail_mac(key[:8], key[8:], data, 1)


class SigningHost:
    """An issuer host in the test: answers every request 00; ``sign`` = "good" (link ZAK),
    "bad" (another key) or "none". Records what it received (and the bytes) and whether its
    MAC checked over those bytes. ``zero_secondary`` writes its answers with an all-zero
    secondary bitmap (valid, but not how we would encode them) and MACs those bytes."""

    def __init__(self, spec: str = "ascii87") -> None:
        self.codec = Codec(spec)
        self.layout = MacLayout(self.codec)
        self.sign = "good"
        self.zero_secondary = False
        self.received: list[Message] = []
        self.payloads: dict[int, bytes] = {}  # id(message) -> its bytes as received
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def mac_valid(self, msg: Message, clear: str = ZAK_CLEAR) -> bool | None:
        """None without a MAC; else whether it is right under ``clear``."""
        mac = msg.get(mac_field(msg))
        if not isinstance(mac, bytes):
            return None
        payload = self.payloads[id(msg)]  # the MAC is last: it covers all bytes before it
        return mac == retail_mac(clear, payload[: -self.layout.wire_size])

    def answer(self, msg: Message) -> bytes:
        echo = (2, 3, 4, 7, 11, 32, 37, 41, 49, 70, 90)
        out = Message(answer_mti(msg.mti), {n: msg.fields[n] for n in echo if n in msg.fields})
        out[39] = "00"
        if msg.mti.startswith("08"):
            return self.codec.encode(out)
        out[38] = "A1B2C3"
        if self.sign == "none":
            return self.codec.encode(out)
        out[mac_field(out)] = bytes(8)
        wire = self.codec.encode(out)
        primary = int(wire[4:20], 16)  # ascii87: hex bitmaps
        if self.zero_secondary and not primary >> 63:
            wire = wire[:4] + b"%016X" % (primary | 1 << 63) + b"0" * 16 + wire[20:]
        covered = wire[: -self.layout.wire_size]
        key = ZAK_CLEAR if self.sign == "good" else OTHER_CLEAR
        return covered + retail_mac(key, covered).hex().upper().encode()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        splitter = FrameSplitter()
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                for f in splitter.feed(chunk):
                    msg = self.codec.decode(f.payload)
                    self.received.append(msg)
                    self.payloads[id(msg)] = f.payload
                    writer.write(frame(self.answer(msg)))
        writer.close()

    def sent(self, *mtis: str) -> list[Message]:
        return [m for m in self.received if m.mti in mtis]


async def form(state: Path, key_type: KeyType, clear: str) -> str:
    """A key ceremony: ``clear`` under the acquirer's LMK."""
    hsm = InProcessHsm(Lmk.load_or_create(state / "lmk.json"), authorised=True)
    return (await hsm.form_key_from_clear_components(key_type, [clear])).key_under_lmk


@contextlib.asynccontextmanager
async def acquirer(
    state: Path, port: int, zak_clear: str | None
) -> AsyncIterator[tuple[SwitchCore, RemoteIssuerClient]]:
    """The demo switch with BIN 627000 linked to ``port``, signing under ``zak_clear``."""
    core = await SwitchCore.open(state, durable=False)
    zak = await form(state, KeyType.ZAK, zak_clear) if zak_clear else ""
    config = RemoteIssuerConfig(
        "remote-bank", "127.0.0.1", port, await form(state, KeyType.ZPK, peer.LINK_ZPK_CLEAR),
        timeout=1.0, echo_interval=30.0, saf_retry=0.3, reconnect_max=0.5, zak=zak,
    )  # fmt: skip
    remotes = await start_remote_issuers(core, [config], state)
    remote = remotes.issuers["remote-bank"]
    try:
        assert await remote.client.wait_connected(10), "no sign-on"
        yield core, remote
    finally:
        await remotes.close()
        await core.close()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def withdrawal(amount: int = 100_000) -> AuthRequest:
    return t.withdrawal(pan=peer.CARD_PAN, amount=amount, pin=peer.CARD_PIN)


def test_requests_are_signed_and_signed_answers_accepted(state: Path) -> None:
    async def go() -> None:
        host = SigningHost()
        port = await host.start()
        try:
            async with acquirer(state, port, ZAK_CLEAR) as (core, remote):
                r = await core.authorize(withdrawal())
                assert r.response_code is RC.APPROVED, r
                assert r.auth_code == "A1B2C3"
                (sign_on,) = host.sent("0800")  # network messages are not MACed
                assert 64 not in sign_on and 128 not in sign_on
                (req,) = host.sent("0200")
                assert 64 in req and host.mac_valid(req) is True
                assert host.mac_valid(req, OTHER_CLEAR) is False
                assert remote.client.bad_macs == 0
        finally:
            await host.close()

    run(go())


def test_an_answer_mac_is_checked_over_the_bytes_received(state: Path) -> None:
    """The issuer MACs its answer as it writes it -- here with an all-zero secondary bitmap,
    which decodes to the same fields as our encoding without one: still a valid answer."""

    async def go() -> None:
        host = SigningHost()
        host.zero_secondary = True
        port = await host.start()
        try:
            async with acquirer(state, port, ZAK_CLEAR) as (core, remote):
                r = await core.authorize(withdrawal())
                assert r.response_code is RC.APPROVED, r
                assert remote.client.bad_macs == 0
                (req,) = host.sent("0200")
                assert host.mac_valid(req) is True  # our MAC, over the bytes we sent
        finally:
            await host.close()

    run(go())


@pytest.mark.parametrize("sign", ["bad", "none"])
def test_an_answer_without_a_valid_mac_is_no_answer(state: Path, sign: str) -> None:
    async def go() -> None:
        host = SigningHost()
        host.sign = sign
        port = await host.start()
        try:
            async with acquirer(state, port, ZAK_CLEAR) as (core, remote):
                req = withdrawal()
                r = await core.authorize(req)
                assert r.response_code is RC.ISSUER_UNAVAILABLE, r
                assert "answer MAC not valid (reversal queued)" in r.message
                assert remote.client.bad_macs == 1
                assert await remote.saf.count("remote-bank") == 1
                # the reversal goes out signed (field 128: field 90 needs the second bitmap)
                # and stays owed while its answers do not verify
                await eventually(lambda: _sent(host, "0421"), within=10)
                rev = host.sent("0420", "0421")[0]
                assert 128 in rev and 64 not in rev and host.mac_valid(rev) is True
                assert rev.text(90)[:10] == "0200" + req.stan
                assert await remote.saf.count("remote-bank") == 1
                host.sign = "good"
                await eventually(lambda: _saf_empty(remote), within=10)
                assert remote.reversals_delivered == 1
        finally:
            await host.close()

    run(go())


def test_without_a_zak_nothing_is_signed_nor_checked(state: Path) -> None:
    async def go() -> None:
        host = SigningHost()
        host.sign = "none"
        port = await host.start()
        try:
            async with acquirer(state, port, None) as (core, _):
                assert (await core.authorize(withdrawal())).response_code is RC.APPROVED
                (req,) = host.sent("0200")
                assert 64 not in req and 128 not in req
        finally:
            await host.close()

    run(go())


async def _sent(host: SigningHost, mti: str) -> bool:
    return bool(host.sent(mti))


async def _saf_empty(remote: RemoteIssuerClient) -> bool:
    return await remote.saf.count() == 0


# -- against the issuer switch -------------------------------------------------------------
@pytest.fixture
def mac_issuer(tmp_path: Path) -> Iterator[IssuerProcess]:
    p = IssuerProcess(tmp_path / "issuer", mac=True)
    p.start()
    yield p
    p.stop()


def test_mac_with_the_issuer_switch(state: Path, mac_issuer: IssuerProcess) -> None:
    """The issuer switch checks our MAC under the acquirer's ZAK and signs its answers."""

    async def go() -> None:
        async with acquirer(state, mac_issuer.port, peer.LINK_ZAK_CLEAR) as (core, remote):
            before = await _available(core)
            r = await core.authorize(withdrawal(200_000))
            assert r.response_code is RC.APPROVED, r
            assert await _available(core) == before - 200_000 - 3_500
            assert remote.client.bad_macs == 0

    run(go())


@pytest.mark.parametrize("zak", [OTHER_CLEAR, None], ids=["wrong-zak", "no-zak"])
def test_issuer_switch_refuses_a_wrong_or_missing_mac(
    state: Path, mac_issuer: IssuerProcess, zak: str | None
) -> None:
    async def go() -> None:
        async with acquirer(state, mac_issuer.port, zak) as (core, remote):
            req = withdrawal(300_000)
            r = await core.authorize(req)
            assert r.response_code is not RC.APPROVED, r
            if zak is not None:  # a 63 comes back unsigned: no valid answer
                assert r.response_code is RC.ISSUER_UNAVAILABLE, r
                assert remote.client.bad_macs >= 1
            rows = issuer_journal(mac_issuer.state_dir)
            assert not [x for x in rows if x[3] == req.stan], rows  # never reached the core

    run(go())


async def _available(core: SwitchCore) -> int:
    r = await core.authorize(t.balance_inquiry(pan=peer.CARD_PAN, pin=peer.CARD_PIN))
    assert r.response_code is RC.APPROVED, r
    assert r.available_balance is not None
    return r.available_balance


def test_signed_preauth_completion_and_refund(tmp_path: Path, mac_issuer: IssuerProcess) -> None:
    """0100, the 0220 advice (through the queue) and the 0200 refund, all signed and their
    answers checked, with the issuer switch that refuses anything unsigned."""

    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", mac_issuer.port, zak_clear=peer.LINK_ZAK_CLEAR)
        try:
            before = await acq.available()
            pre = await acq.authorize(pos(TxnType.PREAUTH, 500_000))
            assert pre.response_code is RC.APPROVED and pre.transaction_id, pre
            done = await acq.authorize(t.follow_up(TxnType.COMPLETION, pre.transaction_id, 400_000))
            assert done.response_code is RC.APPROVED and done.transaction_id, done
            await eventually(lambda: _queue_empty(acq))
            assert acq.remote.advices_delivered == 1
            back = await acq.authorize(t.follow_up(TxnType.REFUND, done.transaction_id, 100_000))
            assert back.response_code is RC.APPROVED, back
            assert await acq.available() == before - 300_000
            assert acq.remote.client.bad_macs == 0
        finally:
            await acq.close()

    run(go())


async def _queue_empty(acq: Acquirer) -> bool:
    return await acq.saf.count() == 0
