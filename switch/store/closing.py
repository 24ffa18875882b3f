"""``close`` and the context-manager protocol of a class holding one connection behind a lock.

The SMS alert outboxes (SQLite, PostgreSQL) and the merchant outbox share this shape: a
connection in ``_conn`` (None once closed) used under ``_lock``; closing takes the lock so a
call in flight on another thread finishes first, and closing twice is harmless.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Self


class LockedConnection:
    """Mixin: ``close()``, ``with obj:``; the class sets ``_conn`` and ``_lock``."""

    _conn: Any
    _lock: threading.Lock

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
