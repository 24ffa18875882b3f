"""Starting and stopping ``switch run`` (and its peers) as subprocesses in tests: the wait
for the ready line and the clean stop that several test modules need alike, and a whole
``switch run`` with an operator on a new state directory (``run_with_operator``)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SWITCH = [sys.executable, "-m", "switch.cli"]


def wait_ready(
    proc: subprocess.Popen[bytes], out: Path, timeout: float, line: str = "switch ready"
) -> None:
    """Until ``line`` is in ``out`` (the process's output file); fails at once, with the
    output, when the process exits first, and after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while line not in out.read_text(errors="replace"):
        assert proc.poll() is None, out.read_text(errors="replace")
        assert time.monotonic() < deadline, "switch run did not start:\n" + out.read_text(
            errors="replace"
        )
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (the switch's clean shutdown), then a kill if it has not exited in
    ``timeout`` seconds; the process is reaped either way."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def bound_ports(out: Path) -> tuple[int, int]:
    """The ISO 8583 (first listener) and gRPC ports a ready ``switch run`` started with
    ``--iso-port 0 --grpc-port 0`` says it bound, read from its output file ``out``.

    Why port 0 and not a free port picked beforehand: a port found free and closed again
    can be taken by another process before the switch binds it -- CI runs two test runs side
    by side, each binding ephemeral ports all the time."""
    text = out.read_text(errors="replace")
    iso = re.search(r"^ISO 8583 acquirer listener on [^\s]+:(\d+) ", text, re.MULTILINE)
    grpc = re.search(r"^gRPC merchant API on [^\s]+:(\d+) ", text, re.MULTILINE)
    assert iso is not None and grpc is not None, text
    return int(iso.group(1)), int(grpc.group(1))


@dataclass(frozen=True)
class OperatorSwitch:
    """A ``switch run`` started by ``run_with_operator``."""

    state: Path  # its state directory
    key: str  # the operator ``alice``'s key
    grpc_port: int
    iso_port: int
    env: dict[str, str]  # the environment it was started with
    log: Path  # its stdout and stderr


@contextlib.contextmanager
def run_with_operator(root: Path, timeout: float = 60) -> Iterator[OperatorSwitch]:
    """Operator ``alice`` added to a new state directory ``root/var``, then ``switch run``
    on it (free ISO and gRPC ports, no HTTP, no SMS worker, no fsync; its store:
    ``SWITCH_STORE`` if set, else the state directory's SQLite file), ready before the
    ``with`` body runs and stopped after it: the operator test modules share this start."""
    state = root / "var"
    state.mkdir(mode=0o700)
    added = subprocess.run(
        [*SWITCH, "operator", "add", "alice", "--state-dir", str(state), "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    key = json.loads(added.stdout)["key"]
    out = root / "run.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SWITCH_SMS", None)
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*SWITCH, "run", "--state-dir", str(state), "--iso-port", "0",
             "--grpc-port", "0", "--http-port", "-1", "--sms-worker", "off",
             "--no-fsync"],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_ready(proc, out, timeout)
        iso_port, grpc_port = bound_ports(out)
        yield OperatorSwitch(state, key, grpc_port, iso_port, env, out)
    finally:
        stop(proc)
