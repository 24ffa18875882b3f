"""The HTTP health and metrics endpoint, for real: a ``switch run`` subprocess on free ports
probed with the standard library's HTTP client and raw sockets (status codes, the
Prometheus text format, a withdrawal counted, bad requests answered, a silent client dropped
without stalling anything), plus the renderer on a real in-process core that is made to halt.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path

import pytest

from switch.core import demo
from switch.core import testing as t
from switch.core.model import ResponseCode
from switch.core.service import SwitchCore
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.observe.endpoints import health, http_port, readiness, start_observe_server
from switch.observe.http import BadRequest, Handler, HttpServer, Response, parse_head
from switch.observe.metrics import render_metrics
from switch.observe.state import Observed, Phase
from tests import remote_issuer_peer as peer
from tests.switch_proc import bound_ports, stop, wait_ready

SWITCH = [sys.executable, "-m", "switch.cli"]
# (sample keys are as rendered: labels in name order, the channel label since issue 12)
WITHDRAWAL_OK = (
    'switch_authorizations_total{channel="atm",response_code="00",txn_type="cash_withdrawal"}'
)
# name{label="value",...} value -- the sample line shape of the 0.0.4 text format
SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-z_]+="[^"\\\n]*",?)*\})? (-?[0-9.e+-]+|[+-]Inf|NaN)$'
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class Running:
    """One ``switch run`` (SMS worker off: alerts stay pending, which a metric shows)."""

    def __init__(self, state: Path, out: Path, extra: tuple[str, ...] = ()) -> None:
        self.out = out
        cmd = [*SWITCH, "run", "--state-dir", str(state), "--iso-port", "0"]
        cmd += ["--grpc-port", "0", "--http-port", "0", "--sms-worker", "off", *extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("SWITCH_SMS", None)
        self.proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=env)
        wait_ready(self.proc, out, 30)
        self.iso = bound_ports(out)[0]  # port 0: none picked free and taken meanwhile
        m = re.search(r"HTTP health/metrics on 127\.0\.0\.1:(\d+)", self.text())
        assert m is not None, self.text()
        self.http = int(m.group(1))

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def get(self, path: str, method: str = "GET") -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http, timeout=10)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type", ""), r.read().decode()
        finally:
            conn.close()

    def raw(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.http), timeout=10) as s:
            s.sendall(data)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def metrics(self) -> dict[str, float]:
        status, _, text = self.get("/metrics")
        assert status == 200, text
        return _samples(text)

    def stop(self) -> None:
        stop(self.proc)


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("observe")
    running = Running(tmp / "var", tmp / "switch.out")
    try:
        yield running
    finally:
        running.stop()


def _samples(text: str) -> dict[str, float]:
    """Every sample of an exposition, checking the format on the way."""
    samples: dict[str, float] = {}
    helped: set[str] = set()
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            assert kind != "counter" or name.endswith("_total"), line
            assert name in helped, f"TYPE before HELP: {line}"
            typed.add(name)
        else:
            assert SAMPLE.match(line), f"not a sample line: {line!r}"
            key, value = line.rsplit(" ", 1)
            name = key.split("{")[0]
            family = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), "")
            assert name in typed or family in typed, f"sample without TYPE: {line}"
            samples[key] = float(value)
    return samples


def _atm_withdraw(port: int, *card: str) -> str:
    r = subprocess.run(
        [*SWITCH, "atm", "withdraw", "--amount", "5000", "--port", str(port), *card],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return r.stdout + r.stderr


def _eventually(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_healthz_and_readyz_answer_200(switch: Running) -> None:
    assert switch.get("/healthz")[::2] == (200, "ok\n")
    assert switch.get("/readyz")[::2] == (200, "ready\n")
    assert switch.get("/healthz?verbose=1")[0] == 200  # a query string does not matter
    status, _, body = switch.get("/healthz", "HEAD")
    assert (status, body) == (200, "")


def test_metrics_parse_and_count_a_withdrawal(switch: Running) -> None:
    status, ctype, text = switch.get("/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    before = _samples(text)
    assert before["switch_up"] == 1 and before["switch_halted"] == 0
    assert before[f'switch_iso_connections{{listener="127.0.0.1:{switch.iso}"}}'] == 0
    for name in ("switch_store_commits_total", "switch_store_units_total"):
        assert name in before
    assert "# TYPE switch_remote_issuer_up gauge" in text  # the family, with no issuer here
    assert "# TYPE switch_saf_pending gauge" in text
    first = before.get(WITHDRAWAL_OK, 0)
    pending = before["switch_sms_alerts_pending"]

    answer = _atm_withdraw(switch.iso)
    assert "APPROVED (00)" in answer, answer
    text = switch.get("/metrics")[2]
    after = _samples(text)
    assert after[WITHDRAWAL_OK] == first + 1
    assert after["switch_store_commits_total"] > before["switch_store_commits_total"]
    assert after["switch_store_units_total"] > before["switch_store_units_total"]
    assert after["switch_sms_alerts_pending"] == pending + 1  # the worker is off
    for card in demo.CARDS:  # no cardholder data in a scrape, whatever happened
        assert card.pan not in text


def test_bad_requests_get_a_clear_answer(switch: Running) -> None:
    status, _, body = switch.get("/healthz", "POST")
    assert status == 405 and body == "method not allowed: use GET or HEAD\n"
    assert switch.get("/metrics", "DELETE")[0] == 405
    status, _, body = switch.get("/admin")
    assert status == 404 and body == "not found\n"
    assert switch.raw(b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert switch.raw(b"GET healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert switch.raw(b"GET /healthz HTTP/1.1\r\nno colon\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert switch.raw(b"GET /\xff HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    big = b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
    assert switch.raw(big).startswith(b"HTTP/1.1 431 ")
    # a POST with a body: the answer arrives intact (the unread body causes no reset)
    answer = switch.raw(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert answer.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD\r\n" in answer
    assert switch.get("/healthz")[0] == 200  # and the switch still serves


def test_a_silent_client_is_dropped_and_does_not_stall_probes(switch: Running) -> None:
    opened = time.monotonic()  # before the connect: the server's read timeout starts after
    with socket.create_connection(("127.0.0.1", switch.http), timeout=15) as silent:
        started = time.monotonic()
        for _ in range(3):  # answered at once while the silent client holds its connection
            assert switch.get("/healthz")[0] == 200
        # stalled behind the silent client, they would take its 5 s read timeout: the bound
        # sits just under that, with all the room a loaded CI machine needs below it
        assert time.monotonic() - started < 4.5
        data = silent.recv(65536)  # the server gives up after its 5 s read timeout
        waited = time.monotonic() - opened
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert 4 < waited < 15, waited  # (15 s: the socket's own time-out would raise first)
        while silent.recv(65536):
            pass  # then closes the connection
    assert switch.get("/healthz")[0] == 200


def test_a_busy_http_port_is_a_one_line_cannot_start(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [*SWITCH, "run", "--state-dir", str(tmp_path / "var"), "--sms-worker", "off"]
        cmd += ["--iso-port", "0", "--grpc-port", "0", "--http-port", str(port)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "switch run: cannot start:" in result.stderr and str(port) in result.stderr
    assert "Traceback" not in result.stderr and "switch ready" not in result.stdout


async def _link_zpk(state: Path) -> str:
    """The link ZPK under the acquirer's LMK (the key ceremony before the first start)."""
    await (await SwitchCore.open(state)).close()  # creates the LMK and the demo data
    ceremony = InProcessHsm(Lmk.load(state / "lmk.json"), authorised=True)
    zpk = await ceremony.form_key_from_clear_components(KeyType.ZPK, [peer.LINK_ZPK_CLEAR])
    return zpk.key_under_lmk


def test_remote_issuer_metrics_over_a_real_link(tmp_path: Path) -> None:
    """A second switch is the issuer of BIN 627000: link up, a time-out (issuer SIGSTOPped)
    counted with its reversal queued, then delivered once the issuer answers again."""
    issuer, ports = peer.start_issuer_switch(tmp_path / "issuer")
    acquirer: Running | None = None
    try:
        state = tmp_path / "acquirer"
        zpk = asyncio.run(_link_zpk(state))
        links = tmp_path / "links.toml"
        # a 3 s answer wait: the approval before the SIGSTOP must not time out on a loaded
        # machine (1 s could), and the time-out after it costs 3 s
        links.write_text(
            f'[remote_issuers.remote-bank]\nhost = "127.0.0.1"\nport = {ports[0]}\n'
            f'zpk = "{zpk}"\ntimeout = 3\nsaf_retry = 0.3\n'
        )
        acquirer = Running(state, tmp_path / "acquirer.out", ("--remote-issuers", str(links)))
        up = 'switch_remote_issuer_up{issuer="remote-bank"}'
        timeouts = 'switch_remote_issuer_timeouts_total{issuer="remote-bank"}'
        delivered = 'switch_remote_reversals_delivered_total{issuer="remote-bank"}'
        saf = 'switch_saf_pending{issuer="remote-bank"}'
        _eventually("the link to sign on", lambda: acquirer.metrics()[up] == 1)
        m = acquirer.metrics()
        assert (m[timeouts], m[delivered], m[saf]) == (0, 0, 0)
        card = ("--card", peer.CARD_PAN, "--pin", peer.CARD_PIN)
        assert "APPROVED (00)" in _atm_withdraw(acquirer.iso, *card)
        os.kill(issuer.pid, signal.SIGSTOP)
        try:
            answer = _atm_withdraw(acquirer.iso, *card)
            assert "DECLINED (91)" in answer, answer
            m = acquirer.metrics()
            assert m[timeouts] == 1 and m[saf] == 1, m
        finally:
            os.kill(issuer.pid, signal.SIGCONT)
        _eventually("the reversal delivered", lambda: acquirer.metrics()[delivered] == 1)
        assert acquirer.metrics()[saf] == 0
        assert acquirer.metrics()[up] == 1
    finally:
        if acquirer is not None:
            acquirer.stop()
        stop(issuer)


def test_http_port_minus_one_turns_the_endpoint_off(tmp_path: Path) -> None:
    out = tmp_path / "switch.out"
    cmd = [*SWITCH, "run", "--state-dir", str(tmp_path / "var"), "--sms-worker", "off"]
    cmd += ["--iso-port", "0", "--grpc-port", "0", "--http-port", "-1"]
    proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT)
    try:
        _eventually("switch ready", lambda: "switch ready" in out.read_text(), timeout=30)
        assert "HTTP health/metrics" not in out.read_text()
    finally:
        stop(proc)
    assert proc.returncode == 0, out.read_text()
    bad = subprocess.run(
        [*SWITCH, "run", "--http-port", "-2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "--http-port: -2 is not a port" in bad.stderr


# -- in process: the request-head parser and the renderer on a real core ---------------------


@pytest.mark.parametrize(
    "head",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\n\r\n",
        b"get /healthz HTTP/1.1\r\n\r\n",
        b"GET http://x/healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nbad header\r\n\r\n",
        b"GET /h\xc3\xa9 HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_heads_are_refused(head: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_head(head)


def test_http_port_values() -> None:
    assert [http_port(v) for v in ("-1", "0", "8080", "65535")] == [-1, 0, 8080, 65535]
    for bad in ("-2", "65536", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            http_port(bad)


class ThreadedServer:
    """An HttpServer on its own event loop in a thread, so the test can hold plain blocking
    sockets and read the kernel's exact state of each (closed, or open with nothing sent)."""

    def __init__(self, routes: dict[str, Handler], read_timeout: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = HttpServer(routes, read_timeout=read_timeout)
        self._call(self.server.start("127.0.0.1", 0))

    def _call(self, coro: Coroutine[object, object, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self._call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


async def _ok() -> Response:
    return Response(200, "ok\n")


def _idle_clients(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that never finish a request head: every other one sends the
    first line of one and stops there (the slow-loris way), the rest send nothing."""
    clients = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i % 2:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
        clients.append(s)
    return clients


def _probe(port: int) -> bytes:
    """One GET /healthz on a fresh connection; the read time-out (10 s) only bounds a hang."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _closed_by_peer(s: socket.socket) -> bool:
    """Waits (socket time-out) for the server to close a connection that sent no full head."""
    try:
        return s.recv(65536) == b""
    except ConnectionResetError:
        return True  # closed with a partial head unread: the kernel sends a reset


def test_two_hundred_idle_clients_do_not_keep_healthz_from_answering(switch: Running) -> None:
    """Issue 10 item 5: 200 idle connections (the cap is 64) stay open; a probe still gets
    200 (the client read's 10 s time-out only turns a hang into a failure)."""
    idle = _idle_clients(switch.http, 200)
    try:
        assert _probe(switch.http).startswith(b"HTTP/1.1 200 OK\r\n")
        assert switch.get("/healthz")[::2] == (200, "ok\n")
        assert switch.get("/readyz")[0] == 200
    finally:
        for s in idle:
            s.close()
    assert switch.get("/healthz")[0] == 200


def test_the_oldest_idle_clients_are_shed_and_the_newest_kept() -> None:
    """Default cap (64), a read time-out far away: 200 idle clients, then a probe. The server
    keeps the 64 newest, sheds the oldest for each newcomer, and the probe is answered; the
    63 idle clients still held are open with nothing sent to them."""
    server = ThreadedServer({"/healthz": _ok}, read_timeout=600)
    try:
        assert server.server.max_connections == 64
        idle = _idle_clients(server.server.port, 200)
        answer = _probe(server.server.port)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok\n")
        for s in idle[:137]:  # 136 shed by the newer idle ones, the 137th by the probe
            assert _closed_by_peer(s)
        for s in idle[137:]:
            s.setblocking(False)
            with pytest.raises(BlockingIOError):  # still open, nothing received
                s.recv(1)
        for s in idle:
            s.close()
    finally:
        server.close()


def test_clients_being_answered_are_never_shed_and_a_full_server_closes_new_ones() -> None:
    """Cap 2, both slots answering (their handler waits): a third connection is closed at
    once, without an answer; the two answered in full once their handler goes on; then a
    probe is answered again."""

    async def go() -> None:
        entered = asyncio.Semaphore(0)
        release = asyncio.Event()

        async def slow() -> Response:
            entered.release()
            await release.wait()
            return Response(200, "slow\n")

        server = HttpServer({"/healthz": _ok, "/slow": slow}, max_connections=2)
        await server.start("127.0.0.1", 0)
        try:
            busy = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
            for _, w in busy:
                w.write(b"GET /slow HTTP/1.1\r\n\r\n")
            for _ in busy:
                await entered.acquire()  # both heads read, both handlers running
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
            try:
                refused = await asyncio.wait_for(reader.read(), 10)
            except ConnectionResetError:
                refused = b""
            assert refused == b""  # closed without an answer: every slot is busy
            writer.close()
            release.set()
            for r, w in busy:
                assert (await asyncio.wait_for(r.read(), 10)).endswith(b"\r\n\r\nslow\n")
                w.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"\r\n\r\nok\n")
            writer.close()
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(go(), 30))


def test_idle_clients_time_out_with_408() -> None:
    async def go() -> None:
        server = HttpServer({"/healthz": _ok}, read_timeout=0.5, max_connections=2)
        await server.start("127.0.0.1", 0)
        try:
            idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
            for r, w in idle:  # 408 after the read timeout, then closed
                assert (await asyncio.wait_for(r.read(), 10)).startswith(b"HTTP/1.1 408 ")
                w.close()
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(go(), 20))


def test_a_good_head_gives_method_and_path() -> None:
    head = b"HEAD /metrics?x=1 HTTP/1.0\r\nHost: a\r\nAccept: */*\r\n\r\n"
    assert parse_head(head) == ("HEAD", "/metrics")


def test_renderer_on_a_real_core_then_halted(template: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    shutil.copytree(template, state)

    async def go() -> None:
        core = await SwitchCore.open(state)
        try:
            observed = Observed(core)
            assert readiness(observed).status == 503  # STARTING
            observed.phase = Phase.READY
            assert readiness(observed).status == 200
            observed.phase = Phase.STOPPING
            assert readiness(observed) == Response(503, "not ready: stopping\n")
            observed.phase = Phase.READY
            assert health(observed).status == 200
            r = await core.authorize(t.withdrawal())
            assert r.response_code is ResponseCode.APPROVED
            samples = _samples(await render_metrics(observed))
            assert samples[WITHDRAWAL_OK] == 1 and samples["switch_halted"] == 0
            assert samples["switch_store_commits_total"] >= 1
            # another process breaks the database under the switch: the next commit fails
            other = sqlite3.connect(core.store.path)
            other.execute("ALTER TABLE postings RENAME TO postings_gone")
            other.commit()
            other.close()
            r = await core.authorize(t.withdrawal())
            assert r.response_code is ResponseCode.SYSTEM_MALFUNCTION and core.halted
            h = health(observed)
            assert h.status == 503 and h.body.startswith("halted: ")
            assert h.body.count("\n") == 1  # one line, whatever the store said
            samples = _samples(await render_metrics(observed))
            assert samples["switch_halted"] == 1
            failed = WITHDRAWAL_OK.replace('response_code="00"', 'response_code="96"')
            assert samples[failed] == 1
            # and over HTTP, on a real socket
            server = await start_observe_server(observed, "127.0.0.1", 0)
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = await asyncio.wait_for(reader.read(), 5)
                writer.close()
                assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
                assert b"\r\n\r\nhalted: " in answer
            finally:
                await server.close()
        finally:
            await core.close()

    asyncio.run(asyncio.wait_for(go(), 30))
