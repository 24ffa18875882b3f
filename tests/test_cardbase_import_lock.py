"""Two imports into one SQLite store from different processes take turns, never mix.

Real processes throughout (``switch import``, ``switch run --workers 2``), each import held
at a point it cannot pass on its own, so nothing depends on how fast anything runs:

* a ``switch import`` reading a named pipe the test keeps open holds its lock until the
  test kills it: a second ``switch import`` on the state directory is refused, naming the
  import in progress and writing nothing, whether the switch is stopped or running
  (``--workers 2``); once the first is gone the second loads;
* ``switch run --workers 2`` on a SQLite state directory, the test holding the store's batch
  lock as another worker's batch would: the worker's batch waits for it (its log says so)
  with nothing applied; once the lock is let go it loads, then the next import, each record
  exactly once under its own id.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from switch.cardbase.file_locks import IMPORT_LOCK_NAME, batch_lock_path
from tests.switch_proc import stop, wait_ready

SWITCH = [sys.executable, "-m", "switch.cli"]
HEADER = "account,currency,balance,holder,phone"
DEADLINE_S = 60.0


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("SWITCH_STORE", "SWITCH_SMS", "SWITCH_GRPC"):
        env.pop(name, None)  # a SQLite state directory, whatever the suite runs with
    return env


def _number(n: int) -> str:
    return f"{8_100_000_000 + n:010d}-{n % 100:02d}"


def _accounts(path: Path, numbers: range) -> Path:
    lines = [f"{_number(n)},012,500000,HOLDER {n}," for n in numbers]
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def _numbers(state: Path) -> list[tuple[int, str]]:
    """(account_id, number) of the imported accounts (their numbers start 81)."""
    with contextlib.closing(sqlite3.connect(state / "switch.db")) as db:
        rows = db.execute(
            "SELECT account_id, number FROM accounts WHERE number LIKE '81%' ORDER BY number"
        ).fetchall()
    return [(int(i), str(n)) for i, n in rows]


def _import(state: Path, file: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWITCH, "import", "accounts", str(file), "--state-dir", str(state), "--no-fsync"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _until(
    what: str, done: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path | None
) -> None:
    """Poll ``done()`` until true; fails at once if ``proc`` ends first, or after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        text = log.read_text(errors="replace") if log is not None else ""
        assert proc.poll() is None, f"{what}: the process ended first\n{text}"
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_S} s\n{text}"
        time.sleep(0.05)


def _holder(state: Path) -> str:
    path = state / IMPORT_LOCK_NAME
    return path.read_text() if path.exists() else ""


@contextlib.contextmanager
def _import_in_progress(state: Path, fifo: Path, env: dict[str, str]) -> Iterator[int]:
    """A ``switch import accounts`` of a named pipe that the test keeps open for writing and
    writes nothing to: the import holds its lock and waits for the file's end (its SHA-256)
    until the test kills it. Yields its pid once it holds the lock."""
    os.mkfifo(fifo)
    pipe = os.open(fifo, os.O_RDWR)  # never blocks; the import's open does not either
    out = fifo.with_suffix(".log")
    try:
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                [*SWITCH, "import", "accounts", str(fifo), "--state-dir", str(state),
                 "--no-fsync"],
                stdout=sink, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        try:
            _until("the import holds its lock", lambda: str(fifo) in _holder(state), proc, out)
            yield proc.pid
        finally:
            proc.send_signal(signal.SIGKILL)  # the kernel drops a dead process's lock
            proc.wait(30)
    finally:
        os.close(pipe)


def _refused_naming(result: subprocess.CompletedProcess[str], file: Path, pid: int) -> None:
    assert result.returncode == 2, result.stderr
    assert (
        f"another import is in progress: switch import accounts {file} (pid {pid}); "
        "nothing done" in result.stderr
    ), result.stderr


def test_a_second_import_is_refused_naming_the_one_in_progress(tmp_path: Path) -> None:
    state = tmp_path / "var"
    env = _env()
    second = _accounts(tmp_path / "second.csv", range(1, 4))
    with _import_in_progress(state, tmp_path / "first.csv", env) as pid:
        _refused_naming(_import(state, second, env), tmp_path / "first.csv", pid)
        assert not (state / "switch.db").exists() or _numbers(state) == []
    again = _import(state, second, env)
    assert again.returncode == 0, again.stderr
    assert "3 loaded, 0 updated, 0 rejected" in again.stdout
    assert [n for _, n in _numbers(state)] == [_number(n) for n in (1, 2, 3)]
    assert _holder(state) == ""  # nobody holds it: nothing to quote


@contextlib.contextmanager
def _workers(root: Path) -> Iterator[tuple[Path, dict[str, str], Path]]:
    """``switch run --workers 2`` on a new SQLite state directory with operator ``alice``:
    (state directory, the import's environment, the supervisor's output)."""
    state = root / "var"
    state.mkdir(mode=0o700)
    env = _env()
    added = subprocess.run(
        [*SWITCH, "operator", "add", "alice", "--state-dir", str(state), "--json"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    key = json.loads(added.stdout)["key"]
    out = root / "run.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*SWITCH, "run", "--workers", "2", "--state-dir", str(state), "--iso-port", "0",
             "--grpc-port", "0", "--http-port", "-1", "--sms-worker", "off", "--no-fsync"],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_ready(proc, out, DEADLINE_S, "switch ready -- 2 workers")
        text = out.read_text()
        grpc_port = text.split("gRPC port ", 1)[1].split()[0]
        client = {
            **env, "SWITCH_GRPC": f"127.0.0.1:{grpc_port}", "SWITCH_OPERATOR_ID": "alice",
            "SWITCH_OPERATOR_KEY": key,
        }  # fmt: skip
        yield state, client, out
    finally:
        stop(proc)


def test_workers_take_turns_on_the_sqlite_store_batch_lock(tmp_path: Path) -> None:
    with _workers(tmp_path) as (state, env, log):
        first = _accounts(tmp_path / "first.csv", range(10, 14))
        second = _accounts(tmp_path / "second.csv", range(20, 23))
        # an import through the running switch holds the state directory's import lock too
        with _import_in_progress(state, tmp_path / "held.csv", env) as pid:
            _refused_naming(_import(state, second, env), tmp_path / "held.csv", pid)
        # the test holds the store's batch lock, as another worker's batch would
        held = os.open(batch_lock_path(state / "switch.db"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(held, fcntl.LOCK_EX)
            out = tmp_path / "first.log"
            with out.open("wb") as sink:
                proc = subprocess.Popen(
                    [*SWITCH, "import", "accounts", str(first), "--state-dir", str(state)],
                    stdout=sink, stderr=subprocess.STDOUT, env=env,
                )  # fmt: skip
            waiting = "import batch: waiting for the batch of another process"
            _until("the worker's batch waits", lambda: waiting in log.read_text(), proc, out)
            assert _numbers(state) == []  # it waits for the lock the test holds
        finally:
            os.close(held)  # at once (the batch waits 30 s at most): it goes on
        assert proc.wait(120) == 0, out.read_text()
        assert "4 loaded, 0 updated, 0 rejected" in out.read_text()
        done = _import(state, second, env)
        assert done.returncode == 0, done.stderr
        assert "3 loaded, 0 updated, 0 rejected" in done.stdout
        assert "through the running switch" in done.stdout
        rows = _numbers(state)
        assert [n for _, n in rows] == [_number(n) for n in (*range(10, 14), *range(20, 23))]
        assert len({i for i, _ in rows}) == 7  # every record once, each its own id
