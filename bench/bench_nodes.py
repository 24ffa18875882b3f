"""Several switch processes over one store (issue 13): approved ISO 8583 withdrawals/s and p99
for SQLite and PostgreSQL with 1 and 2 processes, and gRPC sales/s with 1 and 2 processes.

Each line is a real ``switch run`` (subprocess; ``--workers 2`` for two processes sharing the
ports with SO_REUSEPORT), durable commits (SQLite ``synchronous=FULL``; PostgreSQL with
fsync on), the in-process HSM verifying every PIN or CVV2, on a fresh copy of one data set:
the demo state plus extra cards (``bench_core.add_cards``: the demo product's real limits).
The load comes from compiled generators so the figure is the switch's and not the client's:

* ISO 8583: ``switch-loadgen`` (Rust, ``native/loadgen``, the switch's own codec crate),
  built here on first use (``cargo build --release -p switch-loadgen``). The 0200s are encoded
  beforehand (PIN blocks under the demo ATM's test key), ``BENCH_NODES_CONNS`` connections
  with ``BENCH_NODES_DEPTH`` in flight on each; answers matched by STAN.
  Frame i goes over connection i % CONNS, so with a card count that is a multiple of CONNS
  (the default) a card's withdrawals all reach one process; the line "2 processes, cards
  moving" shifts each round by one card so they move between processes, as at real ATMs
  (a stale copy in the other process: its units conflict and are decided again).
* gRPC: ``ghz`` (``scripts/install-ghz.sh`` builds it into ``native/target/tools/bin``; PATH is also
  searched), ``Payments/Sale`` with the merchant's credentials as metadata, distinct cards
  and idempotency keys; approved sales counted from the journal afterwards. Without ghz the
  gRPC lines say so and are skipped.

The SMS worker and merchant notifications are off in every run (same work in each line;
bench_iso measures the SMS cost). The machine is small and shared: read each line beside the
others of the same run, not as an absolute. Run: ``python -m bench bench_nodes``. Knobs:
``BENCH_NODES_TXNS`` (20000 withdrawals a line), ``BENCH_NODES_CONNS`` (32: many, so that
SO_REUSEPORT's hash spreads them evenly over 2 processes; 8 split 3/5 in one run),
``BENCH_NODES_DEPTH`` (4), ``BENCH_NODES_SALES`` (20000), ``BENCH_NODES_GRPC_CONC`` (64),
``BENCH_NODES_GRPC_CONNS`` (16), ``BENCH_NODES_BASELINE`` (1: each PostgreSQL line also with
the guarded commit written the slow way, ``SWITCH_PG_ONE_TRIP=0``, as before the one-call
commit),
``BENCH_NODES_SQLITE2`` (1: also SQLite with 2 processes), ``BENCH_NODES_LISTEN_BASELINE`` (1:
the cards-moving and 2-process gRPC lines also "deaf", ``SWITCH_PG_NOTIFY=0``: no listener for
the rows other nodes wrote, as before it), ``BENCH_NODES_ONLY`` (iso|grpc),
``BENCH_NODES_WAITS`` (1: PostgreSQL wait events during each ISO line),
``BENCH_NODES_PROFILE`` (a path prefix: 1-process switches run under cProfile),
``BENCH_NODES_GRPC_SQLITE`` (1: also gRPC sales on SQLite, 1 process: is the store the cost?).

Under each PostgreSQL line: the requests redone after a conflict (a unit refused by its guards
leaves its transaction number unused: counted from the journal's gaps). Under each line: the
load average, and where the CPU went during the load (``CpuMeter``):
CPU seconds per 1,000 approved for the switch processes, the PostgreSQL server (every
backend) and the generator, and the machine's busy cores (ours and everybody else's). From
the 1-process line it prints the ceiling of two processes on this machine: if every core did
nothing but this run, ``cores / (CPU seconds per approved)``; 1.6x is reachable only if that
ceiling is above 1.6x the 1-process figure.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import switch_native

from bench.bench_core import PIN, TPK, add_cards, bench_pans
from switch.core import demo
from switch.core.demo import ACQUIRER_ID
from switch.iso8583.codec import Codec
from switch.iso8583.message import Message

ROOT = Path(__file__).resolve().parent.parent
N_TXNS = int(os.environ.get("BENCH_NODES_TXNS", "20000"))
CONNS = int(os.environ.get("BENCH_NODES_CONNS", "32"))
DEPTH = int(os.environ.get("BENCH_NODES_DEPTH", "4"))
GRPC_CONNS = int(os.environ.get("BENCH_NODES_GRPC_CONNS", "16"))
#: 1: PostgreSQL lines also with the guarded commit's slow path (SWITCH_PG_ONE_TRIP=0), the
#: baseline of the one-call commit (switch.store.postgres_onetrip) in the same run
BASELINE = os.environ.get("BENCH_NODES_BASELINE", "1") == "1"
N_SALES = int(os.environ.get("BENCH_NODES_SALES", "20000"))
GRPC_CONC = int(os.environ.get("BENCH_NODES_GRPC_CONC", "64"))
SQLITE2 = os.environ.get("BENCH_NODES_SQLITE2", "1") == "1"
#: 1: the 2-process lines with cards moving (ISO) and gRPC also without the listener of other
#: nodes' rows (``SWITCH_PG_NOTIFY=0``, as before it), the baseline in the same run
LISTEN_BASELINE = os.environ.get("BENCH_NODES_LISTEN_BASELINE", "1") == "1"
ONLY = os.environ.get("BENCH_NODES_ONLY", "")  # "iso" or "grpc": that part alone
WAITS = os.environ.get("BENCH_NODES_WAITS", "0") == "1"  # sample PostgreSQL wait events
#: a path prefix: every 1-process switch runs under cProfile, its stats written to
#: PREFIX.<iso port>.prof when it stops (read with pstats; the profiler slows it down ~2x)
PROFILE = os.environ.get("BENCH_NODES_PROFILE", "")
GRPC_SQLITE = os.environ.get("BENCH_NODES_GRPC_SQLITE", "0") == "1"
PER_CARD = 10  # withdrawals per card (the product allows 20 a day)
SALES_PER_CARD = 20  # the e-commerce daily count limit
AMOUNT = 100_000  # 1,000 DZD, the minimum ATM withdrawal
SALE_AMOUNT = 10_000  # 100 DZD
EXPIRY = "3012"
ECOM = demo.MERCHANTS[0]
LOADGEN = ROOT / "native" / "target" / "release" / "switch-loadgen"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadgen() -> Path:
    """The compiled ISO 8583 generator, built once (release) if it is not there."""
    if not LOADGEN.exists():
        print("  building native/loadgen (cargo, release; once)...", flush=True)
        subprocess.run(
            ["cargo", "build", "--release", "-p", "switch-loadgen"], cwd=ROOT / "native", check=True
        )
    return LOADGEN


def ghz() -> Path | None:
    local = ROOT / "native" / "target" / "tools" / "bin" / "ghz"
    if local.exists():
        return local
    found = shutil.which("ghz")
    return None if found is None else Path(found)


def write_frames(path: Path, pans: list[str], n: int, spread: bool = False) -> None:
    """``n`` withdrawals, the cards in turn (``PER_CARD`` rounds: a card is not used again
    before every other card was, as at real ATMs), each with its own (field 7, STAN): 4-byte
    big-endian length + the ascii87 message, as ``switch-loadgen`` reads them.

    ``switch-loadgen`` sends frame i over connection i % CONNS. Without ``spread``, when the
    number of cards is a multiple of CONNS (800 and 32 by default) every withdrawal of a card
    goes over one connection, so to one process: cards never move between processes, an
    affinity real ATMs do not give. ``spread`` shifts each round by one card, so a card's
    next withdrawal comes over another connection (and often the other process)."""
    codec = Codec("ascii87")
    with path.open("wb") as f:
        for i in range(n):
            shift = i // len(pans) if spread else 0
            pan = pans[(i + shift) % len(pans)]
            msg = Message(
                "0200",
                {
                    2: pan,
                    3: "010000",
                    4: f"{AMOUNT:012d}",
                    7: f"1203{i // 999_999:06d}",
                    11: f"{i % 999_999 + 1:06d}",
                    32: ACQUIRER_ID,
                    41: "GAB00001",
                    49: "012",
                    52: switch_native.pin_block_encrypt(TPK, 0, PIN, pan),
                },
            )
            data = codec.encode(msg)
            f.write(struct.pack(">I", len(data)) + data)


def write_sales(path: Path, pans: list[str], n: int) -> None:
    """ghz's data: one Sale request per card in turn (ghz deals them round robin), each
    with a unique idempotency key (ghz's request number)."""
    items = []
    for i in range(max(1, -(-n // SALES_PER_CARD))):
        pan = pans[i % len(pans)]
        items.append(
            {
                "idempotency_key": f"n{i}-{{{{.RequestNumber}}}}",
                "amount": {"amount_minor": SALE_AMOUNT, "currency": 12},
                "card": {"pan": pan, "expiry": EXPIRY, "cvv2": demo.cvv2(pan, EXPIRY)},
            }
        )
    path.write_text(json.dumps(items))


class Switch:
    """``switch run`` (``workers`` processes) on ``state`` and ``store``, until ``stop``."""

    def __init__(self, state: Path, store: str | None, workers: int, mode: str = "") -> None:
        self.iso = free_port()
        self.grpc = free_port()
        self.out = state.parent / f"{state.name}.out"
        cmd = [sys.executable, "-m", "switch.cli", "run", "--state-dir", str(state)]
        if PROFILE and workers == 1:
            cmd[1:1] = ["-m", "cProfile", "-o", f"{PROFILE}.{self.iso}.prof"]
        cmd += ["--iso-port", str(self.iso), "--grpc-port", str(self.grpc)]
        cmd += ["--http-port", "-1", "--gateway-port", "-1", "--sms-worker", "off"]
        cmd += ["--merchant-notify", "off", "--log-level", "WARNING"]
        if store is not None:
            cmd += ["--store", store]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("SWITCH_STORE", None)
        if mode == "slow":  # the guarded commit as before the one-call function (baseline)
            env["SWITCH_PG_ONE_TRIP"] = "0"
        if mode in ("slow", "deaf"):  # no listener for other nodes' rows (baseline)
            env["SWITCH_PG_NOTIFY"] = "0"
        self.proc = subprocess.Popen(
            cmd, stdout=self.out.open("wb"), stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + 120
        while "switch ready" not in self.out.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("switch run did not start:\n" + self.out.read_text()[-3000:])
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_iso(port: int, frames: Path) -> dict[str, Any]:
    cmd = [str(loadgen()), "--port", str(port), "--frames", str(frames)]
    cmd += ["--conns", str(CONNS), "--depth", str(DEPTH)]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run_ghz(binary: Path, port: int, data: Path) -> dict[str, Any]:
    proto = ROOT / "proto"
    md = json.dumps({"x-merchant-id": ECOM.merchant_id, "x-api-key": ECOM.api_key})
    cmd = [str(binary), "--insecure", "--proto", str(proto / "switch" / "v1" / "merchant.proto")]
    cmd += ["-i", str(proto), "--call", "switch.v1.Payments/Sale", "-m", md]
    cmd += [
        "-D",
        str(data),
        "-n",
        str(N_SALES),
        "-c",
        str(GRPC_CONC),
        "--connections",
        str(GRPC_CONNS),
    ]
    cmd += ["--timeout", "30s", "--format", "json", f"127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if not out.stdout.strip().startswith("{"):
        raise RuntimeError(f"ghz failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def redone(store: str | None) -> int | None:
    """Requests decided again after a conflict, counted from the journal: every decision
    draws the next transaction number of its node's block, and a unit refused by its guards
    leaves its number unused (nothing else journals nothing: declines are journaled too).
    Gaps of 1,000 or more are the ends of reserved blocks, not redos."""
    if store is None:
        return None
    import psycopg

    with psycopg.connect(store) as conn:
        rows = conn.execute("SELECT txn_id FROM journal ORDER BY txn_id").fetchall()
    ids = [int(r[0]) for r in rows if str(r[0]).isdigit()]
    return sum(b - a - 1 for a, b in itertools.pairwise(ids) if b - a < 1_000)


def redo_text(store: str | None, approved: int) -> str:
    n = redone(store)
    if n is None:
        return ""
    return f"\n    redone after a conflict: {n:,} ({n / max(approved, 1):.1%} of approved)"


def approved_in_journal(store: str | None, state: Path, txn_type: str) -> int:
    sql = "SELECT COUNT(*) FROM journal WHERE response_code = '00' AND txn_type = %s"
    if store is None:
        import sqlite3

        with sqlite3.connect(state / "switch.db") as db:
            row = db.execute(sql.replace("%s", "?"), (txn_type,)).fetchone()
    else:
        import psycopg

        with psycopg.connect(store) as conn:
            row = conn.execute(sql, (txn_type,)).fetchone()
    assert row is not None
    return int(row[0])


class WaitSampler:
    """What the switch's PostgreSQL sessions are doing, sampled every 5 ms during a run
    (``BENCH_NODES_WAITS=1``): the share of samples per state / wait event, and for a session
    waiting on a lock, which relation it waits for. Tells a hot row (``Lock:transactionid``
    on ``accounts``) from commit flushes (``IO:WALSync``) or an idle database (``Client``)."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        sql = (
            "SELECT a.state, a.wait_event_type, a.wait_event, left(a.query, 40), "
            "(SELECT string_agg(DISTINCT l.relation::regclass::text, ',') FROM pg_locks l "
            " WHERE l.pid = a.pid AND NOT l.granted AND l.relation IS NOT NULL) "
            "FROM pg_stat_activity a WHERE a.application_name = 'switch' AND a.pid <> "
            "pg_backend_pid()"
        )
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.005):
                self.samples += 1
                for state, wtype, wevent, query, rel in conn.execute(sql).fetchall():
                    if state == "idle":
                        continue
                    key = f"{state} {wtype or 'CPU'}:{wevent or '-'}"
                    if wtype == "Lock":
                        key += f" on {rel or '?'} [{query}]"
                    self.counts[key] = self.counts.get(key, 0) + 1

    def report(self) -> str:
        self._stop.set()
        self._thread.join()
        lines = [f"    wait events of non-idle switch sessions ({self.samples} samples):"]
        for key, n in sorted(self.counts.items(), key=lambda kv: -kv[1])[:8]:
            lines.append(f"      {n / max(self.samples, 1):6.2f} sessions avg  {key}")
        return "\n".join(lines)


_TICK = os.sysconf("SC_CLK_TCK")


def _procs() -> dict[int, tuple[int, float, float]]:
    """Every process: pid -> (parent pid, own CPU seconds, its reaped children's), from
    /proc (Linux; the bench uses no third-party process library)."""
    out: dict[int, tuple[int, float, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        # after the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
        own = (int(fields[11]) + int(fields[12])) / _TICK
        reaped = (int(fields[13]) + int(fields[14])) / _TICK
        out[int(entry)] = (int(fields[1]), own, reaped)
    return out


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants, the exited ones it reaped included (the
    postmaster reaps its backends, so a closed session's CPU still counts)."""
    procs = _procs()
    if pid not in procs:
        return 0.0
    total = procs[pid][1] + procs[pid][2]
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, own, _) in procs.items():
            if ppid == parent:
                total += own
                todo.append(child)
    return total


def _busy() -> float:
    """The machine's busy CPU seconds since boot (all cores; /proc/stat)."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _TICK  # minus idle and iowait


class CpuMeter:
    """CPU seconds spent during one load: the switch's process tree, the PostgreSQL server's
    (``pg_pid``: the postmaster) and the generator (this process's waited children), against
    the machine's busy time (so other engineers' work shows as ``others``)."""

    def __init__(self, switch_pid: int, pg_pid: int | None) -> None:
        self.switch_pid, self.pg_pid = switch_pid, pg_pid
        self.load0 = os.getloadavg()
        self.t0 = time.monotonic()
        self.sw0 = _tree_cpu(switch_pid)
        self.pg0 = _tree_cpu(pg_pid) if pg_pid else 0.0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.gen0 = ru.ru_utime + ru.ru_stime
        self.busy0 = _busy()

    def stop(self) -> None:
        """Call right after the load, before the switch stops."""
        self.wall = time.monotonic() - self.t0
        self.sw = _tree_cpu(self.switch_pid) - self.sw0
        self.pg = (_tree_cpu(self.pg_pid) - self.pg0) if self.pg_pid else 0.0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.gen = ru.ru_utime + ru.ru_stime - self.gen0
        self.busy = _busy() - self.busy0
        self.load1 = os.getloadavg()

    @property
    def ours(self) -> float:
        return self.sw + self.pg + self.gen

    def per_k(self, approved: int) -> float:
        """CPU seconds of switch + PostgreSQL + generator per 1,000 approved."""
        return 1000 * self.ours / max(approved, 1)

    def line(self, approved: int) -> str:
        k = 1000 / max(approved, 1)
        return (
            f"    CPU s per 1,000 approved: switch {self.sw * k:.2f}, PostgreSQL "
            f"{self.pg * k:.2f}, generator {self.gen * k:.2f} = {self.ours * k:.2f}; "
            f"busy cores {self.busy / self.wall:.2f} of {os.cpu_count()} (this run "
            f"{self.ours / self.wall:.2f}, others {(self.busy - self.ours) / self.wall:.2f}); "
            f"load {self.load0[0]:.1f} -> {self.load1[0]:.1f}"
        )


def pg_postmaster(pg: Any) -> int | None:
    try:
        return int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def iso_line(label: str, r: dict[str, Any]) -> str:
    approved = int(r["codes"].get("00", 0))
    others = {k: v for k, v in r["codes"].items() if k != "00"}
    return (
        f"  {label:<38} {approved / r['elapsed']:>8,.0f} approved/s   "
        f"p50 {r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   "
        f"({approved}/{r['requests']} approved{', other ' + str(others) if others else ''})"
    )


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
    pg = None
    try:
        n_cards = max(-(-N_TXNS // PER_CARD), -(-N_SALES // SALES_PER_CARD))
        pans = bench_pans(n_cards)
        loadgen()
        frames = base / "withdrawals.frames"
        write_frames(frames, pans, N_TXNS)
        spread_frames = base / "withdrawals-spread.frames"
        write_frames(spread_frames, pans, N_TXNS, spread=True)
        sales = base / "sales.json"
        write_sales(sales, pans, N_SALES)
        sqlite_template = base / "sqlite-template"
        asyncio.run(add_cards(sqlite_template, pans))

        from tests.pg_server import start

        pg = start(fsync=True)
        pg_db = pg.create_database()
        pg_template = base / "pg-template"
        os.environ["SWITCH_STORE"] = pg.url(pg_db)
        try:
            asyncio.run(add_cards(pg_template, pans))
        finally:
            del os.environ["SWITCH_STORE"]

        def fresh(name: str, on_pg: bool) -> tuple[Path, str | None]:
            state = base / name
            shutil.copytree(pg_template if on_pg else sqlite_template, state)
            return state, (pg.url(pg.create_database(template=pg_db)) if on_pg else None)

        print(
            f"bench_nodes: {N_TXNS} PIN-verified ATM withdrawals over {min(len(pans), N_TXNS)} "
            f"cards, {CONNS} connections x {DEPTH} in flight (switch-loadgen, Rust); "
            f"durable commits; {os.cpu_count()} cores; "
            + (
                "a card's withdrawals all over one connection, hence one process, except in the "
                "'cards moving' line"
                if len(pans) % CONNS == 0
                else "cards move between connections (cards not a multiple of connections)"
            )
        )
        # (label, on PostgreSQL, processes, mode: "" / "slow" commit / "deaf", frames)
        iso_runs = [("SQLite, 1 process", False, 1, "", frames)]
        if SQLITE2:
            iso_runs.append(("SQLite, 2 processes", False, 2, "", frames))
        if BASELINE:
            iso_runs += [
                ("PostgreSQL, 1 process, slow commit", True, 1, "slow", frames),
                ("PostgreSQL, 2 processes, slow commit", True, 2, "slow", frames),
            ]
        iso_runs += [
            ("PostgreSQL, 1 process", True, 1, "", frames),
            ("PostgreSQL, 2 processes", True, 2, "", frames),
        ]
        if LISTEN_BASELINE:  # without the notifications of rows written (postgres_notify)
            iso_runs.append(("PostgreSQL, 2 processes, cards moving, deaf", True, 2, "deaf",
                             spread_frames))  # fmt: skip
        # the same withdrawals, each card's next one over another connection: the other
        # process's copy of the account is stale unless the notification reloaded it
        iso_runs.append(("PostgreSQL, 2 processes, cards moving", True, 2, "", spread_frames))
        figures: dict[str, float] = {}
        cpu_per_k: dict[str, float] = {}
        pg_pid = pg_postmaster(pg)
        for label, on_pg, workers, mode, load in iso_runs if ONLY != "grpc" else []:
            state, store = fresh(f"iso-{len(figures)}", on_pg)
            switch = Switch(state, store, workers, mode)
            sampler = WaitSampler(store) if WAITS and store is not None else None
            meter = CpuMeter(switch.proc.pid, pg_pid if on_pg else None)
            try:
                r = run_iso(switch.iso, load)
                meter.stop()
            finally:
                waits = sampler.report() if sampler is not None else ""
                switch.stop()
            approved = int(r["codes"].get("00", 0))
            figures[label] = approved / r["elapsed"]
            cpu_per_k[label] = meter.per_k(approved)
            print(iso_line(label, r), flush=True)
            print(meter.line(approved) + redo_text(store, approved), flush=True)
            if waits:
                print(waits, flush=True)
        if figures:
            if BASELINE:
                one = figures["PostgreSQL, 1 process, slow commit"]
                two = figures["PostgreSQL, 2 processes, slow commit"]
                print(f"  slow commit: PostgreSQL 2 processes / 1 process: {two / one:.2f}x")
            one, two = figures["PostgreSQL, 1 process"], figures["PostgreSQL, 2 processes"]
            print(f"  PostgreSQL 2 processes / 1 process: {two / one:.2f}x (goal: 1.6x or more)")
            moving = figures["PostgreSQL, 2 processes, cards moving"]
            print(f"  PostgreSQL 2 processes, cards moving / 1 process: {moving / one:.2f}x")
            if LISTEN_BASELINE:
                deaf = figures["PostgreSQL, 2 processes, cards moving, deaf"]
                print(f"  ... without the notifications (deaf): {deaf / one:.2f}x")
            ceiling = (os.cpu_count() or 1) * 1000 / cpu_per_k["PostgreSQL, 1 process"]
            print(
                f"  CPU ceiling on {os.cpu_count()} cores (nothing else running, the 1-process "
                f"CPU per withdrawal): {ceiling:,.0f}/s = {ceiling / one:.2f}x the 1-process "
                "figure",
                flush=True,
            )
        if ONLY == "iso":
            return

        binary = ghz()
        if binary is None:
            print("bench_nodes gRPC: ghz not found (scripts/install-ghz.sh): skipped")
            return
        print(
            f"bench_nodes gRPC: {N_SALES} e-commerce sales (CVV2-verified), {GRPC_CONC} in "
            f"flight over {GRPC_CONNS} connections (ghz), PostgreSQL, durable"
        )
        grpc_runs = [("gRPC Sale, SQLite, 1 process", False, 1, "")] if GRPC_SQLITE else []
        if BASELINE:
            grpc_runs += [
                ("gRPC Sale, 1 process, slow commit", True, 1, "slow"),
                ("gRPC Sale, 2 processes, slow commit", True, 2, "slow"),
            ]
        grpc_runs.append(("gRPC Sale, 1 process", True, 1, ""))
        if LISTEN_BASELINE:
            grpc_runs.append(("gRPC Sale, 2 processes, deaf", True, 2, "deaf"))
        grpc_runs.append(("gRPC Sale, 2 processes", True, 2, ""))
        for n, (label, on_pg, workers, mode) in enumerate(grpc_runs):
            state, store = fresh(f"grpc-{n}", on_pg)
            switch = Switch(state, store, workers, mode)
            meter = CpuMeter(switch.proc.pid, pg_pid if on_pg else None)
            try:
                g = run_ghz(binary, switch.grpc, sales)
                meter.stop()
            finally:
                switch.stop()
            approved = approved_in_journal(store, state, "purchase")
            seconds = float(g["total"]) / 1e9
            p99 = next(
                (d["latency"] for d in g.get("latencyDistribution") or [] if d["percentage"] == 99),
                float("nan"),
            )
            print(
                f"  {label:<38} {approved / seconds:>8,.0f} approved sales/s   "
                f"({g['rps']:,.0f} answers/s)   p99 {float(p99) / 1e6:7.2f} ms   "
                f"({approved}/{g['count']} approved; goal 4,000/s, p99 < 25 ms)",
                flush=True,
            )
            print(meter.line(approved) + redo_text(store, approved), flush=True)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
