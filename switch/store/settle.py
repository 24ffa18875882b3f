"""The group commit's queue and the settling of its batches, once for both store backends.

``SqliteStore`` and ``PostgresStore`` commit units in batches and, whatever the engine,
answer each unit's waiter the same way: the batch's error, else durable, or a ``Conflict``
when its guards refused it; each unit's ``on_settled`` runs first, exactly once. Units are
queued the same way too (``GroupCommitQueue``): only how a batch is written differs.
"""

from __future__ import annotations

import asyncio
import logging

from switch.store.api import Changes, Conflict, StoreError

log = logging.getLogger("switch.store")  # the backends' own logger name, as before


def resolve_batch(
    batch: list[tuple[Changes, asyncio.Future[None]]],
    error: BaseException | None,
    written: list[Changes] | None = None,
) -> None:
    """Settle every unit of ``batch``: failed with ``error``, else durable if it is among
    ``written`` (all of them when None) and a ``Conflict`` if its guards refused it."""
    failure = None if error is None else StoreError(f"commit failed: {error}")
    kept = None
    if failure is None and written is not None and len(written) < len(batch):
        kept = {id(c) for c in written}
    for changes, f in batch:
        outcome: BaseException | None = failure
        if kept is not None and id(changes) not in kept:
            outcome = Conflict("a row the unit was decided on changed")
        settled = changes.on_settled
        if settled is not None:
            changes.on_settled = None  # it usually closes over its owner: break the cycle
            try:
                settled(outcome)
            except Exception:  # one unit's bookkeeping must not starve the others
                log.exception("on_settled callback failed")
        if f.done():  # its waiter was cancelled: the unit was committed all the same
            continue
        if outcome is None:
            f.set_result(None)
        else:
            f.set_exception(outcome)


class GroupCommitQueue:
    """``commit``/``submit`` of both backends: a unit joins the pending batch and one flush
    is scheduled after every task runnable now has queued its unit. A backend sets the
    state below in its ``__init__`` and writes batches in its ``_flush``."""

    _loop: asyncio.AbstractEventLoop | None
    _pending: list[tuple[Changes, asyncio.Future[None]]]
    _flush_scheduled: bool
    _committing: bool
    _failed: BaseException | None

    def _flush(self) -> None:
        """Take the pending batch and write it (each backend defines its own)."""
        raise NotImplementedError

    async def commit(self, changes: Changes) -> None:
        await self.submit(changes)

    def submit(self, changes: Changes) -> asyncio.Future[None]:
        if self._failed is not None:
            raise StoreError(f"store is halted after a failed commit: {self._failed}")
        loop = self._loop
        if loop is None:
            raise StoreError("store is not open")
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((changes, fut))
        if not self._committing and not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)  # after every task runnable now has queued its unit
        return fut
