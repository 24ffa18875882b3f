"""The HSM host protocol over real TCP: framing, error codes, garbage frames, pipelining,
timeouts, reconnects, and ``switch hsm serve`` as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import select
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from psec import des

from switch.hsm.client import HsmUnavailableError, KeyType
from switch.hsm.lmk import Lmk
from switch.hsm.server import bound_port, start_hsm_server, stop_hsm_server
from switch.hsm.tcp_client import TcpHsmClient
from tests.test_hsm_commands import clear_key, decrypt_pin_block, encrypt_pin_block, kcv

pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")

PAN = "4012345678909"


def run(coro_fn: Callable[[], Awaitable[None]], timeout: float = 60) -> None:
    async def main() -> None:
        await asyncio.wait_for(coro_fn(), timeout)

    asyncio.run(main())


def frame(header: bytes, payload: bytes) -> bytes:
    body = header + payload
    return len(body).to_bytes(2, "big") + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    length = int.from_bytes(await reader.readexactly(2), "big")
    return await reader.readexactly(length)


async def ask(port: int, payload: bytes, header: bytes = b"HDR1") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame(header, payload))
        answer = await read_frame(reader)
        assert answer[:4] == header
        return answer[4:]
    finally:
        writer.close()


def test_response_codes_and_error_codes_on_the_wire() -> None:
    async def scenario() -> None:
        server = await start_hsm_server(Lmk.test(), "127.0.0.1", 0)
        port = bound_port(server)
        try:
            nc = await ask(port, b"NC")
            assert nc[:4] == b"ND00" and nc[4:20].decode() == Lmk.test().check_value()
            assert await ask(port, b"ZQ") == b"ZR68"  # unknown command
            assert await ask(port, b"nc") == b"nd68"  # commands are upper case
            assert await ask(port, b"CA") == b"CB15"  # no fields
            assert await ask(port, b"A00999U") == b"A104"  # unknown key type
            assert await ask(port, b"A00001Q") == b"A126"  # unknown key scheme
            zpk = (await ask(port, b"A00001U"))[4:37].decode()
            assert await ask(port, f"BUFF0{zpk};001".encode()) == b"BV05"  # length flag
            good = await ask(port, f"BUFF1{zpk};001".encode())
            assert good[:4] == b"BV00" and len(good) == 10
            assert await ask(port, f"BUFF1{zpk};001X".encode()) == b"BV15"  # trailing data
            assert await ask(port, b"CW" + zpk.encode() + b"4012345678909;12AB101") == b"CX15"
            # a ZPK presented as the CVK of CW: other LMK pair -> parity error
            assert await ask(port, b"CW" + zpk.encode() + b"4012345678909;2612101") == b"CX10"
            # header of any bytes is echoed, including non-ASCII
            assert await ask(port, b"NC", header=b"\x00\xff\x10Z") == nc
            assert await ask(port, b"FK001U1" + b"0" * 32) == b"FL17"  # not authorised
        finally:
            await stop_hsm_server(server)

    run(scenario)


def test_garbage_frames_close_only_their_connection() -> None:
    async def scenario() -> None:
        server = await start_hsm_server(Lmk.test(), "127.0.0.1", 0)
        port = bound_port(server)
        try:
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(6)]
            garbage = [
                b"\xff\xff" + b"x" * 100,  # length prefix above the maximum
                frame(b"0001", b"\xc3\xa9"),  # non-ASCII command code
                b"\x00\x03abc",  # shorter than header + command
            ]
            for (_reader, writer), bad in zip(conns[:3], garbage, strict=True):
                writer.write(bad)

            async def healthy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                for i in range(20):
                    header = f"{i:04d}".encode()
                    writer.write(frame(header, b"NC"))
                    answer = await read_frame(reader)
                    assert answer[:8] == header + b"ND00"

            await asyncio.gather(*(healthy(r, w) for r, w in conns[3:]))
            for reader, _writer in conns[:3]:
                assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the HSM
            assert (await ask(port, b"NC"))[:4] == b"ND00"  # new connections still served
            for _reader, writer in conns:
                writer.close()
        finally:
            await stop_hsm_server(server)

    run(scenario)


def test_pipelined_requests_on_one_connection_are_matched_by_header() -> None:
    async def scenario() -> None:
        lmk = Lmk.test()
        server = await start_hsm_server(lmk, "127.0.0.1", 0, authorised=True)
        port = bound_port(server)
        client = TcpHsmClient("127.0.0.1", port, pool_size=1, timeout=30.0)
        try:
            tpk_clear, zpk_clear = clear_key(), clear_key()
            tpk = await client.form_key_from_clear_components(KeyType.TPK, [tpk_clear.hex()])
            zpk = await client.form_key_from_clear_components(KeyType.ZPK, [zpk_clear.hex()])
            pins = [f"{secrets.randbelow(10**6):06d}" for _ in range(300)]
            blocks = [encrypt_pin_block(tpk_clear, "01", p, PAN) for p in pins]
            results = await asyncio.gather(
                *(
                    client.translate_pin_tpk_to_zpk(tpk.key_under_lmk, zpk.key_under_lmk, b, PAN)
                    for b in blocks
                ),
                *(client.key_check_value(KeyType.ZPK, zpk.key_under_lmk) for _ in range(50)),
            )
            for pin_value, out in zip(pins, results[:300], strict=True):
                assert isinstance(out, bytes)
                assert decrypt_pin_block(zpk_clear, "01", out, PAN) == pin_value
            assert set(results[300:]) == {kcv(zpk_clear)}
            # Raw pipelining: 50 frames in one write, answers carry their headers in order.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"".join(frame(f"{i:04d}".encode(), b"NC") for i in range(50)))
            for i in range(50):
                assert (await read_frame(reader))[:4] == f"{i:04d}".encode()
            writer.close()
        finally:
            await client.close()
            await stop_hsm_server(server)

    run(scenario)


def test_client_reconnects_after_the_server_restarts() -> None:
    async def scenario() -> None:
        server = await start_hsm_server(Lmk.test(), "127.0.0.1", 0)
        port = bound_port(server)
        client = TcpHsmClient("127.0.0.1", port, pool_size=2, timeout=30.0)
        try:
            expected = Lmk.test().check_value()
            assert await client.diagnostics() == expected
            assert await client.diagnostics() == expected
            await stop_hsm_server(server)
            with pytest.raises(HsmUnavailableError):
                await client.diagnostics()  # down: refused, not hung
            server = await start_hsm_server(Lmk.test(), "127.0.0.1", port)
            for _ in range(4):  # every pooled connection comes back
                assert await client.diagnostics() == expected
        finally:
            await client.close()
            await stop_hsm_server(server)

    run(scenario)


def test_a_silent_hsm_times_out() -> None:
    async def scenario() -> None:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = bound_port(server)
        client = TcpHsmClient("127.0.0.1", port, pool_size=1, timeout=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(HsmUnavailableError):
                await client.diagnostics()
            assert time.monotonic() - started < 20  # the 0.3 s time-out, not a hang
        finally:
            await client.close()
            server.close()

    run(scenario)


# ---- switch hsm serve ----------------------------------------------------------------------


_EARLY: dict[int, bytes] = {}  # output read by listening(), by pid, given back by stop()


def listening(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """The port ``switch hsm serve --port 0`` says it listens on (its log line), read from
    its output. Port 0, not a port picked free and passed in: that one can be bound by
    another process (CI runs two test runs side by side) before the HSM binds it, and a
    probe connection would then even reach the wrong server."""
    assert proc.stdout is not None
    fd, seen, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while (m := re.search(rb"HSM listening on [^\s:]+:(\d+)", seen)) is None:
        left = deadline - time.monotonic()
        assert left > 0, f"switch hsm serve did not listen in time:\n{seen.decode()}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"switch hsm serve exited early:\n{seen.decode()}"
            seen += chunk
    _EARLY[proc.pid] = seen
    return int(m.group(1))


def serve(state_dir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "switch.cli", "hsm", "serve", "--port", str(port)]
    cmd += ["--state-dir", str(state_dir), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    return (_EARLY.pop(proc.pid, b"") + out).decode()


def test_switch_hsm_serve_creates_a_private_lmk_and_audits(tmp_path: Path) -> None:
    proc = serve(tmp_path, 0, "--authorised")
    try:
        port = listening(proc)
        lmk_file = tmp_path / "lmk.json"
        assert stat.S_IMODE(os.stat(lmk_file).st_mode) == 0o600
        check_value = json.loads(lmk_file.read_text())["check_value"]

        async def scenario() -> None:
            client = TcpHsmClient("127.0.0.1", port, timeout=30.0)
            try:
                assert await client.diagnostics() == check_value
                tpk_clear, zpk_clear = clear_key(), clear_key()
                tpk = await client.form_key_from_clear_components(KeyType.TPK, [tpk_clear.hex()])
                zpk = await client.form_key_from_clear_components(KeyType.ZPK, [zpk_clear.hex()])
                block = encrypt_pin_block(tpk_clear, "01", "1234", PAN)
                out = await client.translate_pin_tpk_to_zpk(
                    tpk.key_under_lmk, zpk.key_under_lmk, block, PAN
                )
                assert des.decrypt_tdes_ecb(zpk_clear, out) != out
                audit = (tmp_path / "hsm-audit.log").read_text()
                assert f"cmd=CA rc=00 kcv={kcv(tpk_clear)},{kcv(zpk_clear)}" in audit
                for secret in (block.hex(), out.hex(), tpk_clear.hex(), tpk.key_under_lmk):
                    assert secret.upper() not in audit.upper()
            finally:
                await client.close()

        run(scenario)
    finally:
        output = stop(proc)
    assert "FOR DEVELOPMENT AND TESTS ONLY" in output
    assert check_value in output
    # A restart loads the same LMK.
    proc = serve(tmp_path, 0)
    try:
        listening(proc)
    finally:
        output = stop(proc)
    assert check_value in output


def test_client_and_server_under_uvloop() -> None:
    import uvloop

    async def scenario() -> None:
        server = await start_hsm_server(Lmk.test(), "127.0.0.1", 0, authorised=True)
        port = bound_port(server)
        client = TcpHsmClient("127.0.0.1", port, pool_size=3, timeout=30.0)
        try:
            tpk_clear, zpk_clear = clear_key(), clear_key()
            tpk = await client.form_key_from_clear_components(KeyType.TPK, [tpk_clear.hex()])
            zpk = await client.form_key_from_clear_components(KeyType.ZPK, [zpk_clear.hex()])
            pins = [f"{i:04d}" for i in range(0, 10000, 97)]
            outs = await asyncio.gather(
                *(
                    client.translate_pin_tpk_to_zpk(
                        tpk.key_under_lmk,
                        zpk.key_under_lmk,
                        encrypt_pin_block(tpk_clear, "01", p, PAN),
                        PAN,
                    )
                    for p in pins
                )
            )
            assert [decrypt_pin_block(zpk_clear, "01", o, PAN) for o in outs] == pins
            await stop_hsm_server(server)
            server = await start_hsm_server(Lmk.test(), "127.0.0.1", port)
            await asyncio.sleep(0.05)
            assert await client.diagnostics() == Lmk.test().check_value()
        finally:
            await client.close()
            await stop_hsm_server(server)

    uvloop.run(asyncio.wait_for(scenario(), 60))


def test_a_client_that_does_not_read_is_throttled_not_dropped() -> None:
    async def scenario() -> None:
        server = await start_hsm_server(Lmk.test(), "127.0.0.1", 0)
        port = bound_port(server)
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            count = 150_000  # ~5 MB of answers: the server's socket and transport buffers fill
            writer.write(b"".join(frame(f"{i % 10000:04d}".encode(), b"NC") for i in range(count)))
            await asyncio.sleep(0.3)  # the server fills its buffer and pauses reading
            for i in range(count):
                answer = await read_frame(reader)
                assert answer[:8] == f"{i % 10000:04d}".encode() + b"ND00"
            writer.close()
            assert (await ask(port, b"NC"))[:4] == b"ND00"
        finally:
            await stop_hsm_server(server)

    run(scenario)
