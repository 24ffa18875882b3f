"""``switch import cards|accounts FILE`` while a ``switch run`` holds the state directory.

The import cannot write the store itself then (the running switch holds the live cards and
accounts and is the store's one writer), so it becomes a client of the operator API: it
reads the file here, a batch of records at a time, and sends each batch to
``Operator.ImportCards|ImportAccounts`` (``switch.cardbase.live`` applies it in the switch).
The operator's credentials are those of ``switch card`` (``SWITCH_OPERATOR_ID`` /
``SWITCH_OPERATOR_KEY``, target ``SWITCH_GRPC``); every batch is an audited operator action.

What the command prints is the offline import's: the keys' check values (computed by the
switch's HSM), one ``FILE:LINE: reason`` line per rejected record, the progress bar, the
summary. Interrupted (Ctrl-C, a lost connection, a deadline), the batches the switch
answered stay; the same command resumes after them, and a batch whose answer was lost is
recognised by its offset and not applied twice.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from switch.api.tls_files import TlsFileError, client_tls
from switch.cardbase.importer import IssuerKeys, Outcome, Reject, _batches, _records
from switch.cardbase.live import MAX_BATCH
from switch.cardbase.reader import FormatError, RawRecord
from switch.exits import Exit
from switch.gen.switch.v1 import operator_pb2 as opb
from switch.operator.cli_common import credentials
from switch.operator.client import OperatorClient
from switch.store.sqlite_cardbase import Progress

#: Records per call by default: one batch is one unit of the switch's group commit, which
#: its authorizations wait behind, so it stays small (the offline import takes 10,000).
LIVE_BATCH = 1_000
INTERRUPTED = 130


def _fail(message: str, status: int = Exit.USAGE) -> int:
    print(f"switch import: {message}", file=sys.stderr, flush=True)
    return status


def _progress(p: opb.ImportProgress) -> Progress:
    return Progress(p.next_offset, p.next_line, p.loaded, p.updated, p.rejected, p.done, 0.0)


def _batch_pb(
    file: opb.ImportFile, start: int, batch: list[RawRecord], last: bool
) -> opb.ImportBatch:
    out = opb.ImportBatch(file=file, start_offset=start, last=last)
    if batch:
        out.end_offset, out.end_line = batch[-1].end_offset, batch[-1].end_line
    else:
        out.end_offset = start
    for r in batch:
        out.records.add(line=r.line, fields=r.fields, error=r.error)
    return out


def _lookahead(batches: Iterator[list[RawRecord]]) -> Iterator[tuple[list[RawRecord], bool]]:
    """Each batch with whether it is the file's last (an empty file: one empty last batch)."""
    current = next(batches, None)
    if current is None:
        yield [], True
        return
    for following in batches:
        yield current, False
        current = following
    yield current, True


def import_via_switch(
    args: argparse.Namespace,
    path: Path,
    fmt: str,
    size: int,
    keys: IssuerKeys | None,
    digest: str,
) -> int:
    """The whole command against the running switch; the exit status."""
    from switch.cardbase.cli import _Bar, _reject_line, _summary

    operator_id, key = credentials(args)
    if not operator_id or not key:
        return _fail(
            f"state_dir: {args.state_dir} is in use by a running switch: the import goes "
            "through it, with operator credentials (SWITCH_OPERATOR_ID/SWITCH_OPERATOR_KEY "
            "or --operator-id/--operator-key; `switch operator add NAME` makes a key)"
        )
    try:
        tls = client_tls(args.tls_ca, args.tls_cert, args.tls_key)
    except TlsFileError as e:
        return _fail(str(e))
    file = opb.ImportFile(file_sha256=digest, file_name=str(path), update=args.update)
    if keys is not None:
        file.pvk, file.cvk, file.mk_ac = keys.pvk, keys.cvk, keys.mk_ac
    kind: str = args.what
    size_limit = min(args.batch_size or LIVE_BATCH, MAX_BATCH)  # what the switch takes

    async def go() -> int:
        async with OperatorClient(
            args.target, operator_id, key, timeout=args.timeout, tls=tls
        ) as op:
            started = time.monotonic()
            before = await op.import_progress(kind, file)
            if before.key_check_values:
                kcv = before.key_check_values
                print("keys: " + ", ".join(f"{k.upper()} KCV {kcv[k]}" for k in
                                           ("pvk", "cvk", "mk_ac") if k in kcv),
                      flush=True)  # fmt: skip
            print(f"{kind}: {path}: through the running switch at {args.target}", flush=True)
            out = Outcome(digest, total=_progress(before))
            if before.done:
                out.already_done = True
                return _summary(kind, path, out, 0.0)
            out.resumed_at_line = before.next_line if before.next_offset else 0
            offset = before.next_offset
            with path.open("rb") as fh, _Bar(size, offset, sys.stderr) as bar:
                records = _records(fh, fmt, kind, before.next_offset, before.next_line)
                for batch, last in _lookahead(_batches(records, size_limit)):
                    res = await op.import_batch(kind, _batch_pb(file, offset, batch, last))
                    for r in res.rejects:
                        bar.write(_reject_line(path, Reject(r.line, r.reason)))
                    out.loaded += res.loaded
                    out.updated += res.updated
                    out.rejected += len(res.rejects)
                    out.total = _progress(res.total)
                    offset = res.total.next_offset
                    bar.update_to(offset, out.loaded + out.updated, out.rejected)
            return _summary(kind, path, out, time.monotonic() - started)

    try:
        return asyncio.run(go())
    except FormatError as exc:
        return _fail(f"{path}: {exc}")
    except grpc.aio.AioRpcError as e:
        code = e.code()
        status = (
            Exit.UNREACHABLE
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            else Exit.REFUSED
        )
        return _fail(
            f"{code.name}: {e.details()} (the batches answered so far stay; the same command "
            "resumes after them)",
            status,
        )
    except KeyboardInterrupt:
        return _fail(
            "interrupted; the batches the switch answered stay, the same command resumes "
            "after them",
            INTERRUPTED,
        )
