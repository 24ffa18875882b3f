"""``switch run --remote-issuers`` / ``--interchange``: two real switches. The issuer of BIN
627000 is a second ``switch run`` (tests/remote_issuer_peer.py) that knows the acquirer only
by its ``[acquirers.628058]`` table (zone PIN and MAC keys), not its ATMs; the acquirer is
``switch run`` with a ``[remote_issuers.remote-bank]`` table pointing at it; ``switch atm``
withdraws with the remote card at the acquirer's ATM and the answer comes from the issuer's
ledger: PIN translated TPK -> ZPK by the acquirer (CA) and verified under the ZPK by the
issuer (EC), every message on the link MACed under the shared ZAK both ways."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from tests import remote_issuer_peer as peer
from tests.switch_proc import bound_ports, stop
from tests.test_run_quickstart import _atm, _start, _stop

WRONG_ZPK_CLEAR = "FEDCBA9876543210FEDCBA9876543210"


async def _link_keys(state: Path) -> tuple[str, str]:
    """The link ZPK and ZAK under the acquirer's LMK (a key ceremony, done once before the
    start)."""
    await (await SwitchCore.open(state)).close()  # creates the LMK and the demo data
    ceremony = InProcessHsm(Lmk.load(state / "lmk.json"), authorised=True)
    zpk = await ceremony.form_key_from_clear_components(KeyType.ZPK, [peer.LINK_ZPK_CLEAR])
    zak = await ceremony.form_key_from_clear_components(KeyType.ZAK, [peer.LINK_ZAK_CLEAR])
    return zpk.key_under_lmk, zak.key_under_lmk


@contextmanager
def _issuer(state: Path, *, zpk_clear: str = peer.LINK_ZPK_CLEAR, mac: bool) -> Iterator[int]:
    proc, ports = peer.start_issuer_switch(state, zpk_clear=zpk_clear, mac=mac)
    try:
        yield ports[0]
    finally:
        stop(proc)


@contextmanager
def _acquirer(tmp_path: Path, issuer_port: int, mac: bool) -> Iterator[tuple[int, Path]]:
    state = tmp_path / "acquirer"
    zpk, zak = asyncio.run(_link_keys(state))
    remotes = tmp_path / "remotes.toml"
    remotes.write_text(
        f'[remote_issuers.remote-bank]\nhost = "127.0.0.1"\nport = {issuer_port}\n'
        f'zpk = "{zpk}"\ntimeout = 5\n' + (f'zak = "{zak}"\n' if mac else "")
    )
    out = tmp_path / "acquirer.out"
    proc = _start(state, 0, out, extra=["--remote-issuers", str(remotes)])
    port = bound_ports(out)[0]
    try:
        assert f"remote issuer remote-bank: ISO 8583 link to 127.0.0.1:{issuer_port}" in (
            out.read_text()
        )
        yield port, out
    finally:
        assert _stop(proc) == 0, out.read_text()


def _withdraw(port: int, amount: str, pin: str = peer.CARD_PIN) -> str:
    """``switch atm withdraw`` with the remote card; waits out the link's sign-on (91)."""
    args = ["--card", peer.CARD_PAN, "--pin", pin, "--port", str(port)]
    deadline = time.monotonic() + 20
    while True:
        out = _atm("withdraw", "--amount", amount, *args).stdout
        if "DECLINED (91)" not in out or time.monotonic() > deadline:
            return out
        time.sleep(0.3)


def _issuer_journal(state: Path) -> list[tuple[str, str, str, str, int]]:
    db = sqlite3.connect(f"file:{state / 'switch.db'}?mode=ro", uri=True)
    try:
        sql = (
            "SELECT acquirer_id, terminal_id, response_code, txn_type, "
            "(SELECT COALESCE(SUM(amount), 0) FROM postings p WHERE p.txn_id = j.txn_id) "
            "FROM journal j ORDER BY txn_id"
        )
        return [(str(a), str(b), str(c), str(d), int(e)) for a, b, c, d, e in db.execute(sql)]
    finally:
        db.close()


def test_withdrawal_with_a_remote_card_is_answered_by_the_issuer_switch(tmp_path: Path) -> None:
    issuer_state = tmp_path / "issuer"
    with _issuer(issuer_state, mac=True) as issuer_port:
        banner = (issuer_state / "console.log").read_text()
        assert "interchange acquirer 628058 (demo acquirer): ZPK KCV" in banner
        assert "MAC required" in banner
        with _acquirer(tmp_path, issuer_port, mac=True) as (port, out):
            first = _withdraw(port, "5000")
            assert "APPROVED (00)" in first, first + out.read_text()
            wrong = _withdraw(port, "1000", pin="0000")
            assert "DECLINED (55)" in wrong, wrong
        rows = _issuer_journal(issuer_state)
        # the issuer knows the acquirer's ATM only from the request: 628058 / GAB00001
        assert [r[:4] for r in rows] == [
            (peer.ACQUIRER_ID, peer.ACQUIRER_TERMINAL, "00", "cash_withdrawal"),
            (peer.ACQUIRER_ID, peer.ACQUIRER_TERMINAL, "55", "cash_withdrawal"),
        ]
        assert all(r[4] == 0 for r in rows)  # every journal entry's postings balance


def test_a_wrong_zone_pin_key_at_the_issuer_fails_the_pin(tmp_path: Path) -> None:
    """The issuer's [acquirers.628058] zpk is not the key the acquirer translates to: the
    right PIN is refused (55), so the approvals above were verified under the ZPK."""
    with (
        _issuer(tmp_path / "issuer", zpk_clear=WRONG_ZPK_CLEAR, mac=False) as issuer_port,
        _acquirer(tmp_path, issuer_port, mac=False) as (port, out),
    ):
        r = _withdraw(port, "5000")
        assert "DECLINED (55)" in r, r + out.read_text()


def test_a_bad_acquirer_table_stops_switch_run_naming_the_key(tmp_path: Path) -> None:
    def run(toml: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "interchange.toml"
        path.write_text(toml)
        cmd = [sys.executable, "-m", "switch.cli", "run", "--state-dir", str(tmp_path / "s")]
        cmd += ["--iso-port", "0", "--grpc-port", "0", "--interchange", str(path)]
        cmd += ["--http-port", "0"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    missing = run('[acquirers.628058]\nname = "partner"\n')
    assert missing.returncode == 1
    assert "switch run: acquirers.628058.zpk: required" in missing.stderr
    # a well-formed key that is no ZPK under this LMK: the HSM's check at start refuses it
    wrong_type = run('[acquirers.628058]\nzpk = "U0123456789ABCDEF0123456789ABCDEF"\n')
    assert wrong_type.returncode == 1, wrong_type.stdout
    assert "acquirers.628058.zpk: the HSM refused it as a ZPK" in wrong_type.stderr
    assert "switch ready" not in wrong_type.stdout
