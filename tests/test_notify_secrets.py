"""Secrets at rest (issue 10 item 4): one-time codes never stored, logged or printed in clear,
and every file of the state directory 0600 in a 0700 directory.

Real parts throughout: the demo-seeded store (conftest ``state``), the real ``SwitchCore``, the
SMPP test peer as the SMS centre, the console transport, ``switch run`` / ``switch pay`` as
subprocesses. The only thing injected is the code generator (``new_otp``), so the codes are
known to the test and chosen absent from the seeded files: searching their bytes for a
random 6-digit code could match by chance.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from switch.core import demo
from switch.core import testing as t
from switch.core.model import ResponseCode, TxnType
from switch.core.service import SwitchCore
from switch.notify.console import ConsoleTransport, read_console_file
from switch.notify.factory import describe_transport, show_codes_setting
from switch.notify.messages import otp_text, render_otp
from switch.notify.reseal import SETTING
from switch.notify.sealing import MASK, SLOT, AlertSeal, SealError, SecretText, is_sealed
from switch.notify.smpp import SmppTransport
from switch.notify.worker import AlertWorker
from switch.store.api import AlertRow, Changes
from switch.store.files import secure_state_dir
from tests.smpp_peer import SmppPeer
from tests.switch_proc import bound_ports

CARD = demo.CARDS[0]
T0 = 1_796_000_000.0  # 2026-12-30, fixed: the core, its OTP expiry and the worker share it
CODES = ("739218", "604857", "281946")
SWITCH = [sys.executable, "-m", "switch.cli"]
MERCHANT = {"SWITCH_MERCHANT_ID": "M-ECOM-001", "SWITCH_API_KEY": demo.MERCHANTS[0].api_key}


def clock() -> float:
    return T0


def _bytes_of(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(state.iterdir()) if p.is_file()}


def _holding(files: dict[str, bytes], code: str) -> list[str]:
    return [name for name, data in files.items() if code.encode() in data]


def _inject_codes(monkeypatch: pytest.MonkeyPatch, state: Path, codes: tuple[str, ...]) -> None:
    """``start_otp`` draws these codes, none of which is in the seeded files already."""
    for code in codes:
        assert not _holding(_bytes_of(state), code), code
    monkeypatch.setattr("switch.core.service.new_otp", iter(codes).__next__)


def _run(state: Path, body: Callable[[SwitchCore, SmppPeer], Awaitable[None]]) -> None:
    async def go() -> None:
        peer = SmppPeer()
        core = await SwitchCore.open(state, clock=clock)
        try:
            await asyncio.wait_for(body(core, peer), 60)
        finally:
            await core.close()
            peer.stop()

    asyncio.run(go())


def _smpp_worker(core: SwitchCore, peer: SmppPeer, state: Path) -> AlertWorker:
    transport = SmppTransport(
        "127.0.0.1", peer.port, system_id="switch", password="secret", timeout=30.0
    )
    return AlertWorker(core.store, transport, clock=clock, seal=AlertSeal.for_state_dir(state))


def test_otp_codes_reach_the_handset_but_no_byte_of_the_state_dir_nor_any_log(
    state: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    _inject_codes(monkeypatch, state, CODES)
    sms_log = state / "sms.log"
    dev_console = io.StringIO()
    masked_console = io.StringIO()

    async def body(core: SwitchCore, peer: SmppPeer) -> None:
        seal = AlertSeal.for_state_dir(state)
        smpp = _smpp_worker(core, peer, state)
        console = AlertWorker(
            core.store, ConsoleTransport(sms_log, stdout=masked_console), clock=clock, seal=seal
        )
        dev = AlertWorker(
            core.store,
            ConsoleTransport(stdout=dev_console, shows_secrets=True),
            clock=clock,
            seal=seal,
        )
        try:
            # 1. SMPP: the SMS centre gets the real code, which pays.
            await core.start_otp(CARD.pan, "JUMIA DZ", 250_000)
            [(stored,)] = core.store.query("SELECT text FROM alerts")
            assert is_sealed(stored) and MASK not in stored and "JUMIA DZ" in stored
            assert await smpp.run_once() == 1
            [msg] = peer.messages
            assert f"Code {CODES[0]} pour payer 2 500,00 DZD chez JUMIA DZ" in msg.text
            assert f"الرمز {CODES[0]} لدفع" in msg.text
            req = t.ecommerce(TxnType.PURCHASE, amount=250_000, otp=CODES[0])
            assert (await core.authorize(req)).response_code is ResponseCode.APPROVED
            assert await smpp.run_once() == 1  # the payment's alert
            # 2. console + sms.log without the development flag: the code is masked, and
            # it is still the valid code (a wrong one is declined, the right one pays).
            await core.start_otp(CARD.pan, "JUMIA DZ", 120_000)
            assert await console.run_once() == 1
            [(_, ref, _, line)] = read_console_file(sms_log)
            assert ref.startswith("alert-") and line.startswith(f"Code {MASK} pour payer")
            assert masked_console.getvalue().count(MASK) == 2  # French and Arabic lines
            wrong = t.ecommerce(TxnType.PURCHASE, amount=120_000, otp="111111")
            assert (await core.authorize(wrong)).response_code is ResponseCode.INCORRECT_PIN
            right = t.ecommerce(TxnType.PURCHASE, amount=120_000, otp=CODES[1])
            assert (await core.authorize(right)).response_code is ResponseCode.APPROVED
            # 3. the development console shows the code.
            await core.start_otp(CARD.pan, "JUMIA DZ", 99_000)
            assert await dev.run_once() == 2  # the second payment's alert, then the code
            assert f"Code {CODES[2]} pour payer" in dev_console.getvalue()
            # the WAL holds every write of this session (no checkpoint yet): no code in it
            files = _bytes_of(state)
            assert len(files["switch.db-wal"]) > 0
            for code in CODES:
                assert _holding(files, code) == [], code
        finally:
            for w in (smpp, console, dev):
                w.close()

    _run(state, body)
    after_close = _bytes_of(state)  # checkpointed into switch.db
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    out, err = capsys.readouterr()
    for code in CODES:
        assert _holding(after_close, code) == [], code
        assert code not in logged and code not in out + err
        assert code not in masked_console.getvalue()
    assert "sms.log" in after_close and "switch.db" in after_close


def test_a_sealed_text_does_not_open_with_another_phone_or_key_and_is_parked(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _inject_codes(monkeypatch, state, CODES[:1])

    async def body(core: SwitchCore, peer: SmppPeer) -> None:
        await core.start_otp(CARD.pan, "JUMIA DZ", 250_000)
        [(alert_id, msisdn, stored)] = core.store.query("SELECT alert_id, msisdn, text FROM alerts")
        seal = AlertSeal.for_state_dir(state)
        assert seal.open(msisdn, stored).reveal().startswith(f"Code {CODES[0]} ")
        with pytest.raises(SealError):
            seal.open("+213550999999", stored)  # a code cannot be redirected to another phone
        with pytest.raises(SealError):
            AlertSeal(b"\x01" * 32).open(msisdn, stored)
        with pytest.raises(SealError):  # the readable template cannot be edited either
            seal.open(msisdn, stored.replace("JUMIA DZ", "EVIL SHOP"))
        # a worker of another state directory's key parks the alert instead of sending it
        stranger = _smpp_worker(core, peer, state)
        stranger.seal = AlertSeal(b"\x02" * 32)
        try:
            assert await stranger.run_once() == 1
        finally:
            stranger.close()
        assert peer.messages == []
        [(status, error)] = core.store.query(
            "SELECT status, last_error FROM alerts WHERE alert_id = ?", (alert_id,)
        )
        assert status == "parked" and "does not open" in error

    _run(state, body)


def test_secret_text_slots_cannot_be_forged_through_the_merchant_name() -> None:
    text = otp_text("482913", f"EVIL{SLOT}SHOP", 1000, 12)
    assert text.secrets == ("482913", "482913") and text.template.count(SLOT) == 2
    assert "EVIL SHOP" in text.masked() and "482913" not in text.masked()
    assert text.reveal() == render_otp("482913", f"EVIL{SLOT}SHOP", 1000, 12)
    with pytest.raises(ValueError, match="one slot per secret"):
        SecretText(f"a{SLOT}b", ())


def test_show_codes_setting_is_explicit_and_named() -> None:
    assert show_codes_setting("") is False and show_codes_setting("0") is False
    assert show_codes_setting("1") is True
    with pytest.raises(ValueError, match="SWITCH_SMS_SHOW_CODES must be 1"):
        show_codes_setting("maybe")
    assert "codes masked" in describe_transport(None)
    assert "codes SHOWN" in describe_transport("file", show_codes=True)
    assert "codes" not in describe_transport("smpp://sys@h:2775")


# -- a store written by an older release --------------------------------------------------------
def test_clear_codes_of_an_older_release_are_sealed_or_redacted_once_with_no_copy_left(
    state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pending, sent = "739218", "604857"
    for code in (pending, sent):
        assert not _holding(_bytes_of(state), code)

    async def old_release(core: SwitchCore, peer: SmppPeer) -> None:
        """What start_otp stored before sealing: the text with its code in clear."""
        for code in (sent, pending):
            ch = Changes()
            text = render_otp(code, "JUMIA DZ", 250_000, 12)
            ch.alerts.append(AlertRow(CARD.phone, text, None, T0))
            await core.store.commit(ch)
        [(first,)] = core.store.query("SELECT MIN(alert_id) FROM alerts")
        core.store.mark_alerts_sent([(int(first), "carrier-1")], T0)

    _run(state, old_release)
    db = sqlite3.connect(state / "switch.db")
    db.execute("DELETE FROM settings WHERE name = ?", (SETTING,))  # as an older release left it
    db.commit()
    db.close()
    assert _holding(_bytes_of(state), pending) == ["switch.db"]  # the premise: clear at rest

    async def upgraded(core: SwitchCore, peer: SmppPeer) -> None:
        files = _bytes_of(state)
        assert _holding(files, pending) == [] and _holding(files, sent) == []
        rows = core.store.query("SELECT status, text FROM alerts ORDER BY alert_id")
        [(s1, redacted), (s2, sealed)] = rows
        assert s1 == "sent" and redacted.startswith(f"Code {MASK} pour payer")
        assert s2 == "pending" and is_sealed(sealed)
        worker = _smpp_worker(core, peer, state)
        try:
            assert await worker.run_once() == 1
        finally:
            worker.close()
        [msg] = peer.messages
        assert f"Code {pending} pour payer" in msg.text

    with caplog.at_level(logging.WARNING, logger="switch.notify.reseal"):
        _run(state, upgraded)
        _run(state, _nothing)  # a second open finds nothing more to do, and says nothing
    lines = [r.getMessage() for r in caplog.records if r.name == "switch.notify.reseal"]
    assert len(lines) == 1 and "1 unsent sealed, 1 sent redacted" in lines[0]
    assert pending not in lines[0] and sent not in lines[0]
    for code in (pending, sent):
        assert _holding(_bytes_of(state), code) == [], code


async def _nothing(core: SwitchCore, peer: SmppPeer) -> None:
    return None


# -- file modes ----------------------------------------------------------------------------------
def _modes(state: Path) -> dict[str, int]:
    return {
        str(p.relative_to(state)): stat.S_IMODE(p.lstat().st_mode)
        for p in [state, *sorted(state.rglob("*"))]
    }


def test_an_older_looser_state_dir_is_tightened_at_open_and_logged_once(
    state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.chmod(state, 0o755)  # noqa: S103 - an older release's directory, to be tightened
    for p in state.iterdir():
        os.chmod(p, 0o644)
    with caplog.at_level(logging.WARNING, logger="switch.store.files"):
        _run(state, _nothing)
        _run(state, _nothing)
    lines = [r.getMessage() for r in caplog.records if r.name == "switch.store.files"]
    assert len(lines) == 1, lines
    assert ". 0755 -> 0700" in lines[0] and "pan.key 0644 -> 0600" in lines[0]
    assert "switch.db 0644 -> 0600" in lines[0]
    modes = _modes(state)
    assert modes.pop(".") == 0o700
    assert modes and set(modes.values()) == {0o600}, modes


def test_a_state_dir_reached_through_a_symlink_is_tightened_once(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.chmod(real, 0o755)  # noqa: S103 - a loose directory, to be tightened
    (real / "sms.log").write_text("x")
    os.chmod(real / "sms.log", 0o644)
    (tmp_path / "var").symlink_to(real)
    assert secure_state_dir(tmp_path / "var") == [". 0755 -> 0700", "sms.log 0644 -> 0600"]
    assert secure_state_dir(tmp_path / "var") == []  # the link's own 0777 is not "looser"
    assert stat.S_IMODE(real.stat().st_mode) == 0o700


class _Switch:
    """``switch run`` (its SMS worker in a child process, console transport) under umask 0,
    so only the modes the switch sets explicitly can keep the files private."""

    def __init__(self, state: Path, out: Path, **env: str) -> None:
        self.out = out
        cmd = [*SWITCH, "run", "--state-dir", str(state), "--iso-port", "0"]
        cmd += ["--grpc-port", "0", "--http-port", "0"]  # the ports: bound_ports, once ready
        full = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        full.pop("SWITCH_SMS", None)
        if "SWITCH_SMS_SHOW_CODES" not in env:
            full.pop("SWITCH_SMS_SHOW_CODES", None)
        self.proc = subprocess.Popen(
            cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=full, umask=0
        )
        self.wait_for(lambda: "switch ready" in self.text(), "switch ready")
        self.grpc = f"127.0.0.1:{bound_ports(out)[1]}"

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not check():
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.text()}"
            time.sleep(0.05)

    def pay(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SWITCH, "pay", "--target", self.grpc, "--timeout", "10", *args],
            capture_output=True, text=True, timeout=30, check=False,
            env={**os.environ, **MERCHANT},
        )  # fmt: skip

    def verify(self, amount: int) -> None:
        r = self.pay("verify", "--minor", "--pan", CARD.pan, str(amount))
        assert r.returncode == 0, r.stdout + r.stderr
        self.wait_for(lambda: self.text().count("pour payer") >= 1, "the code's SMS line")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        assert self.proc.wait(timeout=30) == 0, self.text()


@pytest.fixture
def switches() -> Iterator[list[_Switch]]:
    started: list[_Switch] = []
    try:
        yield started
    finally:
        for sw in started:
            if sw.proc.poll() is None:
                sw.proc.kill()
                sw.proc.wait()


def _code_of_last_otp(state: Path) -> str:
    db = sqlite3.connect(f"file:{state / 'switch.db'}?mode=ro", uri=True)
    try:
        msisdn, stored = db.execute(
            "SELECT msisdn, text FROM alerts WHERE text LIKE 'sealed1:%' "
            "ORDER BY alert_id DESC LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    return AlertSeal.for_state_dir(state).open(msisdn, stored).secrets[0]


def test_switch_run_creates_every_state_file_0600_and_masks_codes_unless_asked(
    tmp_path: Path, switches: list[_Switch]
) -> None:
    state = tmp_path / "var"
    sw = _Switch(state, tmp_path / "run1.out")
    switches.append(sw)
    assert "one-time codes masked" in sw.text()
    sw.verify(250_000)
    running = _modes(state)  # while running: the WAL, the shm and both locks exist
    expected = {"switch.db", "switch.db-wal", "switch.db-shm", "lmk.json", "pan.key"}
    expected |= {"switch.lock", "sms-worker.lock", "sms.log"}
    assert expected <= set(running), running
    assert running.pop(".") == 0o700
    assert set(running.values()) == {0o600}, running
    sw.stop()
    code = _code_of_last_otp(state)
    [line] = [ln for ln in sw.text().splitlines() if "pour payer" in ln]
    assert f"Code {MASK} pour payer" in line
    assert code not in sw.text() and code not in (state / "sms.log").read_text()
    after = _modes(state)
    assert after.pop(".") == 0o700 and set(after.values()) == {0o600}, after

    # Development: the flag prints the code, and the README's demo flow pays with it.
    dev = _Switch(state, tmp_path / "run2.out", SWITCH_SMS_SHOW_CODES="1")
    switches.append(dev)
    assert "one-time codes SHOWN" in dev.text()
    dev.verify(250_000)
    m = re.search(r"Code (\d{6}) pour payer", dev.text())
    assert m is not None, dev.text()
    cvv2 = demo.cvv2(CARD.pan, CARD.expiry)
    paid = dev.pay(
        "sale", "2500", "--pan", CARD.pan, "--expiry", CARD.expiry, "--cvv2", cvv2,
        "--otp", m.group(1),
    )  # fmt: skip
    assert paid.returncode == 0, paid.stdout + paid.stderr
    dev.stop()
