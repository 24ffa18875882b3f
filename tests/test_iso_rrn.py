"""Field 37 (retrieval reference number): assigned by the switch when the acquirer sends none,
stored in the journal and answered; an acquirer's own RRN is kept as it was sent.

A real core and ISO 8583 listener (``tests.test_iso_server_flows.serve``), the ATM client as
the acquirer. Before the switch assigned RRNs, the answer had no field 37 and the journal row
an empty ``rrn``, so nothing could be searched by it (``switch txn search --rrn``).
"""

from __future__ import annotations

import asyncio
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
