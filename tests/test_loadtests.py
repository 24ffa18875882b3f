"""The load tests, run as a performance engineer runs them: ``switch loaddata`` builds a load
data set, ``switch run`` serves it (subprocess, free ports, temp state dir), and headless
Locust runs read its files; their ``--csv`` statistics are parsed.

What is proved:
* the load data set gives approvals (the demo set's limits gave 96 % declines): an ISO run of
  every scenario and a gRPC run are all ``<scenario> 00`` (and ``wrong PIN 55``), with no
  failure, and the ISO users' requests reach every terminal of the set;
* answers are named by response code, and a code the scenario does not expect (51/61 with the
  demo cards) is a failure, so Locust exits non-zero;
* the ISO file fails (non-zero exit, failed ``connect``) when no switch listens, and
  reconnects after its connection is cut;
* ``--shape step`` and ``--shape ramp`` change the user count over time (Locust's history
  CSV), ``--rate`` caps the request rate;
* a distributed run (headless master ``--expect-workers 1`` plus one worker) works, the
  worker getting the custom options from the master.

Why: a locustfile is code that only runs when someone load-tests, so without this it rots
silently and a load test then measures errors (or declines) instead of the switch.
"""

from __future__ import annotations

import csv
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switch.core import demo
from switch.iso8583.framing import FrameSplitter, frame
from tests.switch_proc import bound_ports, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
LOCUST = [sys.executable, "-m", "locust"]
SWITCH = [sys.executable, "-m", "switch.cli"]
FAILED_EXIT = 3  # what we ask Locust to return when any request failed
DEMO_PANS = [c.pan for c in demo.CARDS]
NAMED = re.compile(r"^(?P<scenario>.+) (?P<code>\d\d)$")  # "withdrawal 00"
N_TERMINALS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class LoadSet:
    state_dir: Path
    out: Path
    output: str  # what the command printed

    def file(self, name: str) -> str:
        return str(self.out / name)


@pytest.fixture(scope="module")
def loadset(tmp_path_factory: pytest.TempPathFactory) -> LoadSet:
    tmp = tmp_path_factory.mktemp("loadset")
    cmd = [*SWITCH, "loaddata", "--state-dir", str(tmp / "var"), "--out", str(tmp / "out")]
    cmd += ["--cards", "300", "--terminals", str(N_TERMINALS), "--merchants", "2"]
    cmd += ["--bills", "400", "--seed", "7"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return LoadSet(tmp / "var", tmp / "out", result.stdout + result.stderr)


@dataclass(frozen=True)
class Switch:
    iso_port: int
    grpc_port: int
    db: Path
    out: Path


@pytest.fixture(scope="module")
def switch(loadset: LoadSet) -> Iterator[Switch]:
    out = loadset.out.parent / "switch.out"
    sms = loadset.out.parent / "sms.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SWITCH_SMS": f"file:{sms}"}
    cmd = [*SWITCH, "run", "--state-dir", str(loadset.state_dir)]
    cmd += ["--config", loadset.file("products.toml"), "--iso-port", "0"]
    cmd += ["--grpc-port", "0", "--http-port", "-1"]  # the ports bound: bound_ports
    proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(proc, out, 30)
        iso, grpc_port = bound_ports(out)
        yield Switch(iso, grpc_port, loadset.state_dir / "switch.db", out)
    finally:
        stop(proc, timeout=15)


@dataclass(frozen=True)
class LocustRun:
    returncode: int
    output: str
    rows: dict[str, dict[str, str]]  # _stats.csv rows by Name ("Aggregated" included)
    failures: str  # _failures.csv as text
    prefix: Path

    def count(self, name: str) -> int:
        return int(self.rows[name]["Request Count"]) if name in self.rows else 0

    def codes(self) -> dict[str, int]:
        """Answers by response code, over every scenario."""
        out: dict[str, int] = {}
        for name, row in self.rows.items():
            m = NAMED.match(name)
            if m:
                out[m["code"]] = out.get(m["code"], 0) + int(row["Request Count"])
        return out


def _locust(
    locustfile: str, host: str, prefix: Path, *extra: str, users: int = 2, run_time: str = "4s"
) -> LocustRun:
    """A headless run; the process is killed if it overruns."""
    cmd = [*LOCUST, "-f", str(ROOT / "loadtests" / locustfile), "--headless", "-u", str(users)]
    cmd += ["-r", str(users), "-t", run_time, "--host", host, "--csv", str(prefix)]
    cmd += ["--only-summary", "--exit-code-on-error", str(FAILED_EXIT), "--loglevel", "WARNING"]
    result = subprocess.run(
        [*cmd, *extra], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    return _collect(result.returncode, result.stdout + result.stderr, prefix)


def _collect(returncode: int, output: str, prefix: Path) -> LocustRun:
    stats = Path(f"{prefix}_stats.csv")
    assert stats.exists(), output
    rows = {row["Name"]: row for row in _rows(stats)}
    failures = Path(f"{prefix}_failures.csv").read_text()
    return LocustRun(returncode, output, rows, failures, prefix)


def _assert_clean(run: LocustRun) -> int:
    """Requests were made, none failed, Locust said so with exit 0; the request count."""
    total = run.rows["Aggregated"]
    assert int(total["Request Count"]) > 0, run.output
    assert int(total["Failure Count"]) == 0, run.output + run.failures
    assert run.returncode == 0, run.output
    assert "Traceback" not in run.output, run.output  # e.g. an error in a user's on_start
    return int(total["Request Count"])


def _journal(switch: Switch, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{switch.db}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def _load_pans(loadset: LoadSet) -> list[str]:
    return [r["pan"] for r in _rows(loadset.out / "cards.csv")]


# ---- the load data set -------------------------------------------------------------------------


def test_loaddata_writes_private_files_and_refuses_a_second_set(loadset: LoadSet) -> None:
    cards = _rows(loadset.out / "cards.csv")
    assert len(cards) == 300 and len({c["pan"] for c in cards}) == 300
    assert all(c["pan"].startswith(demo.ON_US_BIN) for c in cards)
    assert len(_rows(loadset.out / "terminals.csv")) == N_TERMINALS
    assert len(_rows(loadset.out / "merchants.csv")) == 2
    assert len(_rows(loadset.out / "bills.csv")) == 400
    for name in ("cards.csv", "terminals.csv", "merchants.csv", "bills.csv", "products.toml"):
        assert stat.S_IMODE((loadset.out / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(loadset.out.stat().st_mode) == 0o700
    assert "cards: " in loadset.output and "300 loaded" in loadset.output  # the card import
    assert not any(pan in loadset.output for pan in _load_pans(loadset))
    again = subprocess.run(
        [*SWITCH, "loaddata", "--state-dir", str(loadset.state_dir), "--out",
         str(loadset.out.parent / "again"), "--cards", "1", "--terminals", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 2, again.stdout + again.stderr
    assert "already holds a load data set" in again.stderr or "stop the switch" in again.stderr
    # a store the card import made alone has no BIN route to us: its cards would not be ours
    bare = loadset.out.parent / "bare"
    accounts = loadset.out.parent / "bare-accounts.csv"
    accounts.write_text("account,currency,balance,holder\n0001,012,100,A\n")
    made = subprocess.run([*SWITCH, "import", "accounts", str(accounts), "--state-dir", str(bare)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    refused = subprocess.run([*SWITCH, "loaddata", "--state-dir", str(bare), "--out",
                              str(loadset.out.parent / "bare-out"), "--cards", "1"],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 2 and "routes no BIN 628058" in refused.stderr, refused.stderr
    zero = subprocess.run([*SWITCH, "loaddata", "--cards", "0"], capture_output=True, text=True,
                          timeout=60, check=False, cwd=loadset.out.parent)  # fmt: skip
    assert zero.returncode == 2 and "--cards" in zero.stderr, zero.stderr
    assert not (loadset.out.parent / "var-load").exists()  # refused before anything was made


# ---- ISO 8583 ----------------------------------------------------------------------------------


def test_iso_run_with_the_load_set_is_approvals_by_code_over_every_terminal(
    loadset: LoadSet, switch: Switch, tmp_path: Path
) -> None:
    run = _locust(
        "locustfile_iso.py", f"tcp://127.0.0.1:{switch.iso_port}", tmp_path / "iso",
        "--cards-file", loadset.file("cards.csv"), "--terminals", loadset.file("terminals.csv"),
        "--shape", "constant", "--think-time", "0.01,0.03",
        users=N_TERMINALS, run_time="6s",
    )  # fmt: skip
    count = _assert_clean(run)
    codes = run.codes()
    assert set(codes) == {"00", "55"}, run.rows.keys()  # 55: the wrong-PIN scenario only
    assert codes["00"] >= 0.8 * count, codes  # mostly approvals (the rest: connects, 55s)
    for name in ("withdrawal 00", "balance 00", "reversal withdrawal 00", "reversal 00"):
        assert run.count(name) > 0, run.rows.keys()
    # each mistyped PIN, then the right one (a scenario may be cut in between at the stop)
    assert 0 <= run.count("wrong PIN 55") - run.count("wrong PIN retry 00") <= N_TERMINALS
    assert 0 <= run.count("reversal withdrawal 00") - run.count("reversal 00") <= N_TERMINALS
    assert run.count("connect") == N_TERMINALS  # one connection per ATM, kept
    # the switch journaled them, from every terminal of the set (one user per ATM)
    terminals = {r["terminal_id"] for r in _rows(loadset.out / "terminals.csv")}
    used = {str(t) for (t,) in _journal(switch, "SELECT DISTINCT terminal_id FROM journal")}
    assert used >= terminals, (used, terminals)
    assert not any(pan in run.output for pan in _load_pans(loadset))


def test_unexpected_declines_are_failures(switch: Switch, tmp_path: Path) -> None:
    """The demo cards (default) cannot take a stream of withdrawals: the 51s and 61s are
    counted as failures, named by code, and Locust exits with the failure code."""
    run = _locust(
        "locustfile_iso.py", f"tcp://127.0.0.1:{switch.iso_port}", tmp_path / "demo",
        "--mix", "withdrawal=1", "--think-time", "0", run_time="3s",
    )  # fmt: skip
    assert run.returncode == FAILED_EXIT, run.output
    declined = {c for c in run.codes() if c != "00"}
    assert declined & {"51", "61", "65"}, run.rows.keys()
    for code in declined:
        row = run.rows[f"withdrawal {code}"]
        assert row["Failure Count"] == row["Request Count"], row  # every one a failure
    assert "UnexpectedCode" in run.failures and "(expected 00)" in run.failures
    assert int(run.rows.get("withdrawal 00", {}).get("Failure Count", "0")) == 0
    assert not any(pan in run.output + run.failures for pan in DEMO_PANS)


def test_iso_fails_when_no_switch_listens(tmp_path: Path) -> None:
    # a port bound but not listening, held for the whole run: connections are refused, and
    # no other process (the side-by-side CI run) can start listening on it meanwhile
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        target = f"tcp://127.0.0.1:{held.getsockname()[1]}"
        run = _locust("locustfile_iso.py", target, tmp_path / "down", run_time="2s")
    assert run.returncode == FAILED_EXIT, run.output
    assert run.count("connect") > 0
    assert run.rows["connect"]["Failure Count"] == run.rows["connect"]["Request Count"]
    assert "ConnectionRefusedError" in run.failures


def test_a_bad_load_file_stops_the_run_with_its_name(loadset: LoadSet, tmp_path: Path) -> None:
    """A merchants file that is not one (the cards file) stops Locust before any user starts,
    naming the file and the missing column."""
    cmd = [*LOCUST, "-f", str(ROOT / "loadtests" / "locustfile_grpc.py"), "--headless"]
    cmd += ["-t", "2s", "--host", "grpc://127.0.0.1:1", "--merchants", loadset.file("cards.csv")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cards.csv: column 'merchant_id' missing from the header" in result.stderr


class CuttingProxy:
    """A TCP relay to the switch that cuts each connection after ``answers`` answers, as a
    network drop would; frames are relayed whole."""

    def __init__(self, target: int, answers: int) -> None:
        self.target, self.answers = target, answers
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(("127.0.0.1", self.target)) as up:
            try:
                for _ in range(self.answers):
                    for src, dst in ((conn, up), (up, conn)):
                        got = _one_frame(src)
                        if got is None:
                            return
                        dst.sendall(frame(got))
            except OSError:
                return  # the client went away first (Locust stopping)

    def close(self) -> None:
        self.server.close()


def _one_frame(sock: socket.socket) -> bytes | None:
    splitter = FrameSplitter()
    while True:
        data = sock.recv(65536)
        if not data:
            return None
        frames = splitter.feed(data)
        if frames:
            return frames[0].payload


def test_iso_user_reconnects_after_a_drop(loadset: LoadSet, switch: Switch, tmp_path: Path) -> None:
    proxy = CuttingProxy(switch.iso_port, answers=3)
    try:
        run = _locust(
            "locustfile_iso.py", f"tcp://127.0.0.1:{proxy.port}", tmp_path / "drop",
            "--cards-file", loadset.file("cards.csv"), "--terminals", loadset.file("terminals.csv"),
            "--mix", "balance=1", "--think-time", "0.01", run_time="3s",
        )  # fmt: skip
    finally:
        proxy.close()
    # each connection answered 3, then the next request on it failed and the user reconnected
    connects = run.count("connect")
    assert connects >= 4, run.rows.keys()
    assert connects <= proxy.accepted <= connects + 2, (connects, proxy.accepted)  # 2 users
    assert run.count("balance 00") >= 3 * (connects - 2), run.rows.keys()
    assert int(run.rows["balance 00"]["Failure Count"]) == 0
    assert run.count("balance") > 0  # the requests cut: failures without a code...
    assert run.rows["balance"]["Failure Count"] == run.rows["balance"]["Request Count"]
    assert "closed the connection" in run.failures or "Connection reset" in run.failures
    assert run.returncode == FAILED_EXIT, run.output


def test_step_shape_and_rate(loadset: LoadSet, switch: Switch, tmp_path: Path) -> None:
    """``--shape step``: 2 users, then 4 (Locust's per-second history); ``--rate 10``: no
    more than 10 scenarios a second over all users, however fast the switch answers."""
    run = _locust(
        "locustfile_iso.py", f"tcp://127.0.0.1:{switch.iso_port}", tmp_path / "step",
        "--cards-file", loadset.file("cards.csv"), "--terminals", loadset.file("terminals.csv"),
        "--mix", "balance=1", "--shape", "step", "--step-users", "2", "--step-time", "2",
        "--rate", "10", "--csv-full-history", users=4, run_time="5s",
    )  # fmt: skip
    _assert_clean(run)
    history = [
        int(r["User Count"])
        for r in _rows(Path(f"{run.prefix}_stats_history.csv"))
        if r["Name"] == "Aggregated"
    ]
    seen = [u for u in history if u]
    assert seen and seen[0] == 2 and max(seen) == 4 and seen == sorted(seen), history
    assert run.count("balance 00") <= 10 * (5 + 1), run.rows["balance 00"]


# ---- gRPC --------------------------------------------------------------------------------------


def test_grpc_run_with_the_load_set_is_approvals(
    loadset: LoadSet, switch: Switch, tmp_path: Path
) -> None:
    run = _locust(
        "locustfile_grpc.py", f"grpc://127.0.0.1:{switch.grpc_port}", tmp_path / "grpc",
        "--cards-file", loadset.file("cards.csv"), "--merchants", loadset.file("merchants.csv"),
        "--bills-file", loadset.file("bills.csv"), "--think-time", "0.01,0.03",
        users=2, run_time="5s",
    )  # fmt: skip
    _assert_clean(run)
    assert set(run.codes()) == {"00"}, run.rows.keys()
    for name in ("Sale 00", "Refund 00", "PayBill 00", "LookupBill", "ListPayments"):
        assert run.count(name) > 0, run.rows.keys()
    sales = _journal(
        switch,
        "SELECT COUNT(*) FROM journal WHERE merchant_id LIKE 'M-LOAD-%' AND txn_type = 'purchase'"
        " AND response_code = '00'",
    )[0][0]
    assert isinstance(sales, int) and sales >= run.count("Sale 00")  # refunds sell first too
    assert not any(pan in run.output for pan in _load_pans(loadset))


# ---- distributed -------------------------------------------------------------------------------


def test_distributed_master_and_worker_with_a_ramp(
    loadset: LoadSet, switch: Switch, tmp_path: Path
) -> None:
    """A headless master (``--expect-workers 1``, the options and the ramp shape) and one
    worker (only the locustfile and the master's address): the worker's requests reach the
    master's statistics and use the load set the master named."""
    port = _free_port()
    locustfile = str(ROOT / "loadtests" / "locustfile_iso.py")
    worker_out = tmp_path / "worker.out"
    worker = subprocess.Popen(
        [*LOCUST, "-f", locustfile, "--worker", "--master-host", "127.0.0.1",
         "--master-port", str(port), "--loglevel", "WARNING"],
        stdout=worker_out.open("wb"), stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        prefix = tmp_path / "dist"
        master = subprocess.run(
            [*LOCUST, "-f", locustfile, "--master", "--master-bind-host", "127.0.0.1",
             "--master-bind-port", str(port), "--expect-workers", "1", "--headless",
             "-u", "3", "-t", "5s", "--shape", "ramp", "--ramp-time", "3",
             "--host", f"tcp://127.0.0.1:{switch.iso_port}", "--csv", str(prefix),
             "--csv-full-history", "--only-summary", "--exit-code-on-error", str(FAILED_EXIT),
             "--cards-file", loadset.file("cards.csv"),
             "--terminals", loadset.file("terminals.csv"), "--think-time", "0.02,0.05"],
            capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        )  # fmt: skip
        assert worker.wait(timeout=20) == 0, worker_out.read_text()  # the master stopped it
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=5)
    run = _collect(master.returncode, master.stdout + master.stderr, prefix)
    _assert_clean(run)
    assert set(run.codes()) == {"00", "55"}, run.rows.keys()  # the load set's cards
    history = [
        int(r["User Count"])
        for r in _rows(Path(f"{prefix}_stats_history.csv"))
        if r["Name"] == "Aggregated"
    ]
    seen = [u for u in history if u]
    assert seen == sorted(seen) and max(seen) == 3 and len(set(seen)) >= 2, history  # a ramp
