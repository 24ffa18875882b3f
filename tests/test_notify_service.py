"""The SMS worker in its own process: ``SqliteOutbox``, ``python -m switch.notify.service``, the
supervisor, and ``switch run --sms-worker process|inline|off`` end to end.

Everything is real: the demo-seeded SQLite store (a copy of the conftest template), the
service and ``switch run`` as subprocesses, ``switch atm`` sending ISO 8583 withdrawals, the
console/file transport writing one line per SMS. Every child is killed in ``finally``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from switch.core import testing as t
from switch.core.model import ResponseCode
from switch.core.service import SwitchCore
from switch.notify.console import read_console_file
from switch.notify.supervisor import RestartBackoff, WorkerProcess
from switch.notify.worker_lock import LOCK_NAME
from switch.store.api import AlertRow, Changes, StoreError
from switch.store.sqlite import SqliteStore
from switch.store.sqlite_outbox import OutboxSchemaError, SqliteOutbox
from tests.switch_proc import bound_ports

SERVICE = [sys.executable, "-m", "switch.notify.service"]
SWITCH = [sys.executable, "-m", "switch.cli"]
PHONE = "+213550000001"  # the demo card's phone


# -- helpers ---------------------------------------------------------------------------------
def _wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return [c for c in out if _alive(c)]


def _sms_refs(path: Path) -> list[str]:
    return [ref for _, ref, _, _ in read_console_file(path)] if path.exists() else []


def _alert_statuses(db: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT alert_id, status FROM alerts ORDER BY alert_id").fetchall()
    finally:
        conn.close()
    return [(int(a), str(s)) for a, s in rows]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    if "SWITCH_SMS" not in extra:
        env.pop("SWITCH_SMS", None)
    return env


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def _withdrawals(state: Path, n: int) -> None:
    """``n`` approved withdrawals through the real core: ``n`` pending alerts in the outbox."""
    core = await SwitchCore.open(state, durable=False)
    try:
        for _ in range(n):
            r = await core.authorize(t.withdrawal(amount=100_000))
            assert r.response_code is ResponseCode.APPROVED
    finally:
        await core.close()


# -- SqliteOutbox ----------------------------------------------------------------------------
def test_outbox_refuses_a_missing_database_without_creating_it(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "switch.db"
    with pytest.raises(StoreError, match="cannot open the database") as info:
        SqliteOutbox(db)
    assert str(db) in str(info.value)
    assert not db.exists()


def test_outbox_refuses_a_database_without_the_schema(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    with pytest.raises(OutboxSchemaError, match="no alerts table"):
        SqliteOutbox(db)
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE alerts (alert_id INTEGER PRIMARY KEY, msisdn TEXT, text TEXT)")
    conn.close()
    with pytest.raises(OutboxSchemaError, match=r"lacks column.*amount"):
        SqliteOutbox(old)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        SqliteOutbox(junk)


def test_outbox_runs_beside_the_open_switch_and_renders_stored_facts(state: Path) -> None:
    """The switch holds ``switch.lock`` and its store; the outbox still opens (no lock, no
    migration), renders the text the core left empty, and marks sent in one transaction."""

    async def go() -> None:
        core = await SwitchCore.open(state, durable=False)
        try:
            for _ in range(2):
                r = await core.authorize(t.withdrawal(amount=100_000))
                assert r.response_code is ResponseCode.APPROVED
            versions = core.store.query("SELECT COUNT(*) FROM schema_version")
            with SqliteOutbox(state / "switch.db") as outbox:
                mode = outbox._open().execute("PRAGMA journal_mode").fetchone()[0]
                assert mode == "wal"
                sync = outbox._open().execute("PRAGMA synchronous").fetchone()[0]
                assert sync == 2  # FULL
                due = outbox.claim_due_alerts(time.time() + 1, 10)
                assert [a.msisdn for a in due] == [PHONE, PHONE]
                assert due[0].text.startswith("Retrait 1 030,00 DZD carte ***0017")
                assert t.CARD.pan not in due[0].text
                outbox.mark_alerts_sent([(a.alert_id, f"c-{a.alert_id}") for a in due], 0.0)
                assert outbox.claim_due_alerts(time.time() + 1, 10) == []
            # the store sees the outbox's marks through its own connections
            rows = core.store.query("SELECT status, carrier_id, attempts FROM alerts")
            assert rows == [("sent", f"c-{a.alert_id}", 1) for a in due]
            assert core.store.query("SELECT COUNT(*) FROM schema_version") == versions
            assert core.store.claim_due_alerts(time.time() + 1, 10) == []
        finally:
            await core.close()

    asyncio.run(go())


def test_store_outbox_methods_delegate_and_fail_when_closed(tmp_path: Path) -> None:
    async def go() -> None:
        store = SqliteStore(tmp_path / "switch.db", durable=False)
        with pytest.raises(StoreError, match="not open"):
            store.claim_due_alerts(0.0, 1)
        await store.open()
        await store.commit(Changes(alerts=[AlertRow(PHONE, "hello", None, 1.0)]))
        [alert] = store.claim_due_alerts(2.0, 10)
        store.mark_alert_failed(alert.alert_id, "x" * 900, 5.0, give_up=False)
        [(attempts, error, next_at)] = store.query(
            "SELECT attempts, last_error, next_attempt_at FROM alerts"
        )
        assert (attempts, len(error), next_at) == (1, 500, 5.0)
        await store.close()
        with pytest.raises(StoreError, match="not open"):
            store.mark_alerts_sent([(alert.alert_id, "c")], 6.0)

    asyncio.run(go())


# -- the service process ---------------------------------------------------------------------
def test_service_delivers_pending_alerts_and_exits_0_on_sigterm(
    state: Path, tmp_path: Path
) -> None:
    asyncio.run(_withdrawals(state, 2))
    sms = tmp_path / "sms.log"
    cmd = [*SERVICE, "--state-dir", str(state), "--poll-interval", "0.1"]
    proc = subprocess.Popen(cmd, env=_env(SWITCH_SMS=f"file:{sms}"), stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: len(_sms_refs(sms)) == 2, "2 SMS in the file")
        _wait_for(
            lambda: [s for _, s in _alert_statuses(state / "switch.db")] == ["sent", "sent"],
            "both alerts marked sent",
        )
        second = subprocess.run(
            [*SERVICE, "--state-dir", str(state)], env=_env(SWITCH_SMS=f"file:{sms}"),
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        assert "another SMS worker" in second.stderr and LOCK_NAME in second.stderr
        assert "Traceback" not in second.stderr
        assert _stop(proc) == 0
    finally:
        _kill(proc)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert "Traceback" not in err and t.CARD.pan not in err
    assert _sms_refs(sms) == ["alert-1", "alert-2"]  # each once
    [(_, _, msisdn, text), _] = read_console_file(sms)
    assert msisdn == PHONE and "***0017" in text and t.CARD.pan not in text


def test_service_console_lines_go_to_its_stdout(state: Path) -> None:
    asyncio.run(_withdrawals(state, 1))
    cmd = [*SERVICE, "--state-dir", str(state), "--poll-interval", "0.1"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (state / "sms.log").exists(), "the console transport's file")
        _wait_for(lambda: _sms_refs(state / "sms.log") == ["alert-1"], "the SMS")
        assert _stop(proc, signal.SIGINT) == 0
    finally:
        _kill(proc)
    assert proc.stdout is not None
    [line] = proc.stdout.read().decode().splitlines()
    assert "\talert-1\t" + PHONE + "\tRetrait " in line


@pytest.mark.parametrize(
    ("args", "env", "status", "message"),
    [
        (["--poll-interval", "0"], {}, 2, "--poll-interval: '0' must be a positive number"),
        (["--poll-interval", "soon"], {}, 2, "--poll-interval: 'soon' is not a number"),
        ([], {"SWITCH_SMS": "smpp://nohost"}, 2, "SWITCH_SMS: smpp url needs system_id@host"),
        ([], {"SWITCH_SMS": "carrier-pigeon"}, 2, "SWITCH_SMS: sms transport must be"),
    ],
)
def test_service_bad_options_are_named(
    state: Path, args: list[str], env: dict[str, str], status: int, message: str
) -> None:
    result = subprocess.run(
        [*SERVICE, "--state-dir", str(state), *args], env=_env(**env),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == status, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_service_without_a_store_says_so(tmp_path: Path) -> None:
    missing = subprocess.run(
        [*SERVICE, "--state-dir", str(tmp_path / "none")], env=_env(),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "--state-dir" in missing.stderr and "no such directory" in missing.stderr
    empty = subprocess.run(
        [*SERVICE, "--state-dir", str(tmp_path)], env=_env(),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert empty.returncode == 1 and "cannot open the database" in empty.stderr
    assert not (tmp_path / "switch.db").exists()
    assert "Traceback" not in missing.stderr + empty.stderr


# -- the supervisor --------------------------------------------------------------------------
def test_supervisor_restarts_with_doubling_back_off_and_kills_a_stubborn_child(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready"

    async def go() -> None:
        crashing = WorkerProcess(
            [sys.executable, "-c", "import sys; sys.exit(3)"],
            initial_backoff=0.1,
            max_backoff=0.4,
        )
        t0 = time.monotonic()
        await crashing.start()
        while crashing.restarts < 4:
            assert time.monotonic() - t0 < 60, "no restarts"
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - t0
        t1 = time.monotonic()
        await crashing.stop()  # during a back-off pause: returns at once, no further start
        # not the 10 s stop_timeout: a child caught starting dies of SIGTERM at once
        assert time.monotonic() - t1 < 10.0 and crashing.pid is None
        assert elapsed >= 0.1 + 0.2 + 0.4 + 0.4  # 0.1, 0.2, 0.4, then capped at 0.4
        stubborn = WorkerProcess(
            [
                sys.executable,
                "-c",
                "import signal, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                f"open({str(ready)!r}, 'w').close()\n"
                "time.sleep(60)",
            ],
            stop_timeout=0.5,
        )
        pid = await stubborn.start()
        while not ready.exists():  # it ignores SIGTERM from now on
            assert time.monotonic() - t1 < 30, "the stubborn child did not start"
            await asyncio.sleep(0.02)
        t1 = time.monotonic()
        await stubborn.stop()
        assert 0.5 <= time.monotonic() - t1 < 20  # SIGKILLed after its 0.5 s, not hung
        assert not _alive(pid)
        assert stubborn.restarts == 0

    asyncio.run(asyncio.wait_for(go(), 60))


# -- switch run ------------------------------------------------------------------------------
class Switch:
    """``switch run`` on free ports over a seeded state dir; output in a file."""

    def __init__(self, state: Path, out: Path, *extra: str, sms: str | None = None) -> None:
        self.state = state
        self.out = out
        self.port = 0  # the ISO port it binds (port 0: see bound_ports), known once ready
        cmd = [*SWITCH, "run", "--state-dir", str(state), "--iso-port", "0"]
        cmd += ["--grpc-port", "0", "--http-port", "0", *extra]
        env = _env() if sms is None else _env(SWITCH_SMS=sms)
        self.proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.text()
            return "switch ready" in self.text()

        _wait_for(ready, "switch ready", 30)
        self.port = bound_ports(self.out)[0]

    def withdraw(self, amount: str = "1000") -> None:
        r = subprocess.run(
            [*SWITCH, "atm", "withdraw", "--amount", amount, "--port", str(self.port)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert r.returncode == 0 and "APPROVED (00)" in r.stdout, r.stdout + r.stderr


@pytest.fixture
def running(state: Path, tmp_path: Path) -> Iterator[Callable[..., Switch]]:
    started: list[Switch] = []

    def start(*extra: str, sms: str | None = None) -> Switch:
        sw = Switch(state, tmp_path / f"switch{len(started)}.out", *extra, sms=sms)
        started.append(sw)
        sw.wait_ready()
        return sw

    try:
        yield start
    finally:
        for sw in started:
            kids = _children(sw.proc.pid)
            _kill(sw.proc)
            for pid in kids:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)


def _worker_pid(sw: Switch) -> int:
    m = re.search(
        r"SMS alerts: console \(printed here, [^)]*\), delivered by worker process (\d+)",
        sw.text(),
    )
    assert m is not None, sw.text()
    return int(m.group(1))


def test_run_restarts_a_killed_worker_without_resending_and_leaves_no_child(
    running: Callable[..., Switch],
) -> None:
    sw = running()
    first = _worker_pid(sw)
    assert _children(sw.proc.pid) == [first]
    sms = sw.state / "sms.log"
    sw.withdraw()
    _wait_for(lambda: _sms_refs(sms) == ["alert-1"], "the first SMS")
    assert sum(PHONE in line for line in sw.text().splitlines()) == 1  # printed in the switch's
    # The worker marks an SMS sent only after the transport took it: killed in between, it
    # would send alert-1 again after its restart (at-least-once). Wait for the mark itself.
    db = sw.state / "switch.db"
    _wait_for(lambda: _alert_statuses(db) == [(1, "sent")], "alert-1 marked")
    os.kill(first, signal.SIGKILL)
    _wait_for(lambda: "restarting in 1 s" in sw.text(), "the supervisor's restart notice")
    _wait_for(lambda: [p for p in _children(sw.proc.pid) if p != first] != [], "a new worker")
    [second] = _children(sw.proc.pid)
    sw.withdraw()
    _wait_for(lambda: len(_sms_refs(sms)) >= 2, "the second SMS")
    # alert-1 was marked sent before the kill, so no worker claims it again: once alert-2 is
    # marked too, the file is final.
    statuses = [(1, "sent"), (2, "sent")]
    _wait_for(lambda: _alert_statuses(db) == statuses, "alert-2 marked")
    assert _sms_refs(sms) == ["alert-1", "alert-2"]
    assert "exited unexpectedly (killed by SIGKILL)" in sw.text()
    assert _stop(sw.proc) == 0, sw.text()
    assert not _alive(second) and not _alive(first)
    assert [s for _, s in _alert_statuses(sw.state / "switch.db")] == ["sent", "sent"]


def test_run_killed_outright_takes_its_worker_along(running: Callable[..., Switch]) -> None:
    sw = running()
    child = _worker_pid(sw)
    sw.proc.kill()  # SIGKILL: no finally runs in the switch
    sw.proc.wait(timeout=10)
    _wait_for(lambda: not _alive(child), "the orphaned worker to stop by itself", 30)


def test_run_sms_worker_off_leaves_alerts_pending_for_another_worker(
    running: Callable[..., Switch], tmp_path: Path
) -> None:
    sw = running("--sms-worker", "off")
    assert "SMS alerts: off -- alerts stay pending" in sw.text()
    assert _children(sw.proc.pid) == []
    sw.withdraw()
    time.sleep(1.5)  # three poll intervals of the worker it would have had
    assert _alert_statuses(sw.state / "switch.db") == [(1, "pending")]
    assert not (sw.state / "sms.log").exists()
    sms = tmp_path / "other.log"
    cmd = [*SERVICE, "--state-dir", str(sw.state), "--poll-interval", "0.1"]
    worker = subprocess.Popen(cmd, env=_env(SWITCH_SMS=f"file:{sms}"))
    try:
        _wait_for(lambda: _sms_refs(sms) == ["alert-1"], "the other worker's delivery")
        assert _stop(worker) == 0
    finally:
        _kill(worker)
    assert _stop(sw.proc) == 0


def test_run_sms_worker_inline_delivers_in_process(running: Callable[..., Switch]) -> None:
    sw = running("--sms-worker", "inline", sms="file")
    assert "SMS alerts: file (one-time codes masked" in sw.text()
    assert "), delivered in this process" in sw.text()
    assert _children(sw.proc.pid) == []
    sw.withdraw()
    _wait_for(lambda: _sms_refs(sw.state / "sms.log") == ["alert-1"], "the inline delivery")
    assert _stop(sw.proc) == 0


def test_run_refuses_a_bad_sms_url_at_start(state: Path) -> None:
    result = subprocess.run(
        [*SWITCH, "run", "--state-dir", str(state), "--iso-port", "0",
         "--grpc-port", "0", "--http-port", "0"],
        env=_env(SWITCH_SMS="smpp://sys:pw@host:notaport"),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "switch run: SWITCH_SMS: smpp url port must be a number" in result.stderr
    assert "Traceback" not in result.stderr and "switch ready" not in result.stdout


def test_run_failing_at_start_after_spawning_the_worker_leaves_no_child(state: Path) -> None:
    """The gRPC port is taken: ``switch run`` fails after it started the worker process,
    and takes the worker down with it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = subprocess.run(
            [*SWITCH, "run", "--state-dir", str(state), "--iso-port", "0",
             "--grpc-port", str(busy.getsockname()[1]), "--http-port", "0"],
            env=_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode != 0 and "switch ready" not in result.stdout
    m = re.search(r"SMS worker process started \(pid (\d+)\)", result.stderr)
    assert m is not None, result.stderr
    # gone already: stopped and reaped by the switch, not by its own parent check (0.5 s)
    assert not _alive(int(m.group(1)))


def test_run_inline_refuses_to_start_beside_another_worker(state: Path, tmp_path: Path) -> None:
    """One worker per state directory: a separate service already delivers this outbox, so
    an inline worker would send every SMS a second time."""
    cmd = [*SERVICE, "--state-dir", str(state), "--poll-interval", "0.1"]
    worker = subprocess.Popen(cmd, env=_env(SWITCH_SMS=f"file:{tmp_path / 'sms.log'}"))

    def worker_holds_the_lock() -> bool:  # read from /proc/locks: taking it would race
        assert worker.poll() is None, "the worker exited"
        lock = state / LOCK_NAME
        if not lock.exists():
            return False
        inode = lock.stat().st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if fields[1] == "FLOCK" and fields[4] == str(worker.pid):
                if fields[5].endswith(f":{inode}"):
                    return True
        return False

    try:
        _wait_for(worker_holds_the_lock, "the worker to take the lock")
        result = subprocess.run(
            [*SWITCH, "run", "--state-dir", str(state), "--iso-port", "0",
             "--grpc-port", "0", "--sms-worker", "inline", "--http-port", "0"],
            env=_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 1, result.stdout + result.stderr
        assert "switch run: --sms-worker inline:" in result.stderr
        assert "another SMS worker" in result.stderr and "Traceback" not in result.stderr
        assert _stop(worker) == 0
    finally:
        _kill(worker)


def test_restart_back_off_doubles_to_its_cap_and_starts_over_after_a_stable_run() -> None:
    backoff = RestartBackoff(1.0, 30.0, stable_after=30.0)
    delays = [backoff.next_delay(ran_for=0.5) for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.next_delay(ran_for=45.0) == 1.0  # it had been up long enough: healthy
    assert backoff.next_delay(ran_for=2.0) == 2.0
