"""One SMS delivery worker per state directory, enforced with a lock file.

Why: ``claim_due_alerts`` does not lease the rows it returns (see ``switch.notify.worker``),
so two workers on one outbox would both send every alert. The worker may run inside
``switch run`` (``--sms-worker inline``), as its child process, or started by hand
(``python -m switch.notify.service``); whichever runs takes this lock, and a second one is
refused with a message instead of doubling every SMS. It is *not* the state directory's
``switch.lock`` (held by the switch itself): the worker process must run next to the switch.
The kernel drops an ``flock`` when its process dies, even by SIGKILL, so a killed worker never
leaves a stale lock behind.

A PostgreSQL outbox needs no such lock: its claims lease the rows (``PostgresOutbox``), so
every node -- and every ``--workers`` child on one state directory -- runs a worker.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "sms-worker.lock"


class WorkerLockError(Exception):
    """Another SMS worker already delivers this state directory's alerts."""


def acquire_worker_lock(state_dir: Path) -> int:
    """Take the worker lock of ``state_dir``; returns the fd to pass to ``release``."""
    path = Path(state_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise WorkerLockError(
            f"{path}: another SMS worker is already delivering this state directory's alerts"
        ) from None
    return fd


def release_worker_lock(fd: int) -> None:
    os.close(fd)  # closing the only descriptor drops the flock
