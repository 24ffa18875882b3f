"""ISO 8583 acquirer throughput: ``switch run`` (subprocess) under a pipelined load generator.

The switch runs its embedded default -- durable SQLite (fsync per group commit), in-process
HSM, the PIN verified on every request -- on a bench state directory holding extra cards
(``bench_core.add_cards``: the demo product's real limits, so each card takes at most 20
withdrawals a day; the load is spread over enough cards instead of weakening the defaults).
The generator runs in its own process: several TCP connections, many 0200s in flight on each,
frames encoded before the clock starts, answers matched by STAN. It reports approved
withdrawals/s with p50/p99/p99.9 latency. The baseline, measured in the same run on a copy of
the same state, is ``SwitchCore.authorize`` called in process (no network, no codec). A third
line runs the same load against a listener whose core answers at once: the ISO layer's own
cost (codec, mapping, framing, tasks, TCP), so the two others can be told apart.

Every approved withdrawal owes its cardholder an SMS alert. The report says how many were
still unsent when the load ended and how long the worker took to send the rest, and the
switch's CPU per withdrawal *with its alert sent* (process tree: the SMS worker may run in a
child process): a switch that looks fast by leaving its alerts for later is not.

Run: ``python -m bench bench_iso``. Knobs: ``BENCH_ISO_TXNS`` (default 20000),
``BENCH_ISO_CONNS`` (8), ``BENCH_ISO_DEPTH`` (16 in flight per connection; the load runs at
that depth, at 3/4 and at half of it, because deeper pipelines trade latency for throughput:
the latency is mostly queueing behind the group commit), ``BENCH_ISO_LOG_LEVEL`` (WARNING;
INFO writes a trace line per transaction, as production does).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import switch_native

from bench.bench_core import PIN, TPK, add_cards, bench_pans
from switch.core.demo import ACQUIRER_ID
from switch.core.model import AuthRequest, AuthResult, Channel, ResponseCode, TxnType
from switch.core.service import SwitchCore
from switch.iso8583.codec import Codec
from switch.iso8583.framing import FrameSplitter, frame
from switch.iso8583.message import Message
from switch.iso8583.server import ListenerConfig, start_iso_server

N_TXNS = int(os.environ.get("BENCH_ISO_TXNS", "20000"))
CONNS = int(os.environ.get("BENCH_ISO_CONNS", "8"))
DEPTH = int(os.environ.get("BENCH_ISO_DEPTH", "16"))
#: ``switch run --log-level``: WARNING by default; INFO adds the trace line of every
#: transaction (``switch.observe.trace``), which is what a production switch logs.
LOG_LEVEL = os.environ.get("BENCH_ISO_LOG_LEVEL", "WARNING")
#: The switch-run load runs at these depths: the latency is queueing, so the lines show what
#: throughput each bound on requests in flight buys.
DEPTHS = tuple(dict.fromkeys((DEPTH, max(1, DEPTH * 3 // 4), max(1, DEPTH // 2))))
PER_CARD = 10  # withdrawals per card (the product allows 20 a day)
AMOUNT = 100_000  # 1,000 DZD, the minimum ATM withdrawal


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


# ---- the generator (its own process) ------------------------------------------------------


def _frames(pans: list[str], conn: int, n: int, offset: int) -> list[tuple[str, bytes]]:
    codec = Codec("ascii87")
    out = []
    for i in range(n):
        pan = pans[(offset + i) // PER_CARD % len(pans)]
        stan = f"{i + 1:06d}"
        msg = Message(
            "0200",
            {
                2: pan,
                3: "010000",
                4: f"{AMOUNT:012d}",
                7: f"1129{conn:06d}",
                11: stan,
                32: ACQUIRER_ID,
                41: "GAB00001",
                49: "012",
                52: switch_native.pin_block_encrypt(TPK, 0, PIN, pan),
            },
        )
        out.append((stan, frame(codec.encode(msg))))
    return out


class _Load(asyncio.Protocol):
    def __init__(self, frames: list[tuple[str, bytes]], depth: int, done: asyncio.Future[None]):
        self.frames = frames
        self.depth = depth
        self.done = done
        self.next = 0
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.approved = 0
        self.codes: dict[str, int] = {}
        self.splitter = FrameSplitter()
        self.codec = Codec("ascii87")
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._fill()

    def _fill(self) -> None:
        assert self.transport is not None
        chunks = []
        now = time.perf_counter()
        while len(self.sent) < self.depth and self.next < len(self.frames):
            stan, data = self.frames[self.next]
            self.next += 1
            self.sent[stan] = now
            chunks.append(data)
        if chunks:
            self.transport.write(b"".join(chunks))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        for fr in self.splitter.feed(data):
            msg = self.codec.decode(fr.payload)
            t0 = self.sent.pop(str(msg.fields[11]))
            self.latencies.append(now - t0)
            code = str(msg.fields.get(39))
            self.codes[code] = self.codes.get(code, 0) + 1
            self.approved += code == "00"
        self._fill()
        if not self.sent and self.next >= len(self.frames) and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"switch closed the connection: {exc}"))


async def drive(
    port: int, plans: list[list[tuple[str, bytes]]], depth: int, timeout: float
) -> tuple[list[_Load], float]:
    """One connection a plan, ``depth`` requests in flight on each, until every answer is in:
    the connections (closed; their latencies and codes kept) and the seconds it took."""
    loop = asyncio.get_running_loop()
    protos: list[_Load] = []
    dones = []
    t0 = time.perf_counter()
    for plan in plans:
        done: asyncio.Future[None] = loop.create_future()
        dones.append(done)
        _, proto = await loop.create_connection(
            functools.partial(_Load, plan, depth, done), "127.0.0.1", port
        )
        protos.append(proto)
    await asyncio.wait_for(asyncio.gather(*dones), timeout)
    elapsed = time.perf_counter() - t0
    for p in protos:
        if p.transport is not None:
            p.transport.close()
    return protos, elapsed


def tally(protos: list[_Load]) -> tuple[list[float], dict[str, int]]:
    """The latencies of all connections, sorted, and how many answers had each code."""
    lat = sorted(x for p in protos for x in p.latencies)
    codes: dict[str, int] = {}
    for p in protos:
        for k, v in p.codes.items():
            codes[k] = codes.get(k, 0) + v
    return lat, codes


async def _generate(
    port: int, pans: list[str], n: int, conns: int, depth: int
) -> dict[str, object]:
    per_conn = n // conns
    plans = [_frames(pans, c, per_conn, c * per_conn) for c in range(conns)]
    c0 = time.process_time()
    protos, elapsed = await drive(port, plans, depth, 600)
    cpu = time.process_time() - c0
    lat, codes = tally(protos)
    return {
        "requests": per_conn * conns,
        "approved": sum(p.approved for p in protos),
        "elapsed": elapsed,
        "generator_cpu": cpu,
        "p50": _percentile(lat, 0.5),
        "p99": _percentile(lat, 0.99),
        "p999": _percentile(lat, 0.999),
        "codes": codes,
    }


def generator_main(argv: list[str]) -> None:
    """``python -m bench.bench_iso --generate PORT N CONNS DEPTH CARDS``: prints JSON."""
    import uvloop

    port, n, conns, depth, cards = (int(x) for x in argv)
    result = uvloop.run(_generate(port, bench_pans(cards), n, conns, depth))
    print(json.dumps(result))


# ---- baseline and orchestration -----------------------------------------------------------


async def _baseline(state: Path, pans: list[str], n: int, concurrency: int) -> tuple[float, int]:
    core = await SwitchCore.open(state)
    reqs = [
        AuthRequest(
            TxnType.CASH_WITHDRAWAL, Channel.ATM, pans[i // PER_CARD % len(pans)], AMOUNT, 12,
            ACQUIRER_ID, "GAB00001", f"{i % 1_000_000:06d}", f"{1000000000 + i // 1_000_000}",
            pin_block=switch_native.pin_block_encrypt(TPK, 0, PIN, pans[i // PER_CARD % len(pans)]),
        )
        for i in range(n)
    ]  # fmt: skip
    it = iter(reqs)
    approved = 0

    async def worker() -> None:
        nonlocal approved
        for req in it:
            result = await core.authorize(req)  # not `approved += await ...`: lost updates
            approved += result.approved

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await core.close()
    return approved / elapsed, approved


class _InstantCore:
    """Answers every request at once: isolates the ISO layer's own cost (codec, mapping,
    framing, tasks, TCP) from the core's -- for the third line of the report only."""

    hsm = None

    def terminal(self, terminal_id: str) -> None:
        return None

    def acquirer(self, acquirer_id: str) -> None:
        return None

    async def authorize(self, req: AuthRequest) -> AuthResult:
        await asyncio.sleep(0)
        # a 12-digit id: the listener answers with it as the RRN (field 37) when none was sent
        return AuthResult(ResponseCode.APPROVED, "approved", "123456", "000000000001", 100, 100, 12)


async def _iso_layer_only(n: int, cards: int) -> tuple[dict[str, object], float]:
    listener = await start_iso_server(cast(SwitchCore, _InstantCore()), ListenerConfig(port=0))
    c0 = time.process_time()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_iso", "--generate", str(listener.port), str(n),
        str(CONNS), str(DEPTH), str(cards), stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    cpu = time.process_time() - c0
    await listener.close()
    return json.loads(out), cpu


def _start_switch(state: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "switch.cli", "run", "--state-dir", str(state)]
    cmd += ["--iso-port", str(port), "--grpc-port", str(_free_port()), "--log-level", LOG_LEVEL]
    cmd += ["--http-port", "0"]
    env = {**os.environ, "SWITCH_SMS": f"file:{state / 'sms.log'}", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while "switch ready" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("switch run did not start:\n" + log.read_text(errors="replace"))
        time.sleep(0.1)
    return proc


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) and of its live children (the SMS
    worker runs in a child of ``switch run``), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        total += sum(_cpu_seconds(int(child)) for child in children)
    return total


def _pending_alerts(state: Path) -> int:
    """SMS alerts not yet handed to the SMS transport (the outbox rows still pending)."""
    db = sqlite3.connect(f"file:{state / 'switch.db'}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute("SELECT COUNT(*) FROM alerts WHERE status = 'pending'").fetchone()[0])
    finally:
        db.close()


def _drain_alerts(state: Path, timeout: float = 120.0) -> float:
    """Wait until the SMS worker has sent every alert; returns the seconds it took."""
    t0 = time.perf_counter()
    while _pending_alerts(state) and time.perf_counter() - t0 < timeout:
        time.sleep(0.05)
    return time.perf_counter() - t0


def _switch_run_line(state: Path, log: Path, depth: int, n_cards: int) -> None:
    """Load ``switch run`` on ``state`` with ``CONNS`` x ``depth`` requests in flight; print
    throughput, latency, CPU and the SMS alerts' fate."""
    port = _free_port()
    proc = _start_switch(state, port, log)
    cpu0 = _cpu_seconds(proc.pid)
    try:
        gen = subprocess.run(
            [sys.executable, "-m", "bench.bench_iso", "--generate", str(port), str(N_TXNS),
             str(CONNS), str(depth), str(n_cards)],
            capture_output=True, text=True, timeout=900, check=True,
        )  # fmt: skip
        switch_cpu = _cpu_seconds(proc.pid) - cpu0
        backlog = _pending_alerts(state)
        drain = _drain_alerts(state)
        all_in_cpu = _cpu_seconds(proc.pid) - cpu0
        left = _pending_alerts(state)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    r = json.loads(gen.stdout)
    print(
        f"  ISO 8583  switch run, {CONNS} x {depth:<2} in flight:  "
        f"{r['approved'] / r['elapsed']:>9,.0f} approved/s ({r['approved']}/{r['requests']}"
        f" approved), latency p50 {r['p50'] * 1e3:.1f} ms, p99 {r['p99'] * 1e3:.1f} ms, "
        f"p99.9 {r['p999'] * 1e3:.1f} ms"
    )
    print(
        f"  CPU seconds during the run: switch {switch_cpu:.1f}, generator "
        f"{r['generator_cpu']:.1f}, wall {r['elapsed']:.1f} (2 cores shared)"
    )
    print(
        f"  SMS alerts: {backlog} of {r['approved']} still unsent when the load ended, all "
        f"sent {drain:.1f} s later{'' if not left else f' EXCEPT {left}'}; switch CPU "
        f"per withdrawal with its alert sent: {all_in_cpu / max(r['approved'], 1) * 1e6:.0f} us"
    )
    if r["approved"] != r["requests"]:
        print(f"  response codes: {r['codes']}")


def main() -> None:
    import uvloop

    n_cards = -(-N_TXNS // PER_CARD)
    base = Path(tempfile.mkdtemp(prefix="bench-iso-"))
    try:
        pans = bench_pans(n_cards)
        template = base / "template"
        uvloop.run(add_cards(template, pans))
        print(
            f"bench_iso: {N_TXNS} PIN-verified ATM withdrawals (0200/0210 ascii87) over "
            f"{n_cards} cards; switch run subprocess (durable SQLite, in-process HSM); "
            f"generator process: {CONNS} connections, {' / '.join(map(str, DEPTHS))} "
            "in flight on each"
        )
        state = base / "baseline"
        shutil.copytree(template, state)
        rate, approved = uvloop.run(_baseline(state, pans, N_TXNS, CONNS * DEPTH))
        print(
            f"  baseline  SwitchCore.authorize in process: {rate:>9,.0f} approved/s "
            f"({approved} approved)"
        )
        for depth in DEPTHS:
            state = base / f"switch-{depth}"
            shutil.copytree(template, state)
            _switch_run_line(state, base / f"switch-{depth}.log", depth, n_cards)
        only, cpu = uvloop.run(_iso_layer_only(N_TXNS, n_cards))
        elapsed = float(cast(float, only["elapsed"]))
        print(
            f"  ISO layer alone (core answering at once):  {N_TXNS / elapsed:>9,.0f} answers/s, "
            f"{cpu / N_TXNS * 1e6:.0f} us CPU per request in the listener process"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        generator_main(sys.argv[2:])
    else:
        main()
