"""The card base import's locks on one machine: one ``switch import`` per state directory,
one import batch at a time across the processes sharing a SQLite store.

Why two. ``switch import`` itself (``ImportLock``, ``state_dir/import.lock``) holds its lock
from start to end, whether it writes the store (the switch stopped) or sends its batches to
a running switch: a second ``switch import`` on the state directory is refused with a
message naming the one in progress, instead of reading the held ``switch.lock`` as a
running switch (and failing for want of operator credentials), or racing it. The running
switch's side (``SqliteBatchLock``, ``STORE-import.lock`` beside the SQLite file) is taken by
each batch from its look-ups until its unit is durable: ``switch run --workers N`` serves
the operator API from N processes over one SQLite file, each with its own ``LiveImport``
lock, and two of their batches at once would take the same next card/account ids (the
second unit's insert fails and halts that worker's group commit) or apply one batch twice.
It is ``switch.cardbase.live_pg.PgBatchLock``'s twin for SQLite.

Both are ``flock`` locks: the kernel drops one when its process dies, even by SIGKILL, so a
killed import or worker never leaves a stale lock. The holder writes what it is into the
file once it holds the lock; a refusal or a wait quotes it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Final

from switch.store.api import StoreError

IMPORT_LOCK_NAME: Final = "import.lock"
BATCH_LOCK_SUFFIX: Final = "-import.lock"
#: how long a batch waits for another process's batch before the operator is told to retry
BATCH_WAIT_S: Final = 30.0
_POLL_S: Final = (0.001, 0.05)  # first and longest pause between two tries of a held lock

log = logging.getLogger("switch.cardbase.import")


class ImportInProgressError(Exception):
    """Another ``switch import`` holds the state directory's import lock; ``str`` names it."""


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> str:
    """What the holder wrote; empty in the instant between its lock and its write."""
    return os.pread(fd, 500, 0).decode("utf-8", "replace").strip()


def _claim(fd: int, what: str) -> None:
    """Once locked: say who holds the lock (an earlier holder's words replaced)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{what} (pid {os.getpid()})\n".encode(), 0)


class ImportLock:
    """The lock of one ``switch import`` command on its state directory (a context manager)."""

    def __init__(self, state_dir: Path, what: str) -> None:
        """``what``: how a refused second import names this one (``cards FILE``)."""
        self.path = Path(state_dir) / IMPORT_LOCK_NAME
        self._what = what
        self._fd = -1

    def __enter__(self) -> ImportLock:
        fd = _open(self.path)
        if not _try_lock(fd):
            holder = _holder(fd) or "another switch import (starting)"
            os.close(fd)
            raise ImportInProgressError(f"switch import {holder}")
        _claim(fd, self._what)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)  # nobody holds it: nothing to quote
            os.close(self._fd)  # drops the flock
            self._fd = -1


def batch_lock_path(db_path: Path) -> Path:
    """The batch lock of the SQLite store ``db_path`` (beside it, as its ``-wal``)."""
    return db_path.with_name(db_path.name + BATCH_LOCK_SUFFIX)


class SqliteBatchLock:
    """``acquire``/``release`` of the import batch lock of one SQLite store (blocking: run
    on a worker thread). A wait longer than ``timeout_s`` is the store's error
    (``StoreError``: the operator is told to retry), not a hang."""

    def __init__(self, db_path: Path, *, timeout_s: float = BATCH_WAIT_S) -> None:
        self.path = batch_lock_path(Path(db_path))
        self._timeout_s = timeout_s
        self._fd = -1

    def acquire(self) -> None:
        try:
            if self._fd < 0:
                self._fd = _open(self.path)
            fd = self._fd
            if not _try_lock(fd):
                log.info(
                    "import batch: waiting for the batch of another process on this store "
                    "(%s: %s)", self.path.name, _holder(fd) or "starting",
                )  # fmt: skip
                deadline = time.monotonic() + self._timeout_s
                pause = _POLL_S[0]
                while not _try_lock(fd):
                    if time.monotonic() >= deadline:
                        raise StoreError(
                            "import: another process's batch held the import lock too long; retry"
                        )
                    time.sleep(pause)
                    pause = min(pause * 2, _POLL_S[1])
            _claim(fd, "import batch of switch run")
        except OSError as exc:
            self.close()
            raise StoreError(f"import lock: {self.path}: {exc.strerror or exc}") from exc

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
