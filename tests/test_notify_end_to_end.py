"""From posting to handset: the real core writes the alert with its posting, the worker sends
it over SMPP to the test peer, and the peer decodes what the cardholder reads.

Uses the real ``SwitchCore`` (SQLite store, in-process HSM, demo data) in a temp dir.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from switch.core import demo
from switch.core import testing as t
from switch.core.model import ResponseCode, TxnType
from switch.core.service import SwitchCore
from switch.notify.messages import format_amount
from switch.notify.sealing import AlertSeal
from switch.notify.smpp import SmppTransport
from switch.notify.worker import AlertWorker
from tests.smpp_peer import SmppPeer

CARD = demo.CARDS[0]


def run(state: Path, body: Callable[[SwitchCore, AlertWorker, SmppPeer], Awaitable[None]]) -> None:
    async def go() -> None:
        peer = SmppPeer()
        core = await SwitchCore.open(state)
        transport = SmppTransport(
            "127.0.0.1", peer.port, system_id="switch", password="secret", timeout=30.0
        )
        worker = AlertWorker(core.store, transport, seal=AlertSeal.for_state_dir(state))
        try:
            await asyncio.wait_for(body(core, worker, peer), 60)
        finally:
            worker.close()
            await core.close()
            peer.stop()

    asyncio.run(go())


def test_withdrawal_alert_reaches_the_handset_in_french_and_arabic(tmp_path: Path) -> None:
    async def body(core: SwitchCore, worker: AlertWorker, peer: SmppPeer) -> None:
        r = await core.authorize(t.withdrawal(amount=500_000))
        assert r.response_code is ResponseCode.APPROVED
        assert await worker.run_once() == 1
        assert await worker.run_once() == 0
        [msg] = peer.messages
        assert msg.destination == CARD.phone.lstrip("+")
        fr, ar = msg.text.split("\n")
        assert fr.startswith("Retrait ") and "***" + CARD.pan[-4:] in fr
        assert r.available_balance is not None
        assert fr.endswith(f"Solde {format_amount(r.available_balance, 12)}")
        assert ar.startswith("سحب نقدي ") and "الرصيد" in ar
        assert CARD.pan not in msg.text and CARD.pan[:6] not in msg.text
        assert msg.data_coding == 0x08 and msg.parts >= 2
        [(status,)] = core.store.query("SELECT status FROM alerts")
        assert status == "sent"

    run(tmp_path / "state", body)


def test_otp_read_from_the_sms_authorizes_the_payment(tmp_path: Path) -> None:
    async def body(core: SwitchCore, worker: AlertWorker, peer: SmppPeer) -> None:
        await core.start_otp(CARD.pan, "JUMIA DZ", 250_000)
        assert await worker.run_once() == 1
        [msg] = peer.messages
        assert "JUMIA DZ" in msg.text and "2 500,00 DZD" in msg.text
        m = re.search(r"Code (\d{4,8}) ", msg.text)
        assert m is not None
        r = await core.authorize(t.ecommerce(TxnType.PURCHASE, amount=250_000, otp=m.group(1)))
        assert r.response_code is ResponseCode.APPROVED
        assert await worker.run_once() == 1  # the payment's own alert
        assert peer.messages[1].text.startswith("Paiement 2 500,00 DZD")

    run(tmp_path / "state", body)


def test_activation_sms(tmp_path: Path) -> None:
    card = next(c for c in demo.CARDS if c.status.value == "delivered")

    async def body(core: SwitchCore, worker: AlertWorker, peer: SmppPeer) -> None:
        await core.activate_card(card.pan, "BUREAU DE POSTE ALGER")
        assert await worker.run_once() == 1
        [msg] = peer.messages
        assert msg.text.startswith(f"Carte ***{card.pan[-4:]} activée le ")
        assert "تم تفعيل البطاقة" in msg.text

    run(tmp_path / "state", body)
