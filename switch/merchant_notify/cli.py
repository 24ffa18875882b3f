"""``python -m switch.merchant_notify``: configure callbacks, inspect events, run a worker.

    set-callback --state-dir D MERCHANT_ID URL [--secret-file F] [--allow-http]
        Set (or replace) the merchant's callback; without --secret-file a new secret is made
        and printed once (give it to the merchant). The secret is stored sealed. A running
        switch notices within 5 seconds.
    enable|disable --state-dir D MERCHANT_ID
    events --state-dir D [--merchant M] [--limit N]      newest first, no bodies
    retry-failed --state-dir D MERCHANT_ID               failed events due again
    payment --state-dir D PAY_ID                         the journal txn id behind a pay_ id
    purge --state-dir D [--days N]                       delete delivered events older than N days
    worker --state-dir D                                 deliver until SIGINT/SIGTERM

Works beside a running ``switch run`` (a connection of its own; ``--store`` or ``SWITCH_STORE``
for a PostgreSQL store, as ``switch run --store``). Exit 0 ok, 1 refused
(unknown merchant, no callback, unusable store), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from switch.merchant_notify.outboxes import open_outbox
from switch.merchant_notify.secrets_seal import CallbackSeal
from switch.merchant_notify.signing import new_secret
from switch.merchant_notify.sql_outbox import SqlMerchantOutbox
from switch.merchant_notify.worker import MerchantNotifyWorker
from switch.store import store_arg
from switch.store.api import StoreError

MIN_SECRET = 16
MAX_URL = 2000


class UsageError(ValueError):
    """A bad argument: exit 2 with the message."""


def check_url(url: str, allow_http: bool) -> str:
    """The callback URL if acceptable: http(s), a host, no user:password, https unless the
    host is a loopback address (a test receiver) or ``allow_http``."""
    if len(url) > MAX_URL or not url.isprintable() or " " in url:
        raise UsageError(f"URL: at most {MAX_URL} printable characters, no spaces")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("URL: must be http(s)://host[:port]/path")
    if parts.username or parts.password:
        raise UsageError("URL: must not carry credentials (the signature authenticates)")
    try:
        _ = parts.port
    except ValueError:
        raise UsageError("URL: bad port") from None
    if parts.scheme == "http" and not allow_http and not _loopback(parts.hostname):
        raise UsageError("URL: https required (plain http only to loopback, or --allow-http)")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_secret(secret: str) -> str:
    if len(secret) < MIN_SECRET or not secret.isprintable() or not secret.isascii():
        raise UsageError(f"secret: at least {MIN_SECRET} printable ASCII characters")
    return secret


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m switch.merchant_notify",
        description="Signed HTTP notifications to merchants: callbacks, events, worker.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=text, description=text)
        c.add_argument("--state-dir", type=Path, required=True, help="the switch's state dir")
        c.add_argument(
            "--store",
            type=store_arg,
            help="the switch's store if not state_dir/switch.db: postgresql://user@host/db "
            "or a SQLite file (default: SWITCH_STORE, as switch run --store sets it)",
        )
        return c

    c = cmd("set-callback", "set a merchant's callback URL and notification secret")
    c.add_argument("merchant_id", help="the merchant's id, e.g. M-ECOM-001")
    c.add_argument("url", help="where events are POSTed (https; http only to loopback)")
    c.add_argument("--secret-file", type=Path, help="read the secret (first line) from a file")
    c.add_argument("--allow-http", action="store_true", help="accept plain http to any host")
    for name, text in (("enable", "resume notifications"), ("disable", "pause notifications")):
        cmd(name, text).add_argument("merchant_id", help="the merchant's id")
    c = cmd("events", "list recent events (no bodies)")
    c.add_argument("--merchant", help="only this merchant's")
    c.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    cmd("retry-failed", "make a merchant's failed events due again").add_argument(
        "merchant_id", help="the merchant's id"
    )
    cmd("worker", "deliver events until SIGINT/SIGTERM")
    cmd("purge", "delete delivered events older than --days").add_argument(
        "--days", type=int, default=30, help="keep delivered events this many days (default 30)"
    )
    cmd("payment", "the journal id behind a merchant's pay_ id").add_argument(
        "payment_id", help="the id the merchant quotes, pay_ + 32 hex characters"
    )
    return p


def _set_callback(outbox: SqlMerchantOutbox, args: argparse.Namespace) -> int:
    url = check_url(args.url, args.allow_http)
    if not outbox.merchant_exists(args.merchant_id):
        print(f"merchant_id: no merchant {args.merchant_id!r}", file=sys.stderr)
        return 1
    if args.secret_file is not None:
        lines = args.secret_file.read_text("utf-8").splitlines()
        secret = check_secret(lines[0].strip() if lines else "")
        shown = "(from the file)"
    else:
        secret = shown = new_secret()
    sealed = CallbackSeal.for_state_dir(args.state_dir).seal(args.merchant_id, url, secret)
    outbox.set_callback(args.merchant_id, url, sealed, time.time())
    print(f"callback of {args.merchant_id}: {url}")
    print(f"secret: {shown}")
    return 0


async def _worker(state_dir: Path, store: str | None) -> int:
    outbox = open_outbox(state_dir, store)
    worker = MerchantNotifyWorker(outbox, CallbackSeal.for_state_dir(state_dir))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"merchant notification worker on {outbox.path}", flush=True)
    try:
        await worker.run(stop)
    finally:
        await worker.close()
        outbox.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command == "worker":
            return asyncio.run(_worker(args.state_dir, args.store))
        with open_outbox(args.state_dir, args.store) as outbox:
            if args.command == "set-callback":
                return _set_callback(outbox, args)
            if args.command in ("enable", "disable"):
                if not outbox.set_enabled(args.merchant_id, args.command == "enable", time.time()):
                    print(f"merchant_id: {args.merchant_id!r} has no callback", file=sys.stderr)
                    return 1
                print(f"callback of {args.merchant_id}: {args.command}d")
                return 0
            if args.command == "purge":
                if args.days < 0:
                    raise UsageError("--days: must not be negative")
                n = outbox.purge_delivered(time.time() - args.days * 86400.0)
                print(f"{n} delivered event(s) older than {args.days} day(s) deleted")
                return 0
            if args.command == "payment":
                found = outbox.payment(args.payment_id)
                if found is None:
                    print(f"payment_id: no payment {args.payment_id[:40]!r}", file=sys.stderr)
                    return 1
                txn_id, merchant_id, reference, metadata = found
                print(f"txn_id: {txn_id}\nmerchant_id: {merchant_id}")
                print(f"order_reference: {reference}\nmetadata: {metadata}")
                return 0
            if args.command == "retry-failed":
                n = outbox.retry_failed(args.merchant_id)
                print(f"{n} failed event(s) of {args.merchant_id} due again")
                return 0
            for row in outbox.events(args.merchant, max(1, args.limit)):
                print("\t".join("" if v is None else str(v) for v in row))
            return 0
    except UsageError as exc:
        print(f"python -m switch.merchant_notify {args.command}: {exc}", file=sys.stderr)
        return 2
    except (StoreError, OSError, ValueError) as exc:
        print(f"python -m switch.merchant_notify {args.command}: {exc}", file=sys.stderr)
        return 1
