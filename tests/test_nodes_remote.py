"""Remote issuers with several nodes over one store (issue 13, docs/architecture.md §7), in
one process: the store-and-forward queue's rows and leases as two nodes share them, and two
``SwitchCore`` nodes (shared mode) capturing one remote pre-authorization at the same moment
through a real issuer switch (``tests.remote_issuer_peer``).

On SQLite the nodes are the ``--workers`` processes of one machine (one ``saf.db``, one
store file); on PostgreSQL, nodes anywhere (the store's ``saf`` / ``saf_leases`` tables).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from switch.core import testing as t
from switch.core.model import ResponseCode, TxnType
from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.iso8583.message import Message
from switch.iso8583.remote import (
    RemoteIssuerConfig,
    RemoteIssuers,
    move_saf_rows,
    start_remote_issuers,
)
from switch.iso8583.saf import SafQueue
from switch.store import ENV_STORE, is_postgres
from switch.store.saf_rows import SafRows, SqliteSafRows
from tests import remote_issuer_peer as peer
from tests.pg_server import query_state
from tests.test_remote_followups import pos
from tests.test_remote_link import IssuerProcess, issuer_journal

pytestmark = pytest.mark.usefixtures("store_backend")

RC = ResponseCode
KEY = bytes(range(32))
PAN = "6270000000000018"


def shared_rows(tmp_path: Path) -> SafRows:
    """The rows every node of the test's store shares: the PostgreSQL tables of
    ``SWITCH_STORE``, else one ``saf.db`` (as the ``--workers`` processes open it)."""
    url = os.environ.get(ENV_STORE)
    if is_postgres(url):
        from switch.store.saf_postgres import PostgresSafRows

        return PostgresSafRows(str(url))
    return SqliteSafRows(tmp_path / "saf.db")


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"condition not met within {within} s"
        await asyncio.sleep(0.05)


def test_two_nodes_share_the_queue_and_take_turns_on_an_issuer(tmp_path: Path) -> None:
    async def go() -> None:
        a = SafQueue(shared_rows(tmp_path), KEY)
        b = SafQueue(shared_rows(tmp_path), KEY)
        try:
            assert a.holder != b.holder
            first = await a.add("rb", Message("0420", {2: PAN, 11: "000001"}))
            await b.add("rb", Message("0220", {11: "000002"}))
            await a.add("other", Message("0420", {11: "000003"}))
            await a.add("rb", Message("0420", {11: "000004"}))
            await b.mark_attempt(first)
            # every node sees every node's rows, oldest first, sealed under the shared key
            seen = await b.pending("rb")
            assert [e.message.text(11) for e in seen] == ["000001", "000002", "000004"]
            assert [e.message.mti for e in seen] == ["0420", "0220", "0420"]
            assert seen[0].message.text(2) == PAN and [e.attempts for e in seen] == [1, 0, 0]
            # one node at a time on an issuer's queue; renewing is taking it again
            assert await a.claim("issuer:rb", 30)
            assert not await b.claim("issuer:rb", 30)
            assert await b.claim("issuer:other", 30)  # another issuer: its own lease
            assert await a.claim("issuer:rb", 30)
            await a.release("issuer:rb")
            assert await b.claim("issuer:rb", 30)
            await a.release("issuer:rb")  # not a's any more: stays b's
            assert not await a.claim("issuer:rb", 30)
            # a holder that stops renewing (a node that died) loses it once it expires
            assert await b.claim("issuer:rb", 0.3)
            await eventually(lambda: a.claim("issuer:rb", 30))
            assert not await b.claim("issuer:rb", 30)
            for entry in seen:  # acknowledged by either node: gone for both
                await (a if entry.entry_id % 2 else b).acknowledge(entry.entry_id)
            assert await a.count("rb") == 0 and await b.count() == 1
        finally:
            a.close()
            b.close()
        # the PAN is sealed in the rows: not in the store in clear
        if is_postgres(os.environ.get(ENV_STORE)):
            rows = query_state(tmp_path, "SELECT sealed FROM saf")
            raw = b"".join(r[0] for r in rows if isinstance(r[0], bytes))
        else:
            raw = b"".join(p.read_bytes() for p in tmp_path.glob("saf.db*"))
        assert raw and PAN.encode() not in raw

    asyncio.run(go())


def test_a_queue_file_left_behind_moves_into_the_shared_rows(tmp_path: Path) -> None:
    """A node that queued into its own ``saf.db`` before it joined the shared store: its rows
    move into the shared queue at start (``open_saf``), oldest first, repeats still repeats."""

    async def go() -> None:
        old = SafQueue(tmp_path / "old" / "saf.db", KEY)
        first = await old.add("rb", Message("0420", {2: PAN, 11: "000001"}))
        await old.add("rb", Message("0220", {11: "000002"}))
        await old.mark_attempt(first)
        old.close()
        target = shared_rows(tmp_path)
        assert move_saf_rows(SqliteSafRows(tmp_path / "old" / "saf.db"), target) == 2
        q = SafQueue(target, KEY)
        try:
            entries = await q.pending("rb")
            assert [(e.message.text(11), e.attempts) for e in entries] == [
                ("000001", 1),
                ("000002", 0),
            ]
            assert entries[0].message.text(2) == PAN
        finally:
            q.close()
        again = SqliteSafRows(tmp_path / "old" / "saf.db")
        try:
            assert again.count(None) == 0
        finally:
            again.close()

    asyncio.run(go())


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[IssuerProcess]:
    p = IssuerProcess(tmp_path / "issuer")
    p.start()
    yield p
    p.stop()


async def open_node(state: Path, issuer_port: int) -> tuple[SwitchCore, RemoteIssuers]:
    """One node of the shared store, with its own link to the issuer (as ``switch run``)."""
    core = await SwitchCore.open(state, durable=False, shared=True)
    ceremony = InProcessHsm(Lmk.load_or_create(state / "lmk.json"), authorised=True)
    zpk = await ceremony.form_key_from_clear_components(KeyType.ZPK, [peer.LINK_ZPK_CLEAR])
    config = RemoteIssuerConfig(
        "remote-bank", "127.0.0.1", issuer_port, zpk.key_under_lmk, timeout=10.0,
        echo_interval=0.3, saf_retry=0.3, reconnect_max=0.5,
    )  # fmt: skip
    remotes = await start_remote_issuers(core, [config], state)
    assert await remotes.issuers["remote-bank"].client.wait_connected(30), "no sign-on"
    return core, remotes


def test_two_nodes_capture_one_remote_preauthorization_once(
    tmp_path: Path, issuer: IssuerProcess
) -> None:
    """Four captures of one remote pre-authorization at once, two on each node, each for
    more than half of it: one is approved and forwarded (one 0220), the others refused (12),
    the issuer posts the one capture -- never more than was authorized in total."""
    state = tmp_path / "acq"

    async def go() -> None:
        a, a_links = await open_node(state, issuer.port)
        try:
            b, b_links = await open_node(state, issuer.port)
            try:
                pre = await a.authorize(pos(TxnType.PREAUTH, 500_000))
                assert pre.response_code is RC.APPROVED and pre.transaction_id, pre
                reqs = [
                    t.follow_up(TxnType.COMPLETION, pre.transaction_id, 300_000) for _ in range(4)
                ]
                results = await asyncio.gather(
                    *((a if i % 2 else b).authorize(r) for i, r in enumerate(reqs))
                )
                codes = sorted(r.response_code.value for r in results)
                assert codes == ["00", "12", "12", "12"], results
                await eventually(lambda: _queue_empty(a_links))
                delivered = sum(
                    links.issuers["remote-bank"].advices_delivered for links in (a_links, b_links)
                )
                assert delivered == 1
            finally:
                await b_links.close()
                await b.close()
        finally:
            await a_links.close()
            await a.close()

    asyncio.run(asyncio.wait_for(go(), 120))
    rows = issuer_journal(issuer.state_dir)
    assert [(r[0], r[1], r[2]) for r in rows if r[0] == "completion"] == [
        ("completion", "00", 300_000)
    ]
    captured = query_state(
        state,
        "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM journal"
        " WHERE txn_type = 'completion' AND response_code = '00'",
    )
    assert [(int(str(n)), int(str(s))) for n, s in captured] == [(1, 300_000)]


async def _queue_empty(links: RemoteIssuers) -> bool:
    return await links.saf.count() == 0
