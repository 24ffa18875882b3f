"""The import's first stage -- reading the file and the checks that need no look-up -- in a
child process, so that it runs on the other core while this process writes.

Why a process: reading, parsing and hashing a card costs about as much Python as looking
it up and writing it, and two threads of one process share one GIL, so the thread that
checked batch N+1 while the other wrote batch N ran mostly in turn with it (measured: the
two-thread import was no faster than one thread). The child reads from the offset the
import resumes at and sends each checked batch -- (line, record, PAN hash) triples and the
rejects -- through a bounded queue (at most ``QUEUE_BATCHES`` waiting: memory stays
bounded), in file order; this process looks up, writes and commits each batch in turn.

The child holds the PAN key only to hash (it writes nothing) and ignores SIGINT: a Ctrl-C
goes to the import, which stops the child; an import killed outright leaves a child that
notices within a second (its parent changed) and exits. A ``FormatError`` (bad header) or any other
failure in the child is raised again here, before or between batches, never inside one.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from switch.cardbase.importer import _batches, _Checked, _records, parse_accounts, parse_cards
from switch.config import SwitchConfig
from switch.core.hmac_sha256 import HmacSha256

QUEUE_BATCHES = 2


def _produce(
    path: Path,
    fmt: str,
    kind: str,
    start: tuple[int, int],
    batch_size: int,
    config: SwitchConfig,
    pan_key: bytes,
    out: Any,
) -> None:
    """The child: every batch of the file from ``start`` (offset, line), checked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def put(item: tuple[str, object, object]) -> None:
        while True:  # a parent killed outright (SIGKILL) must not leave this one blocked
            try:
                out.put(item, timeout=1.0)
                return
            except queue.Full:
                if os.getppid() != parent:
                    raise SystemExit(1) from None

    try:
        digest = HmacSha256(pan_key).digest
        with path.open("rb") as fh:
            for batch in _batches(_records(fh, fmt, kind, *start), batch_size):
                last = batch[-1]
                checked: _Checked
                if kind == "cards":
                    checked = parse_cards(batch, config, lambda pan: digest(pan.encode()))
                else:
                    checked = parse_accounts(batch)
                out.put(("batch", (last.end_offset, last.end_line), checked))
        out.put(("end", None, None))
    except BaseException as exc:
        out.put(("error", exc, None))


def checked_in_child(
    path: Path,
    fmt: str,
    kind: str,
    start: tuple[int, int],
    batch_size: int,
    config: SwitchConfig,
    pan_key: bytes,
) -> Iterator[tuple[tuple[int, int], _Checked]]:
    """((end offset, end line), checked batch) for each batch, from a child process."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that has threads
    q: Any = ctx.Queue(maxsize=QUEUE_BATCHES)
    child = ctx.Process(
        target=_produce,
        args=(path, fmt, kind, start, batch_size, config, pan_key, q),
        name="switch-import-reader",
        daemon=True,
    )
    child.start()
    try:
        while True:
            try:
                what, a, b = q.get(timeout=1.0)
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError(
                        f"the import's reader process died (exit status {child.exitcode})"
                    ) from None
                continue
            if what == "end":
                return
            if what == "error":
                raise a
            yield a, b
    finally:
        if child.is_alive():
            child.terminate()
        child.join(10)
        q.close()
        q.cancel_join_thread()
