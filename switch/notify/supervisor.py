"""Keep the SMS worker process running beside ``switch run``, and never leave it behind.

Why supervise: alerts queue up in the outbox while no worker runs, so a worker that crashed
(a transport bug, the OOM killer) must come back by itself -- but a worker that dies at once
on every start must not be respawned in a tight loop either: restarts back off from
``initial_backoff`` doubling to ``max_backoff``, and the back-off starts over once a child
stayed up ``stable_after`` seconds.

Why a session of its own (``start_new_session``): a Ctrl-C in the terminal then reaches only
the switch, which stops its listeners first and only then the worker (SIGTERM, up to
``stop_timeout`` seconds to finish its batch, then SIGKILL). The child inherits stdout and
stderr, so console alerts still print in the switch's terminal. If the switch itself is
killed outright, the child notices it was re-parented (``--parent-pid``) and stops.

Why ``subprocess.Popen`` and a waiter thread rather than the event loop's subprocess support:
Popen starts the child with ``vfork``, while uvloop's (libuv's) ``fork`` copies the page
tables of the whole switch -- a pause of the event loop that grows with the card cache --
and runs every ``pthread_atfork`` handler (gRPC's warns on each restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import threading
from collections.abc import Sequence

log = logging.getLogger("switch.notify.supervisor")


class RestartBackoff:
    """Delays between restarts: ``initial`` doubling up to ``cap``; a child that ran at least
    ``stable_after`` seconds was healthy, so the next delay starts over at ``initial``."""

    def __init__(self, initial: float, cap: float, stable_after: float) -> None:
        self.initial = initial
        self.cap = cap
        self.stable_after = stable_after
        self._next = initial

    def next_delay(self, ran_for: float) -> float:
        """Seconds to wait before restarting a child that ran ``ran_for`` seconds."""
        if ran_for >= self.stable_after:
            self._next = self.initial
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay


class WorkerProcess:
    """Runs ``argv`` as a child process and restarts it until ``stop``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        initial_backoff: float = 1.0,
        max_backoff: float = 30.0,
        stable_after: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        if not argv:
            raise ValueError("argv must name a program")
        if initial_backoff <= 0 or max_backoff < initial_backoff:
            raise ValueError("initial_backoff must be > 0 and max_backoff >= initial_backoff")
        self.argv = list(argv)
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.restarts = 0
        self._proc: _Child | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The running child's pid (None between a crash and its restart)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self) -> int:
        """Spawn the first child (``OSError`` if it cannot be) and supervise it; its pid."""
        if self._task is not None:
            raise RuntimeError("already started")
        proc = await self._spawn()
        self._task = asyncio.create_task(self._supervise(proc), name="sms-worker-supervisor")
        return proc.pid

    async def stop(self) -> None:
        """Stop supervising, then SIGTERM the child; SIGKILL it after ``stop_timeout``."""
        self._stopping.set()
        proc = self._proc
        if proc is not None:
            await self._terminate(proc)
        if self._task is not None:
            try:
                await self._task
            except Exception:  # a supervisor bug must not keep the switch from closing its store
                log.exception("SMS worker supervisor failed")

    # -- internals ---------------------------------------------------------------------------
    async def _spawn(self) -> _Child:
        proc = _Child(
            subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, start_new_session=True),
            asyncio.get_running_loop(),
        )
        self._proc = proc
        log.info("SMS worker process started (pid %d)", proc.pid)
        return proc

    async def _supervise(self, first: _Child) -> None:
        loop = asyncio.get_running_loop()
        proc: _Child | None = first
        backoff = RestartBackoff(self.initial_backoff, self.max_backoff, self.stable_after)
        try:
            while True:
                if proc is None:  # the last start failed
                    delay = backoff.next_delay(ran_for=0.0)
                else:
                    started = loop.time()
                    status = await proc.wait()
                    if self._stopping.is_set():
                        return
                    delay = backoff.next_delay(ran_for=loop.time() - started)
                    log.warning(
                        "SMS worker process (pid %d) exited unexpectedly (%s); restarting in %g s",
                        proc.pid,
                        _describe(status),
                        delay,
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    return
                try:
                    proc = await self._spawn()
                except OSError as exc:
                    log.error("cannot start the SMS worker process: %s; retrying", exc)
                    proc = None
                    continue
                self.restarts += 1
        finally:
            current = self._proc
            if current is not None and current.returncode is None and not self._stopping.is_set():
                current.kill()  # cancelled: do not leave the child running on its own

    async def _terminate(self, proc: _Child) -> None:
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout)
        except TimeoutError:
            log.warning(
                "SMS worker process (pid %d) ignored SIGTERM for %g s: killing it",
                proc.pid,
                self.stop_timeout,
            )
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


class _Child:
    """A ``Popen`` whose exit status is awaitable: a daemon thread blocks in ``waitpid`` for
    it (reaping only this pid, so it never steals another child's status)."""

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._exited: asyncio.Future[int] = loop.create_future()
        threading.Thread(
            target=self._reap, args=(loop,), name=f"sms-worker-wait-{self.pid}", daemon=True
        ).start()

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        status = self.popen.wait()
        try:
            loop.call_soon_threadsafe(self._settle, status)
        except RuntimeError:  # the loop is closed: nobody awaits the status any more
            pass

    def _settle(self, status: int) -> None:
        if not self._exited.done():
            self._exited.set_result(status)

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        if not self._exited.done():
            self.popen.send_signal(sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
