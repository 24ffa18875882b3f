"""The import's first stage -- reading the file and the checks that need no look-up -- in a
child process, so that it runs on the other core while this process writes.

Why a process: reading, parsing and hashing a card costs about as much Python as looking
it up and writing it, and two threads of one process share one GIL, so the thread that
checked batch N+1 while the other wrote batch N ran mostly in turn with it (measured: the
two-thread import was no faster than one thread). The child reads from the offset the
import resumes at and sends each checked batch -- (line, record, PAN hash) triples and the
rejects -- through a pipe, in file order, from the child's one thread (a
``multiprocessing.Queue`` would pickle on a feeder thread fighting the child's main thread
for the GIL); a full pipe blocks the child, so it is at most a batch or two ahead (memory
stays bounded). This process looks up, writes and commits each batch in turn.

The child holds the PAN key only to hash (it writes nothing) and ignores SIGINT: a Ctrl-C
goes to the import, which stops the child; an import killed outright closes its end of
the pipe, and the child's next send fails and ends it. A ``FormatError`` (bad header) or any other
failure in the child is raised again here, before or between batches, never inside one.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switch.cardbase.importer import (
    Reject,
    _Accounts,
    _batches,
    _Checked,
    _records,
    parse_accounts,
    parse_cards,
)
from switch.cardbase.records import AccountRecord, CardRecord
from switch.config import SwitchConfig
from switch.core.domain import CardStatus
from switch.core.hmac_sha256 import HmacSha256
from switch.store.sqlite_cardbase import SqliteCardBase, StoredAccount


@dataclass(frozen=True, slots=True)
class ReadJob:
    """What the child reads and checks: ``kind`` records of ``path`` (``fmt``) from
    ``start`` (offset, line) in batches of ``batch_size``, PANs hashed with ``pan_key``, the
    cards' accounts looked up in the store ``db_path`` (read-only)."""

    path: Path
    fmt: str
    kind: str
    start: tuple[int, int]
    batch_size: int
    config: SwitchConfig
    pan_key: bytes
    db_path: Path


def _produce(job: ReadJob, out: Any) -> None:
    """The child: every batch of the file from ``job.start``, checked, with the accounts its
    cards name (read-only: a cards import creates no account)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def put(item: tuple[str, object, object]) -> None:
        # on this thread (a queue's feeder thread would fight this one for the GIL); blocks
        # while the pipe is full: the parent reads as it writes. A parent gone (even by
        # SIGKILL) closes its end: the send fails and this process ends.
        try:
            out.send(item)
        except OSError:
            raise SystemExit(1) from None

    db = None
    kind, config = job.kind, job.config
    try:
        digest = HmacSha256(job.pan_key).digest
        if kind == "cards":
            db = SqliteCardBase(job.db_path, readonly=True)
        with job.path.open("rb") as fh:
            for batch in _batches(_records(fh, job.fmt, kind, *job.start), job.batch_size):
                last = batch[-1]
                checked: _Checked
                accounts = None
                if db is not None:
                    cards = parse_cards(batch, config, lambda pan: digest(pan.encode()))
                    accounts = db.accounts_by_number(sorted({r.account for _, r, _ in cards[0]}))
                    checked = cards
                else:
                    checked = parse_accounts(batch)
                put(("batch", (last.end_offset, last.end_line), _to_wire(kind, checked, accounts)))
        put(("end", None, None))
    except SystemExit:
        raise
    except BaseException as exc:  # handed to the parent, which raises it
        put(("error", exc, None))
    finally:
        if db is not None:
            db.close()


# Plain tuples between the processes: pickling a NamedTuple goes through its class (3.7 us a
# card record to dump, 1.8 to load, measured), a tuple of strings does not (1.2 and 1.1);
# the records are built again here (0.65 us).
_STATUS = {s.value: s for s in CardStatus}


def _to_wire(kind: str, checked: _Checked, accounts: _Accounts | None) -> tuple[Any, ...]:
    parsed: list[Any] = checked[0]
    wire: list[tuple[Any, ...]]
    if kind == "cards":  # the status (an enum) as its value
        wire = [(line, (*rec[:-2], rec[-2].value, rec[-1]), h) for line, rec, h in parsed]
    else:
        wire = [(line, tuple(rec)) for line, rec in parsed]
    plain = None if accounts is None else {n: tuple(a) for n, a in accounts.items()}
    return wire, checked[1], plain


def _from_wire(
    kind: str, wire: list[Any], rejects: list[Reject], accounts: dict[str, Any] | None
) -> tuple[_Checked, _Accounts | None]:
    parsed: list[Any]
    if kind == "cards":
        card, status = CardRecord._make, _STATUS
        parsed = [(line, card((*r[:-2], status[r[-2]], r[-1])), h) for line, r, h in wire]
    else:
        account = AccountRecord._make
        parsed = [(line, account(r)) for line, r in wire]
    if accounts is None:
        return (parsed, rejects), None
    stored = StoredAccount._make
    return (parsed, rejects), {n: stored(a) for n, a in accounts.items()}


def checked_in_child(job: ReadJob) -> Iterator[tuple[tuple[int, int], _Checked, _Accounts | None]]:
    """((end offset, end line), checked batch, its cards' accounts) for each batch, from a
    child process."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that has threads
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_produce,
        args=(job, send),
        name="switch-import-reader",
        daemon=True,
    )
    child.start()
    send.close()  # the child's end: EOF here once the child is gone
    try:
        while True:
            try:
                what, a, b = receive.recv()
            except EOFError:
                raise RuntimeError(
                    f"the import's reader process died (exit status {child.exitcode})"
                ) from None
            if what == "end":
                return
            if what == "error":
                raise a
            checked, accounts = _from_wire(job.kind, *b)
            yield a, checked, accounts
    finally:
        receive.close()
        if child.is_alive():
            child.terminate()
        child.join(10)
