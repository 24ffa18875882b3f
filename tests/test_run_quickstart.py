"""The README Quick start, for real: ``switch run`` as a subprocess on free ports with a temp
state dir, ``switch atm`` as the ATM. A 5,000 DZD withdrawal is approved and its SMS alert is
printed by the switch; a second one over the 50,000 DZD daily ATM limit is declined with 61;
SIGTERM stops the switch cleanly; a restart on the same state keeps the balance."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.switch_proc import bound_ports

SWITCH = [sys.executable, "-m", "switch.cli"]


def _start(
    state: Path, iso: int, out: Path, grpc: int = 0, extra: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """``switch run`` on ``iso``/``grpc``; 0 (best: a port picked free beforehand can be
    taken before the switch binds it) binds any, then ``bound_ports(out)`` says which."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SWITCH_SMS", None)
    cmd = [*SWITCH, "run", "--state-dir", str(state), "--iso-port", str(iso)]
    cmd += ["--grpc-port", str(grpc), "--http-port", "0", *(extra or [])]
    proc = subprocess.Popen(cmd, stdout=out.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while "switch ready" not in out.read_text(errors="replace"):
        assert proc.poll() is None, out.read_text(errors="replace")
        assert time.monotonic() < deadline, "switch run did not start"
        time.sleep(0.1)
    return proc


def _atm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWITCH, "atm", *args], capture_output=True, text=True, timeout=30, check=False
    )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_quickstart_withdrawal_sms_and_limit(tmp_path: Path) -> None:
    state = tmp_path / "var"
    out = tmp_path / "switch.out"
    proc = _start(state, 0, out)
    port, grpc_port = bound_ports(out)
    try:
        banner = out.read_text()
        assert f"127.0.0.1:{port}" in banner and "DEVELOPMENT LMK" in banner
        assert f"gRPC merchant API on 127.0.0.1:{grpc_port}" in banner
        socket.create_connection(("127.0.0.1", grpc_port), timeout=5).close()
        first = _atm("withdraw", "--amount", "5000", "--port", str(port))
        assert first.returncode == 0, first.stdout + first.stderr
        assert "APPROVED (00)" in first.stdout
        assert "available balance: 144,970.00 DZD" in first.stdout  # 150,000 - 5,000 - 30 fee
        deadline = time.monotonic() + 15
        while "+213550000001" not in out.read_text(errors="replace"):
            assert time.monotonic() < deadline, "no SMS alert printed:\n" + out.read_text()
            time.sleep(0.1)
        sms = next(line for line in out.read_text().splitlines() if "+213550000001" in line)
        assert "5 030,00 DZD" in sms and "***0017" in sms
        assert "6280580000000017" not in out.read_text()  # never a full PAN in the output
        second = _atm("withdraw", "--amount", "46000", "--port", str(port))
        assert second.returncode == 1
        assert "DECLINED (61)" in second.stdout
        second_switch = subprocess.run(
            [*SWITCH, "run", "--state-dir", str(state), "--iso-port", "0",
             "--grpc-port", "0", "--http-port", "0"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert second_switch.returncode == 1
        assert "switch run:" in second_switch.stderr and "Traceback" not in second_switch.stderr
        busy_port = subprocess.run(
            [*SWITCH, "run", "--state-dir", str(tmp_path / "other"), "--iso-port", str(port),
             "--http-port", "0"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert busy_port.returncode == 1, busy_port.stderr
        assert "cannot start" in busy_port.stderr and "Traceback" not in busy_port.stderr
        wrong_pin = _atm("withdraw", "--amount", "1000", "--pin", "0000", "--port", str(port))
        assert "DECLINED (55)" in wrong_pin.stdout
    finally:
        rc = _stop(proc)
    assert rc == 0, out.read_text()
    assert "switch: stopped" in out.read_text()
    # restart on the same state: the posting is durable
    proc = _start(state, 0, out)
    port = bound_ports(out)[0]
    try:
        balance = _atm("balance", "--port", str(port))
        assert "available balance: 144,970.00 DZD" in balance.stdout, balance.stdout
    finally:
        assert _stop(proc) == 0


def test_atm_reports_a_switch_that_is_not_running() -> None:
    with socket.socket() as held:  # bound, never listening: refused, and nobody else's port
        held.bind(("127.0.0.1", 0))
        result = _atm("balance", "--port", str(held.getsockname()[1]), "--timeout", "2")
    assert result.returncode == 4  # cannot connect (switch.exits)
    assert "cannot connect to the switch" in result.stderr


@pytest.mark.parametrize("which", ["--iso-port", "--grpc-port"])
def test_a_port_in_use_stops_switch_run_with_a_message(tmp_path: Path, which: str) -> None:
    """Another program holds the port: ``switch run`` says so and exits 1 (no traceback)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = {"--iso-port": 0, "--grpc-port": 0}  # 0: any, never one taken meanwhile
        ports[which] = busy.getsockname()[1]
        cmd = [*SWITCH, "run", "--state-dir", str(tmp_path / "var"), "--sms-worker", "off"]
        cmd += ["--http-port", "0"]
        for flag, port in ports.items():
            cmd += [flag, str(port)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    assert "switch run: cannot start:" in result.stderr
    assert str(ports[which]) in result.stderr and "in use" in result.stderr
    assert "Traceback" not in result.stderr and "switch ready" not in result.stdout
