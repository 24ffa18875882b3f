"""Ending asyncio tasks for good: one place for what Python 3.11's cancellation gets wrong."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for its end, cancelling it again while it still runs.

    Why again: Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives in the
    loop turn its inner future completes (gh-86296): a link's echo answered at the instant
    the switch stops returned normally, and the echo loop ran on, so ``close`` waited forever
    (seen as a ``switch run --workers`` child that never stopped). A task that ends with an
    exception other than the cancellation re-raises it here, as awaiting it would."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError):
        await task
