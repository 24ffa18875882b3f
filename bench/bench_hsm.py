"""HSM benchmark: PIN translations (ISO format 0, TPK -> ZPK) per second, side by side:

* in-process: ``InProcessHsm`` through Python (one coroutine, awaited calls, cached keys),
  without and with the audit file;
* TCP host protocol: ``TcpHsmClient`` (pipelined pool) against ``switch hsm serve`` running
  in a subprocess (its own core; audit log to a file, as deployed), many concurrent callers;
* baseline: the same translation in pure Python with ``psec`` (decrypt, decode, encode,
  encrypt) on clear keys, as a Python-only HSM would do it.

Run: ``.venv/bin/python -m bench bench_hsm`` (numbers depend on what else runs on the box).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import uvloop
from psec import des, pinblock

from switch.hsm.audit import attach_file
from switch.hsm.client import KeyType
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.hsm.tcp_client import TcpHsmClient

PAN = "4012345678909"
TPK_CLEAR = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
ZPK_CLEAR = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
DURATION = 2.0


def _blocks(n: int = 1024) -> list[bytes]:
    return [
        des.encrypt_tdes_ecb(TPK_CLEAR, pinblock.encode_pinblock_iso_0(f"{i:04d}", PAN))
        for i in range(n)
    ]


async def _load(hsm: InProcessHsm | TcpHsmClient) -> tuple[str, str]:
    tpk = await hsm.form_key_from_clear_components(KeyType.TPK, [TPK_CLEAR.hex()])
    zpk = await hsm.form_key_from_clear_components(KeyType.ZPK, [ZPK_CLEAR.hex()])
    return tpk.key_under_lmk, zpk.key_under_lmk


async def _in_process(blocks: list[bytes], audit_dir: str | None = None) -> float:
    hsm = InProcessHsm(Lmk.test(), authorised=True)
    if audit_dir is not None:
        attach_file(Path(audit_dir), hsm.core.audit)
    tpk, zpk = await _load(hsm)
    translate = hsm.translate_pin_tpk_to_zpk
    count = 0
    started = time.perf_counter()
    deadline = started + DURATION
    while time.perf_counter() < deadline:
        for block in blocks:
            await translate(tpk, zpk, block, PAN)
        count += len(blocks)
    return count / (time.perf_counter() - started)


async def _tcp(port: int, blocks: list[bytes], connections: int, callers: int) -> float:
    client = TcpHsmClient("127.0.0.1", port, pool_size=connections, timeout=10.0)
    tpk, zpk = await _load(client)
    translate = client.translate_pin_tpk_to_zpk
    count = 0
    stop = False

    async def caller(offset: int) -> None:
        nonlocal count
        i = offset
        n = len(blocks)
        while not stop:
            await translate(tpk, zpk, blocks[i % n], PAN)
            i += 1
            count += 1

    tasks = [asyncio.create_task(caller(i)) for i in range(callers)]
    await asyncio.sleep(0.3)  # warm up: connections open, keys cached
    first, started = count, time.perf_counter()
    await asyncio.sleep(DURATION)
    rate = (count - first) / (time.perf_counter() - started)
    stop = True
    await asyncio.gather(*tasks)
    await client.close()
    return rate


def _psec_baseline(blocks: list[bytes]) -> float:
    count = 0
    started = time.perf_counter()
    deadline = started + DURATION
    while time.perf_counter() < deadline:
        for block in blocks[:256]:
            clear = des.decrypt_tdes_ecb(TPK_CLEAR, block)
            pin = pinblock.decode_pinblock_iso_0(clear, PAN)
            des.encrypt_tdes_ecb(ZPK_CLEAR, pinblock.encode_pinblock_iso_0(pin, PAN))
        count += 256
    return count / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_server(state_dir: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "switch.cli", "hsm", "serve", "--test-lmk", "--authorised"]
    cmd += ["--port", str(port), "--state-dir", state_dir]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("switch hsm serve did not start")


def main() -> None:
    warnings.filterwarnings("ignore", message=".*TripleDES")
    blocks = _blocks()
    in_process = uvloop.run(_in_process(blocks))
    with tempfile.TemporaryDirectory() as audit_dir:
        in_process_audited = uvloop.run(_in_process(blocks, audit_dir))
    baseline = _psec_baseline(blocks)
    tcp: dict[tuple[int, int], float] = {}
    with tempfile.TemporaryDirectory() as state_dir:
        port = _free_port()
        proc = _start_server(state_dir, port)
        try:
            for connections, callers in ((1, 1), (4, 256), (8, 512)):
                tcp[(connections, callers)] = uvloop.run(_tcp(port, blocks, connections, callers))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"HSM PIN translation (format 0, TPK -> ZPK), {os.cpu_count()} cores, shared machine")
    print(f"  {'path':<52} {'translations/s':>15}")
    print(f"  {'in-process InProcessHsm (one core, through Python)':<52} {in_process:>15,.0f}")
    label = "in-process, audit file attached (every command)"
    print(f"  {label:<52} {in_process_audited:>15,.0f}")
    for (connections, callers), rate in tcp.items():
        label = f"TCP host protocol, {connections} conn, {callers} concurrent callers"
        print(f"  {label:<52} {rate:>15,.0f}")
    print(f"  {'baseline: psec pure Python (clear keys)':<52} {baseline:>15,.0f}")
    print(f"  in-process / psec: {in_process / baseline:,.1f}x")


if __name__ == "__main__":
    main()
