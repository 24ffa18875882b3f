"""Closing a link's tasks survives the cancellation Python 3.11's ``wait_for`` can drop.

A ``switch run --workers 2`` child with a remote issuer once never stopped: its link's echo
loop (``asyncio.wait_for`` on each echo's answer) was cancelled in the loop turn the answer
arrived, ``wait_for`` returned the answer instead of raising (gh-86296), and the loop went
on echoing while ``close`` awaited it. ``cancel_and_wait`` cancels again until the task ends.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from switch.tasks import cancel_and_wait


def _looping_on_wait_for(
    loop: asyncio.AbstractEventLoop, pending: list[asyncio.Future[int]]
) -> asyncio.Task[None]:
    async def looping() -> None:
        while True:  # like an echo loop: one answer awaited with a time-out after another
            answer: asyncio.Future[int] = loop.create_future()
            pending.append(answer)
            await asyncio.wait_for(answer, 30)

    return loop.create_task(looping())


def test_a_cancellation_dropped_by_wait_for_is_repeated_until_the_task_ends() -> None:
    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[int]] = []
        task = _looping_on_wait_for(loop, pending)
        while not pending:
            await asyncio.sleep(0)
        pending[-1].set_result(1)  # the answer arrives ...
        task.cancel()  # ... in the same loop turn as the cancellation
        await asyncio.wait_for(cancel_and_wait(task), 20)
        return task.cancelled()

    assert uvloop.run(scenario())


def test_the_race_is_real_a_single_cancel_can_be_lost() -> None:
    """The reason for the helper, shown: after one ``cancel`` in that turn the task still
    runs (on this Python; the test accepts an interpreter that fixed it)."""

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[int]] = []
        task = _looping_on_wait_for(loop, pending)
        while not pending:
            await asyncio.sleep(0)
        pending[-1].set_result(1)
        task.cancel()
        while len(pending) < 2 and not task.done():
            await asyncio.sleep(0)  # the task either ends (cancelled) or loops once more
        lost = not task.done()
        await cancel_and_wait(task)
        return lost

    lost = uvloop.run(scenario())
    if sys.version_info < (3, 12):
        assert lost
