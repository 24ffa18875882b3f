"""Merchant notifications inside ``switch run`` (``--merchant-notify inline|off``).

``inline`` (default): the recorder is attached to the core (events commit with payments) and a
``MerchantNotifyWorker`` task delivers them from this process. ``off``: events are still
recorded; deliver them with ``python -m switch.merchant_notify worker --state-dir DIR`` (one or
several such processes: claims are leased). The worker reads the outbox on a connection of its
own to the switch's database (SQLite or PostgreSQL, ``outboxes.open_outbox``) from an executor
thread, so it never blocks the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from switch.core.service import SwitchCore
from switch.merchant_notify.outboxes import open_outbox
from switch.merchant_notify.recorder import EventRecorder, ensure_recorder
from switch.merchant_notify.secrets_seal import CallbackSeal
from switch.merchant_notify.sql_outbox import SqlMerchantOutbox
from switch.store.sqlite import SqliteStore

if TYPE_CHECKING:  # aiohttp loads only when the worker starts
    from switch.merchant_notify.worker import DeliveryPolicy, MerchantNotifyWorker

log = logging.getLogger(__name__)
MODES = ("inline", "off")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``switch run --merchant-notify``."""
    parser.add_argument(
        "--merchant-notify",
        choices=MODES,
        default="inline",
        help="signed HTTP notifications to merchants with a callback (python -m "
        "switch.merchant_notify set-callback): delivered by a task in this process (default), "
        "or off (recorded; deliver with `python -m switch.merchant_notify worker`)",
    )


@dataclass
class MerchantNotify:
    recorder: EventRecorder
    worker: MerchantNotifyWorker | None
    outbox: SqlMerchantOutbox | None
    task: asyncio.Task[None] | None
    stop_event: asyncio.Event
    banner: str

    async def stop(self) -> None:
        """Stop delivering (a batch in flight finishes and is marked), close the outbox."""
        self.stop_event.set()
        if self.task is not None:
            await self.task
        if self.worker is not None:
            await self.worker.close()
        if self.outbox is not None:
            self.outbox.close()


async def start_merchant_notify(
    core: SwitchCore,
    state_dir: Path,
    mode: str = "inline",
    *,
    durable: bool = True,
    policy: DeliveryPolicy | None = None,
) -> MerchantNotify:
    """Attach the recorder and, ``inline``, start the delivery worker on ``state_dir``."""
    if mode not in MODES:
        raise ValueError(f"--merchant-notify {mode!r}: expected one of {', '.join(MODES)}")
    recorder = ensure_recorder(core)
    stop = asyncio.Event()
    if mode == "off":
        return MerchantNotify(
            recorder, None, None, None, stop,
            "recorded; deliver with `python -m switch.merchant_notify worker`",
        )  # fmt: skip
    from switch.merchant_notify.worker import MerchantNotifyWorker

    store = core.store  # the worker's own connection to the same database
    spec = str(store.path) if isinstance(store, SqliteStore) else store.url
    outbox = open_outbox(Path(state_dir), spec, durable=durable)
    worker = MerchantNotifyWorker(
        outbox, CallbackSeal.for_state_dir(state_dir), policy=policy, clock=core.now
    )
    task = asyncio.create_task(worker.run(stop), name="merchant-notify")
    return MerchantNotify(recorder, worker, outbox, task, stop, "delivered inline")
