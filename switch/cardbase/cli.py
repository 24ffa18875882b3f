"""``switch import cards|accounts FILE``: load a card management system's export.

Exit status: 0 every record loaded (or updated), 1 some records rejected (each on stderr as
``FILE:LINE: reason``), 2 nothing could be done (usage, unreadable file or header, bad keys
file, a running switch on the state directory and no operator credentials, another import
in progress on the state directory), 3 the running switch refused a call, 4 it could not be
reached.

With the switch stopped, the import takes the state directory's lock (``switch.lock``), as
``switch run`` does, and writes the store on a connection of its own. While a ``switch
run`` holds the lock, the import goes through that switch instead
(``switch.cardbase.via_switch``): a running switch keeps the cards and accounts it has used
in memory and writes its copies back with every authorization, so rows changed under it
would be overwritten; it applies the records itself.

One import at a time per state directory (``switch.cardbase.file_locks.ImportLock``, held
either way): a second one is refused, naming the import in progress, rather than mixed in.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from switch.cardbase.file_locks import ImportInProgressError, ImportLock
from switch.cardbase.importer import (
    DEFAULT_BATCH,
    FORMATS,
    Importer,
    IssuerKeys,
    Outcome,
    Reject,
    file_sha256,
    format_of,
)
from switch.cardbase.keys import KeysError, check_values, load_keys
from switch.cardbase.reader import FormatError
from switch.cardbase.via_switch import LIVE_BATCH, import_via_switch
from switch.config import ConfigError, SwitchConfig, load_config
from switch.operator.cli_common import connection_options
from switch.store import store_arg

USAGE_ERROR = 2
INTERRUPTED = 130  # as a shell reports a SIGINT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", required=True, metavar="cards|accounts")
    for what, help_text in (
        ("cards", "cards: PAN, expiry, service code, product, account, PVV or IBM offset..."),
        ("accounts", "CCP accounts: account number, currency, balance, holder, phone"),
    ):
        p = sub.add_parser(what, help=help_text, description=help_text)
        p.add_argument("file", type=Path, metavar="FILE", help="CSV (header row) or JSON Lines")
        p.add_argument("--format", choices=FORMATS, default=None,
                       help="default: from the extension (.csv, .jsonl / .ndjson)")  # fmt: skip
        p.add_argument(
            "--state-dir",
            type=Path,
            default=Path("./var"),
            help="the switch's state directory (default: %(default)s)",
        )
        p.add_argument(  # PG (issue 13)
            "--store", type=store_arg, default=None, metavar="URL|PATH",
            help="the store switch run --store names (default: SWITCH_STORE, else "
                 "STATE_DIR/switch.db)",
        )  # fmt: skip
        p.add_argument(
            "--update",
            action="store_true",
            help="a record whose PAN / account exists updates it (else: rejected)",
        )
        p.add_argument("--batch-size", type=_positive, default=None,
                       help=f"records per transaction (default {DEFAULT_BATCH}; through a "
                            f"running switch {LIVE_BATCH})")  # fmt: skip
        p.add_argument("--no-fsync", action="store_true", help=argparse.SUPPRESS)
        if what == "cards":
            p.add_argument(
                "--keys",
                type=Path,
                required=True,
                help="TOML file: pvk, cvk, mk_ac (cryptograms under the LMK)",
            )
            p.add_argument("--config", type=Path, default=None, help="card products TOML")
            p.add_argument(
                "--hsm",
                default=None,
                help="tcp://host:port to check the keys (default: state_dir/lmk.json)",
            )
        # while a switch runs on the state directory the import goes through its operator API
        connection_options(p, timeout=120.0)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _fail(message: str) -> int:
    print(f"switch import: {message}", file=sys.stderr, flush=True)
    return USAGE_ERROR


def main(args: argparse.Namespace) -> int:
    from switch.core.service import CoreError, _load_or_create_secret, _lock_state_dir

    path: Path = args.file
    try:
        fmt = format_of(path, args.format)
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except ValueError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"FILE: cannot read {path}: {exc.strerror or exc}")
    config = None
    keys = None
    if args.what == "cards":
        try:
            config = load_config(args.config) if args.config else load_config()
            keys = load_keys(args.keys)
        except (ConfigError, KeysError, OSError) as exc:
            return _fail(str(exc))
    state_dir: Path = args.state_dir
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds pan.key, the LMK
    try:
        # before switch.lock: a second import is told so, not taken for a running switch
        with ImportLock(state_dir, f"{args.what} {path}"):
            try:
                lock = _lock_state_dir(state_dir)
            except CoreError:  # a switch runs on it: it applies the records itself
                return import_via_switch(args, path, fmt, size, keys, file_sha256(path))
            try:
                pan_key = _load_or_create_secret(state_dir / "pan.key")
                return _import_locked(args, path, fmt, size, state_dir, config, keys, pan_key)
            finally:
                os.close(lock)
    except ImportInProgressError as exc:
        return _fail(
            f"state_dir: {state_dir}: another import is in progress: {exc}; nothing done, "
            "run this one once it has finished"
        )


def _import_locked(
    args: argparse.Namespace,
    path: Path,
    fmt: str,
    size: int,
    state_dir: Path,
    config: SwitchConfig | None,
    keys: IssuerKeys | None,
    pan_key: bytes,
) -> int:
    from switch.store import ENV_STORE, is_postgres, open_store
    from switch.store.sqlite_cardbase import SqliteCardBase

    durable = not args.no_fsync
    spec = args.store or os.environ.get(ENV_STORE)

    async def migrate() -> None:  # the schema is the store's: let it apply its migrations
        store = open_store(spec, state_dir, durable=durable)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    if keys is not None:
        try:
            kcv = asyncio.run(_check_keys(args.hsm, state_dir, keys))
        except KeysError as exc:
            return _fail(str(exc))
        print("keys: " + ", ".join(f"{k.upper()} KCV {v}" for k, v in kcv.items()), flush=True)
    if is_postgres(spec):  # PG: the same importer over a PostgreSQL connection
        from switch.store.postgres_cardbase import PostgresCardBase

        db: SqliteCardBase = PostgresCardBase(str(spec), durable=durable)
    else:
        db = SqliteCardBase(Path(spec) if spec else state_dir / "switch.db", durable=durable)
    try:
        importer = Importer(
            db, kind=args.what, update=args.update, config=config or load_config(),
            pan_key=pan_key, keys=keys, batch_size=args.batch_size or DEFAULT_BATCH,
        )  # fmt: skip
        started = time.monotonic()
        digest = file_sha256(path)
        before = db.progress(importer.progress_kind, digest)
        initial = 0 if before is None else before.next_offset
        with _Bar(size, initial, sys.stderr) as bar:
            try:
                out = importer.run(
                    path,
                    fmt,
                    on_reject=lambda r: bar.write(_reject_line(path, r)),
                    on_batch=bar.update_to,
                    digest=digest,
                )
            except FormatError as exc:
                return _fail(f"{path}: {exc}")
            except KeyboardInterrupt:  # the batch being written was let finish (or fail) whole
                print("switch import: interrupted; the batches committed so far stay, the same "
                      "command resumes after them", file=sys.stderr, flush=True)  # fmt: skip
                return INTERRUPTED
        return _summary(args.what, path, out, time.monotonic() - started)
    finally:
        db.close()


def _reject_line(path: Path, r: Reject) -> str:
    return f"{path}:{r.line}: {r.reason}"


def _summary(what: str, path: Path, out: Outcome, elapsed: float) -> int:
    total = out.total
    assert total is not None
    counts = f"{total.loaded} loaded, {total.updated} updated, {total.rejected} rejected"
    if out.already_done:
        print(f"{what}: {path}: already imported ({counts}); nothing to do", flush=True)
    else:
        n = out.loaded + out.updated + out.rejected
        rate = f", {n / elapsed:,.0f} records/s" if elapsed > 0 and n else ""
        line = f"{what}: {path}: {counts} in {elapsed:.1f} s{rate}"
        if out.resumed_at_line:
            line += (
                f" (resumed after line {out.resumed_at_line}; this run: {out.loaded} loaded, "
                f"{out.updated} updated, {out.rejected} rejected)"
            )
        print(line, flush=True)
    return 1 if total.rejected else 0


async def _check_keys(hsm_url: str | None, state_dir: Path, keys: IssuerKeys) -> dict[str, str]:
    from urllib.parse import urlsplit

    from switch.hsm.client import HsmClient

    hsm: HsmClient
    if hsm_url is not None:
        parts = urlsplit(hsm_url)
        if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
            raise KeysError(f"--hsm {hsm_url!r}: expected tcp://host:port")
        from switch.hsm.tcp_client import TcpHsmClient

        hsm = TcpHsmClient(parts.hostname, parts.port)
    else:
        from switch.hsm.inprocess import InProcessHsm
        from switch.hsm.lmk import Lmk, LmkError

        lmk_path = state_dir / "lmk.json"
        if not lmk_path.exists():
            raise KeysError(f"--hsm: no {lmk_path}; give the HSM that holds the keys' LMK")
        try:
            hsm = InProcessHsm(Lmk.load(lmk_path))
        except LmkError as exc:
            raise KeysError(str(exc)) from None
    try:
        return await check_values(hsm, keys)
    except OSError as exc:
        raise KeysError(f"--hsm: cannot reach the HSM: {exc}") from None
    finally:
        await hsm.close()


class _Bar:
    """A tqdm bar over the file's bytes on a terminal; nothing when ``stream`` is not one."""

    def __init__(self, size: int, initial: int, stream: TextIO) -> None:
        from tqdm import tqdm

        self._stream = stream
        self._tqdm = tqdm(
            total=size, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
            file=stream, disable=not stream.isatty(), dynamic_ncols=True, leave=True,
        )  # fmt: skip

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tqdm.close()

    def update_to(self, offset: int, ok: int, rejected: int) -> None:
        """After a committed batch: the bytes read so far, and the records' fate."""
        self._tqdm.set_postfix_str(f"{ok:,} ok, {rejected:,} rejected", refresh=False)
        self._tqdm.update(offset - self._tqdm.n)

    def write(self, line: str) -> None:
        if self._tqdm.disable:
            print(line, file=self._stream, flush=True)
        else:
            self._tqdm.write(line, file=self._stream)
