"""Field 37 (retrieval reference number): assigned by the switch when the acquirer sends none,
stored in the journal and answered; an acquirer's own RRN is kept as it was sent.

A real core and ISO 8583 listener (``tests.test_iso_server_flows.serve``), the ATM client as
the acquirer. Before the switch assigned RRNs, the answer had no field 37 and the journal row
an empty ``rrn``, so nothing could be searched by it (``switch txn search --rrn``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from switch.core.service import SwitchCore
from switch.iso8583.server import IsoListener
from tests.test_iso_server_flows import client, serve, withdraw


def _journal_rrn(core: SwitchCore, stan: str) -> list[tuple[str, str, str]]:
    rows = core.store.query(
        "SELECT txn_id, rrn, response_code FROM journal WHERE stan = ?", (stan,)
    )
    return [(str(t), str(r), str(c)) for t, r, c in rows]


def test_switch_assigns_stores_and_answers_the_rrn_and_keeps_the_acquirers(state: Path) -> None:
    async def body(core: SwitchCore, ls: list[IsoListener]) -> None:
        c = await client(ls[0])
        approved = withdraw(1_000)
        answer = await c.request(approved)
        assert answer.fields[39] == "00"
        rrn = answer.text(37)
        assert len(rrn) == 12 and rrn.isdigit()
        assert _journal_rrn(core, approved.text(11)) == [(rrn, rrn, "00")]  # its txn id

        again = await c.request(approved)  # a retransmission: the first answer, same RRN
        assert (again.fields[39], again.text(37)) == ("00", rrn)

        declined = withdraw(1_000, pin="0000")
        answer = await c.request(declined)
        assert answer.fields[39] == "55"
        assert _journal_rrn(core, declined.text(11)) == [(answer.text(37),) * 2 + ("55",)]
        assert answer.text(37) != rrn

        theirs = withdraw(1_000)
        theirs.fields[37] = "ACQ000000777"
        answer = await c.request(theirs)
        assert (answer.fields[39], answer.text(37)) == ("00", "ACQ000000777")
        [(_, stored, _)] = _journal_rrn(core, theirs.text(11))
        assert stored == "ACQ000000777"
        await c.close()

    serve(state, body)


def test_every_journal_row_has_an_rrn_the_expiry_reversal_and_merchant_payments_too(
    state: Path,
) -> None:
    """Rows the switch makes on its own (a hold's expiry) or for a merchant (gRPC) carry
    their transaction id as RRN, so the operator finds every row by it."""
    from switch.core import testing as t
    from switch.core.model import TxnType

    async def body() -> None:
        t0 = 1_796_000_000.0  # a fixed clock: expiry is 168 h after the pre-authorization
        core = await SwitchCore.open(state, clock=t.ManualClock(t0))
        try:
            r = await t.authorize_expecting(core, t.ecommerce(TxnType.PREAUTH, amount=100_000))
            assert await core.expire_holds(now=t0 + 168 * 3600) == 1
            rows = core.store.query("SELECT txn_id, rrn, txn_type FROM journal ORDER BY txn_id")
            assert [x[2] for x in rows] == ["preauth", "reversal"]
            assert rows[0][0] == r.transaction_id
            assert all(txn_id == rrn for txn_id, rrn, _ in rows)
        finally:
            await core.close()

    asyncio.run(body())


def test_the_rrn_goes_to_a_remote_issuer_so_both_journals_agree(tmp_path: Path) -> None:
    """A BIN routed to another switch: the RRN we assign travels in field 37, and the issuer
    (a second ``switch run``) journals the same one."""
    from switch.core import testing as t
    from tests import remote_issuer_peer as peer
    from tests.test_remote_link import Acquirer, IssuerProcess, withdrawal

    issuer = IssuerProcess(tmp_path / "issuer")
    issuer.start()
    try:

        async def go() -> None:
            acq = await Acquirer.open(tmp_path / "acq", issuer.port)
            try:
                for _ in range(3):  # our transaction ids run ahead of the issuer's
                    await t.authorize_expecting(acq.core, t.withdrawal(amount=100_000))
                req = withdrawal(100_000)
                r = await acq.authorize(req)
                assert r.approved and r.transaction_id, r
                ours = _journal_rrn(acq.core, req.stan)
                assert ours == [(r.transaction_id, r.transaction_id, "00")]
            finally:
                await acq.close()
            db = sqlite3.connect(f"file:{tmp_path / 'issuer' / 'switch.db'}?mode=ro", uri=True)
            try:
                theirs = db.execute(
                    "SELECT rrn, response_code FROM journal WHERE stan = ? AND acquirer_id = ?",
                    (req.stan, peer.ACQUIRER_ID),
                ).fetchall()
            finally:
                db.close()
            assert theirs == [(r.transaction_id, "00")]

        asyncio.run(asyncio.wait_for(go(), 60))
    finally:
        issuer.stop()
