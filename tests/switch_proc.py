"""Starting and stopping ``switch run`` (and its peers) as subprocesses in tests: the wait
for the ready line and the clean stop that several test modules need alike."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path


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
