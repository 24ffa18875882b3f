"""``switch run --remote-issuers``: two real switches. The issuer of BIN 627000 is a second
``switch run`` (tests/remote_issuer_peer.py); the acquirer is ``switch run`` with a
``[remote_issuers.remote-bank]`` table pointing at it; ``switch atm`` withdraws with the
remote card at the acquirer's ATM and the answer comes from the issuer's ledger."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from tests import remote_issuer_peer as peer
from tests.test_run_quickstart import _atm, _free_port, _start, _stop


async def _link_zpk(state: Path) -> str:
    """The link ZPK under the acquirer's LMK (a key ceremony, done once before the start)."""
    await (await SwitchCore.open(state)).close()  # creates the LMK and the demo data
    ceremony = InProcessHsm(Lmk.load(state / "lmk.json"), authorised=True)
    formed = await ceremony.form_key_from_clear_components(KeyType.ZPK, [peer.LINK_ZPK_CLEAR])
    return formed.key_under_lmk


def test_withdrawal_with_a_remote_card_is_answered_by_the_issuer_switch(tmp_path: Path) -> None:
    issuer, ports = peer.start_issuer_switch(tmp_path / "issuer")
    issuer_port = ports[0]
    try:
        state = tmp_path / "acquirer"
        zpk = asyncio.run(_link_zpk(state))
        remotes = tmp_path / "remotes.toml"
        remotes.write_text(
            f'[remote_issuers.remote-bank]\nhost = "127.0.0.1"\nport = {issuer_port}\n'
            f'zpk = "{zpk}"\ntimeout = 5\n'
        )
        port = _free_port()
        out = tmp_path / "acquirer.out"
        proc = _start(state, port, out, extra=["--remote-issuers", str(remotes)])
        try:
            assert f"remote issuer remote-bank: ISO 8583 link to 127.0.0.1:{issuer_port}" in (
                out.read_text()
            )
            args = ["--card", peer.CARD_PAN, "--pin", peer.CARD_PIN, "--port", str(port)]
            deadline = time.monotonic() + 20
            while True:  # the link signs on in the background
                first = _atm("withdraw", "--amount", "5000", *args)
                if "DECLINED (91)" not in first.stdout or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert "APPROVED (00)" in first.stdout, first.stdout + out.read_text()
            wrong = _atm("withdraw", "--amount", "1000", *args[:2], "--pin", "0000", *args[4:])
            assert "DECLINED (55)" in wrong.stdout, wrong.stdout
        finally:
            assert _stop(proc) == 0, out.read_text()
    finally:
        issuer.send_signal(signal.SIGTERM)
        try:
            issuer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            issuer.kill()
