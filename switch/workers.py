"""``switch run --workers N``: N switch processes on one machine, sharing the ports and the store.

One Python process tops out on one core (docs/architecture.md §7). The supervisor started by
``switch run --workers N`` serves nothing itself: it starts N ``switch run`` children (the
same command line) and each child binds the ISO 8583 and gRPC ports with SO_REUSEPORT, so
the kernel spreads new connections over them, and opens the store in shared mode (the
version guards of §7 keep balances, limits, PIN tries and idempotency keys right across
them). Child 0 also runs what must run once (merchant notifications, the HTTP health/metrics
port, the payment gateway, and on SQLite the SMS worker); the others run with those off. On
PostgreSQL every child runs an SMS worker: the outbox leases its claims per row.

The supervisor forwards the children's output line by line (``[worker I] ...``), prints
``switch ready`` once every child is ready, restarts a child that dies (after a second; the
others keep answering meanwhile; one that dies more than 5 times in a minute stops them
all, exit 1), and on SIGINT/SIGTERM stops them all (SIGTERM: each closes its listeners, lets
its requests in flight answer, closes the store) and exits.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Final

#: Set in each child's environment: its index (``0`` .. ``N-1``). A child never supervises.
ENV_WORKER: Final = "SWITCH_WORKER"
READY: Final = "switch ready"
RESTART_DELAY_S: Final = 1.0
#: A child that dies this many times within CRASH_WINDOW_S is not restarted again: the
#: supervisor stops every child and exits 1 (a crash loop helps nobody, the others included).
MAX_RESTARTS: Final = 5
CRASH_WINDOW_S: Final = 60.0
STOP_TIMEOUT_S: Final = 20.0


def worker_index() -> int | None:
    """This process's worker index when a supervisor started it, else None."""
    text = os.environ.get(ENV_WORKER)
    return None if text is None or not text.isdigit() else int(text)


def free_port(host: str) -> int:
    """A port free now on ``host`` (port 0 cannot be shared: each child would get another)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def child_argv(
    argv: Sequence[str], index: int, iso_port: int, grpc_port: int, *, sms_in_all: bool = False
) -> list[str]:
    """The child's command line: the supervisor's, with the ports fixed, and the once-only
    parts off in every child but the first (argparse takes the last of a repeated option).
    ``sms_in_all`` (a PostgreSQL store: its outbox leases claims per row) leaves the SMS
    worker on in every child; on SQLite it is one per state directory, child 0's."""
    args = [sys.executable, "-c", "import sys; from switch.cli import main; sys.exit(main())"]
    args += [*argv, "--iso-port", str(iso_port), "--grpc-port", str(grpc_port)]
    if index > 0:
        if not sms_in_all:
            args += ["--sms-worker", "off"]
        args += ["--http-port", "-1", "--gateway-port", "-1", "--merchant-notify", "off"]
    return args


@dataclass
class _Child:
    index: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    buffer: bytes = b""
    deaths: list[float] = field(default_factory=list)  # when it died, the recent ones
    died_at: float | None = None
    lines: list[str] = field(default_factory=list)  # the last lines, for an early death


class Supervisor:
    """Runs the children until a signal; see the module docstring."""

    def __init__(self, children: list[_Child], out: IO[str]) -> None:
        self.children = children
        self.out = out
        self.stopping = False
        self.announced = False
        self.sel = selectors.DefaultSelector()

    def _start(self, child: _Child) -> None:
        env = {**os.environ, ENV_WORKER: str(child.index)}
        child.proc = subprocess.Popen(
            child.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        child.ready = False
        child.died_at = None
        assert child.proc.stdout is not None
        self._print(f"[worker {child.index}] started (pid {child.proc.pid})")
        os.set_blocking(child.proc.stdout.fileno(), False)
        self.sel.register(child.proc.stdout, selectors.EVENT_READ, child)

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _forward(self, child: _Child, data: bytes) -> None:
        child.buffer += data
        *lines, child.buffer = child.buffer.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            child.lines = [*child.lines[-19:], line]
            if READY in line:
                child.ready = True
                line = "ready"  # the supervisor says "switch ready" once, for all of them
            self._print(f"[worker {child.index}] {line}")
        if not self.announced and all(c.ready for c in self.children):
            self.announced = True
            self._print(f"{READY} -- {len(self.children)} workers, Ctrl-C to stop")

    def _reap(self, child: _Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        self.sel.unregister(child.proc.stdout)
        child.proc.stdout.close()
        rc = child.proc.wait()
        if self.stopping:
            return
        self._print(f"[worker {child.index}] exited with status {rc}")
        if not self.announced:  # a child that cannot start: stop everything, say why
            raise SystemExit(
                f"switch run: worker {child.index} could not start:\n" + "\n".join(child.lines)
            )
        now = time.monotonic()
        child.deaths = [t for t in child.deaths if now - t < CRASH_WINDOW_S] + [now]
        if len(child.deaths) > MAX_RESTARTS:
            raise SystemExit(
                f"switch run: worker {child.index} died {len(child.deaths)} times in "
                f"{CRASH_WINDOW_S:.0f} s; stopping all workers:\n" + "\n".join(child.lines)
            )
        self._print(f"[worker {child.index}] restarting in {RESTART_DELAY_S:.0f} s")
        child.died_at = now

    def _reap_exited(self) -> None:
        """Children that exited while their output pipe stays open: a child's own SMS worker
        process (PostgreSQL: one in every child) inherits that pipe and outlives a SIGKILLed
        child until it notices, so no end of file tells the child is gone; its exit status
        does."""
        for child in self.children:
            proc = child.proc
            if proc is None or proc.stdout is None or proc.stdout.closed:
                continue
            if proc.poll() is not None:
                self._reap(child)

    def run(self) -> int:
        def on_signal(signum: int, frame: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            for child in self.children:
                self._start(child)
            while not self.stopping:
                for key, _ in self.sel.select(timeout=0.2):
                    child = key.data
                    data = b""
                    try:
                        data = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if data:
                        self._forward(child, data)
                    else:
                        self._reap(child)
                self._reap_exited()
                now = time.monotonic()
                for child in self.children:
                    if child.died_at is not None and now - child.died_at >= RESTART_DELAY_S:
                        if not self.stopping:
                            self._start(child)
        finally:
            self.stopping = True
            self._stop_all()
        self._print("switch: stopped")
        return 0

    def _stop_all(self) -> None:
        live = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in live:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(c.proc is not None and c.proc.poll() is None for c in live):
            for key, _ in self.sel.select(timeout=0.1):  # keep forwarding their last words
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if data:
                    self._forward(key.data, data)
                else:
                    self.sel.unregister(key.fileobj)
            if time.monotonic() > deadline:
                for child in live:
                    assert child.proc is not None
                    if child.proc.poll() is None:
                        child.proc.kill()
                break
        for child in live:
            assert child.proc is not None
            child.proc.wait()


def supervise(
    argv: Sequence[str],
    workers: int,
    host: str,
    iso_port: int,
    grpc_port: int,
    *,
    sms_in_all: bool = False,
) -> int:
    """Start ``workers`` children of ``switch run`` ``argv`` and supervise them
    (``sms_in_all``: see ``child_argv``)."""
    iso = iso_port or free_port(host)
    grpc = grpc_port or free_port(host)
    print(
        f"switch: {workers} workers sharing ISO 8583 port {iso} and gRPC port {grpc} "
        "(SO_REUSEPORT) and the store",
        flush=True,
    )
    children = [
        _Child(i, child_argv(argv, i, iso, grpc, sms_in_all=sms_in_all)) for i in range(workers)
    ]
    return Supervisor(children, sys.stdout).run()
