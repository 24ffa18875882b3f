"""Follow-ups of remote transactions over two real switches: this switch (the acquirer, demo
data, BIN 627000 routed to "remote-bank") and the issuer switch (``switch run`` in its own
process, ``tests.remote_issuer_peer``), which holds the card's money.

* a refund of a remote purchase is an online 0200 (processing code 20, field 90) answered
  by the issuer, as a merchant's refund by payment id (no PAN) or an acquirer's by ISO
  identifiers; more than was paid is refused here, before anything is sent;
* a remote pre-authorization (0100) holds the funds at the issuer; its completion is an 0220
  advice through the store-and-forward queue, approved at once and posted once by the
  issuer -- also when the issuer was stalled (SIGSTOP) at the time and got repeats (0221).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from switch.core import testing as t
from switch.core.model import AuthRequest, Channel, OriginalRef, ResponseCode, TxnType
from tests import remote_issuer_peer as peer
from tests.test_remote_link import Acquirer, IssuerProcess, eventually, issuer_journal, run

RC = ResponseCode


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[IssuerProcess]:
    p = IssuerProcess(tmp_path / "issuer")
    p.start()
    yield p
    p.stop()


def pos(txn_type: TxnType, amount: int) -> AuthRequest:
    """A chip-less PIN purchase / pre-authorization at the acquirer's POS (a grocery)."""
    return replace(
        t.withdrawal(pan=peer.CARD_PAN, amount=amount, pin=peer.CARD_PIN, terminal=t.POS),
        txn_type=txn_type,
        channel=Channel.POS,
        mcc="5411",
    )


def iso_followup(txn_type: TxnType, original: AuthRequest, amount: int) -> AuthRequest:
    """The POS's own follow-up: same terminal, field 90 = the original's identifiers."""
    mti = "0100" if original.txn_type is TxnType.PREAUTH else "0200"
    return replace(
        original,
        txn_type=txn_type,
        amount=amount,
        stan=t.next_stan(),
        pin_block=None,
        original=OriginalRef(mti, original.stan, original.transmission, original.acquirer_id),
    )


async def saf_empty(acq: Acquirer) -> bool:
    return await acq.saf.count() == 0


def rows_of(state: Path, txn_type: str) -> list[tuple[str, str, int, str]]:
    return [r for r in issuer_journal(state) if r[0] == txn_type]


def test_refunds_of_a_remote_purchase(tmp_path: Path, issuer: IssuerProcess) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port)
        try:
            before = await acq.available()
            sale = pos(TxnType.PURCHASE, 400_000)
            paid = await acq.authorize(sale)
            assert paid.response_code is RC.APPROVED, paid
            assert paid.transaction_id
            assert await acq.available() == before - 400_000
            # the merchant refunds part by payment id (no PAN: the acquirer keeps none)
            api = await acq.authorize(t.follow_up(TxnType.REFUND, paid.transaction_id, 150_000))
            assert api.response_code is RC.APPROVED, api
            assert await acq.available() == before - 250_000
            # the POS refunds another part with the original's ISO identifiers and the card
            iso = await acq.authorize(iso_followup(TxnType.REFUND, sale, 200_000))
            assert iso.response_code is RC.APPROVED, iso
            assert await acq.available() == before - 50_000
            # more than is left is refused here, and never reaches the issuer
            sent = len(rows_of(issuer.state_dir, "refund"))
            over = await acq.authorize(t.follow_up(TxnType.REFUND, paid.transaction_id, 60_000))
            assert over.response_code is RC.INVALID_AMOUNT, over
            assert "refundable is 50000" in over.message
            refunds = rows_of(issuer.state_dir, "refund")
            assert len(refunds) == sent == 2
            assert sorted(r[2] for r in refunds) == [150_000, 200_000]
            assert {r[1] for r in refunds} == {"00"}
            assert await acq.saf.count() == 0  # refunds are online: nothing queued
        finally:
            await acq.close()

    run(go())


def test_a_refund_of_a_declined_remote_purchase_is_refused(
    tmp_path: Path, issuer: IssuerProcess
) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port)
        try:
            declined = await acq.authorize(pos(TxnType.PURCHASE, 20_000_000))  # > balance
            assert declined.response_code is RC.INSUFFICIENT_FUNDS, declined
            assert declined.transaction_id
            r = await acq.authorize(t.follow_up(TxnType.REFUND, declined.transaction_id, 1_000))
            assert r.response_code is RC.INVALID_TRANSACTION
            assert "was declined" in r.message
            assert rows_of(issuer.state_dir, "refund") == []
        finally:
            await acq.close()

    run(go())


def test_remote_preauth_and_completion(tmp_path: Path, issuer: IssuerProcess) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port)
        try:
            before = await acq.available()
            pre = await acq.authorize(pos(TxnType.PREAUTH, 800_000))
            assert pre.response_code is RC.APPROVED, pre
            assert pre.transaction_id
            assert await acq.available() == before - 800_000  # held at the issuer
            too_much = t.follow_up(TxnType.COMPLETION, pre.transaction_id, 800_001)
            assert (await acq.authorize(too_much)).response_code is RC.INVALID_AMOUNT
            done = await acq.authorize(t.follow_up(TxnType.COMPLETION, pre.transaction_id, 650_000))
            assert done.response_code is RC.APPROVED, done
            assert done.approved_amount == 650_000
            await eventually(lambda: saf_empty(acq))
            assert acq.remote.advices_delivered == 1
            assert await acq.available() == before - 650_000  # the rest of the hold released
            (completion,) = rows_of(issuer.state_dir, "completion")
            assert completion[1:3] == ("00", 650_000)
            # captured once: a second completion is refused here
            again = t.follow_up(TxnType.COMPLETION, pre.transaction_id, 1_000)
            assert (await acq.authorize(again)).response_code is RC.INVALID_TRANSACTION
            # the captured payment is refunded through the issuer (from the pre-auth)
            assert done.transaction_id
            back = await acq.authorize(t.follow_up(TxnType.REFUND, done.transaction_id, 650_000))
            assert back.response_code is RC.APPROVED, back
            assert await acq.available() == before
        finally:
            await acq.close()

    run(go())


def test_completion_is_delivered_when_the_issuer_comes_back(
    tmp_path: Path, issuer: IssuerProcess
) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port, timeout=1.0)
        try:
            before = await acq.available()
            pre_req = pos(TxnType.PREAUTH, 300_000)
            assert (await acq.authorize(pre_req)).response_code is RC.APPROVED
            issuer.pause()
            start = time.monotonic()
            done = await acq.authorize(iso_followup(TxnType.COMPLETION, pre_req, 300_000))
            assert done.response_code is RC.APPROVED, done
            # answered at once, not after the 1 s time-out (the repeats below need that short
            # a time-out: a longer one keeps the paused issuer's line down in reconnects)
            assert time.monotonic() - start < 1.0
            (entry,) = await acq.saf.pending("remote-bank")
            assert entry.message.mti == "0220" and entry.message.text(90)[:4] == "0100"
            await eventually(lambda: _sent_once(acq), within=30)
            # past the 1 s time-out the next send is a repeat. Not a race: the request's
            # time-out and this sleep are timers of one event loop, the time-out's is earlier
            await asyncio.sleep(1.5)
            issuer.resume()
            await eventually(lambda: saf_empty(acq), within=30)
            assert await acq.available() == before - 300_000
            # the issuer got the advice and its repeat(s), and posted it once
            assert acq.remote.repeats_sent >= 1
            (completion,) = rows_of(issuer.state_dir, "completion")
            assert completion[1:3] == ("00", 300_000)
        finally:
            issuer.resume()
            await acq.close()

    run(go())


async def _sent_once(acq: Acquirer) -> bool:
    entries = await acq.saf.pending("remote-bank")
    return bool(entries) and entries[0].attempts >= 1


def test_void_of_a_remote_preauth_releases_it_and_bars_its_completion(
    tmp_path: Path, issuer: IssuerProcess
) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port)
        try:
            before = await acq.available()
            pre = await acq.authorize(pos(TxnType.PREAUTH, 250_000))
            assert pre.response_code is RC.APPROVED and pre.transaction_id, pre
            void = await acq.authorize(t.follow_up(TxnType.VOID, pre.transaction_id, 0))
            assert void.response_code is RC.APPROVED, void
            assert void.approved_amount == 250_000  # what it gives back, as journaled
            await eventually(lambda: saf_empty(acq))
            assert await acq.available() == before  # the issuer released the hold
            late = t.follow_up(TxnType.COMPLETION, pre.transaction_id, 250_000)
            r = await acq.authorize(late)
            assert r.response_code is RC.INVALID_TRANSACTION and "released" in r.message, r
            assert await acq.saf.count() == 0  # no advice the issuer would have to refuse
        finally:
            await acq.close()

    run(go())


def test_a_refund_that_times_out_is_reversed_not_resent(
    tmp_path: Path, issuer: IssuerProcess
) -> None:
    """Outcome unknown (issuer stalled): 91, and the refund's 0420 undoes it if it happened."""

    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port, timeout=1.0)
        try:
            paid = await acq.authorize(pos(TxnType.PURCHASE, 300_000))
            assert paid.response_code is RC.APPROVED and paid.transaction_id, paid
            after_sale = await acq.available()
            issuer.pause()
            refund = t.follow_up(TxnType.REFUND, paid.transaction_id, 100_000)
            r = await acq.authorize(refund)
            assert r.response_code is RC.ISSUER_UNAVAILABLE and "reversal queued" in r.message, r
            (entry,) = await acq.saf.pending("remote-bank")
            assert entry.message.mti == "0420" and entry.message.text(90)[:10] == "0200" + (
                refund.stan
            )
            issuer.resume()
            await eventually(lambda: saf_empty(acq), within=30)
            assert await acq.available() == after_sale  # refunded once, then reversed
            refunds = rows_of(issuer.state_dir, "refund")
            assert [(x[1], x[2]) for x in refunds] == [("00", 100_000)]  # never resent
            # the merchant may refund again: the timed-out one did not count here
            again = await acq.authorize(t.follow_up(TxnType.REFUND, paid.transaction_id, 300_000))
            assert again.response_code is RC.APPROVED, again
            assert await acq.available() == after_sale + 300_000
        finally:
            issuer.resume()
            await acq.close()

    run(go())


def test_concurrent_completions_of_a_remote_preauth_capture_once(
    tmp_path: Path, issuer: IssuerProcess
) -> None:
    async def go() -> None:
        acq = await Acquirer.open(tmp_path / "acq", issuer.port)
        try:
            before = await acq.available()
            pre = await acq.authorize(pos(TxnType.PREAUTH, 500_000))
            assert pre.response_code is RC.APPROVED and pre.transaction_id, pre
            reqs = [t.follow_up(TxnType.COMPLETION, pre.transaction_id, a) for a in (400_000,) * 4]
            results = await asyncio.gather(*(acq.authorize(r) for r in reqs))
            codes = sorted(r.response_code.value for r in results)
            assert codes == ["00", "12", "12", "12"], results
            await eventually(lambda: saf_empty(acq))
            assert acq.remote.advices_delivered == 1
            assert await acq.available() == before - 400_000
        finally:
            await acq.close()

    run(go())
