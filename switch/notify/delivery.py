"""How ``switch run`` delivers SMS alerts: ``--sms-worker process`` (default), ``inline``, ``off``.

* ``process``: the worker runs as a supervised child (``switch.notify.service``), so its CPU
  does not compete for the GIL with the event loop answering ATMs (see that module).
* ``inline``: the worker runs in the switch process, on the store's outbox connection (the
  former behaviour; one process to watch, at the cost of throughput).
* ``off``: no worker; alerts stay ``pending`` in the outbox for a worker started elsewhere
  (``python -m switch.notify.service --state-dir DIR``).

``SWITCH_SMS`` is checked here before anything starts, in every mode, so a bad URL stops
``switch run`` at start with the part named (``ValueError``), not a child in a restart loop.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Literal, Protocol

from switch.notify.factory import describe_transport, show_codes_setting, transport_from_url
from switch.notify.outbox import AlertOutbox
from switch.notify.sealing import AlertSeal
from switch.notify.service import command
from switch.notify.supervisor import WorkerProcess
from switch.notify.worker import AlertWorker
from switch.notify.worker_lock import acquire_worker_lock, release_worker_lock
from switch.store import ENV_STORE, is_postgres

SmsWorkerMode = Literal["process", "inline", "off"]
MODES: tuple[SmsWorkerMode, ...] = ("process", "inline", "off")


class SmsDelivery(Protocol):
    """A started delivery mode: what the banner says about it, and how to stop it."""

    @property
    def banner(self) -> str: ...

    async def stop(self) -> None: ...


def check_sms_setting(url: str | None, state_dir: Path) -> str:
    """Validate ``SWITCH_SMS`` and ``SWITCH_SMS_SHOW_CODES`` (``ValueError`` naming the
    variable and the part); the banner's text."""
    shows = show_codes_setting()  # its ValueError names SWITCH_SMS_SHOW_CODES
    try:
        # builds only: no transport connects here
        transport_from_url(url, state_dir, show_codes=shows).close()
    except ValueError as exc:
        raise ValueError(f"SWITCH_SMS: {exc}") from None
    return describe_transport(url, show_codes=shows)


async def start_sms_delivery(
    mode: SmsWorkerMode,
    outbox: AlertOutbox,
    state_dir: Path,
    *,
    poll_interval: float = 0.5,
    log_level: str = "INFO",
) -> SmsDelivery:
    """Start ``mode`` for the (migrated) store of ``state_dir``; ``outbox`` is used inline."""
    url = os.environ.get("SWITCH_SMS")
    what = check_sms_setting(url, state_dir)
    if mode == "process":
        argv = command(
            state_dir, poll_interval=poll_interval, parent_pid=os.getpid(), log_level=log_level
        )
        supervisor = WorkerProcess(argv)
        pid = await supervisor.start()
        return _ProcessDelivery(supervisor, f"{what}, delivered by worker process {pid}")
    if mode == "inline":
        seal = AlertSeal.for_state_dir(state_dir)  # SwitchCore.open created pan.key
        transport = transport_from_url(url, state_dir)
        # SQLite: one worker per state directory; PostgreSQL claims lease their rows
        lock = None if is_postgres(os.environ.get(ENV_STORE)) else acquire_worker_lock(state_dir)
        worker = AlertWorker(outbox, transport, poll_interval=poll_interval, seal=seal)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name="sms-worker")
        return _InlineDelivery(worker, stop, task, lock, f"{what}, delivered in this process")
    if mode == "off":
        return _NoDelivery(
            f"off -- alerts stay pending in {state_dir / 'switch.db'} for "
            f"`python -m switch.notify.service --state-dir {state_dir}`"
        )
    raise ValueError(f"--sms-worker must be one of {', '.join(MODES)}, got {mode!r}")


class _ProcessDelivery:
    def __init__(self, supervisor: WorkerProcess, banner: str) -> None:
        self.supervisor = supervisor
        self.banner = banner

    async def stop(self) -> None:
        await self.supervisor.stop()


class _InlineDelivery:
    def __init__(
        self,
        worker: AlertWorker,
        stop_event: asyncio.Event,
        task: asyncio.Task[None],
        lock: int | None,
        banner: str,
    ) -> None:
        self.worker = worker
        self._stop = stop_event
        self._task = task
        self._lock = lock
        self.banner = banner

    async def stop(self) -> None:
        self._stop.set()
        try:
            await self._task
            self.worker.close()
        finally:
            if self._lock is not None:
                release_worker_lock(self._lock)


class _NoDelivery:
    def __init__(self, banner: str) -> None:
        self.banner = banner

    async def stop(self) -> None:
        return None
