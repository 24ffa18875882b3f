"""``python -m switch.notify.service``: the SMS alert worker as a process of its own.

Why a process: in ``switch run`` the worker's CPU (claiming rows, rendering texts, the
transport) competed for the GIL with the event loop that answers ATMs -- measured ~75 us per
alert, 4,650 withdrawals/s with the worker in process against 6,560/s without it. Here it
reaches the outbox through its own SQLite connection (``SqliteOutbox``: no migrations, not
the switch's ``switch.lock``), so it runs beside a live switch; ``switch run`` starts it as a
child by default (``--sms-worker process``) and one can run it alone next to
``switch run --sms-worker off``.

The transport is built exactly as ``switch run`` builds it, from ``SWITCH_SMS``: console lines
go to this process's stdout (``switch run`` lets the child inherit its terminal). SIGTERM or
SIGINT finishes the batch in hand -- sent *and* marked -- then closes the transport and exits 0,
so a restart does not resend anything. ``--parent-pid`` makes the worker stop by itself when
that process is gone (even SIGKILLed): a supervised child never outlives its switch.

One-time codes stay sealed in the outbox; the worker opens them with the key of the state
directory (``pan.key``, see ``switch.notify.sealing``) only for a transport that delivers them.

Exit status: 0 stopped by a signal (or its parent went away), 1 cannot run (no database,
schema missing, no ``pan.key``, another worker holds the SQLite state directory's lock), 2 bad
option, ``SWITCH_SMS``
or ``SWITCH_SMS_SHOW_CODES``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from switch.digits import is_ascii_digits
from switch.notify.factory import show_codes_setting, transport_from_url
from switch.notify.sealing import AlertSeal
from switch.notify.transport import SmsTransport
from switch.notify.worker import AlertWorker
from switch.notify.worker_lock import WorkerLockError, acquire_worker_lock, release_worker_lock
from switch.observe.logs import (
    LOG_FORMATS,
    LOG_LEVELS,
    configure_logging,
    env_log_format,
    log_level,
)
from switch.store import ENV_STORE, is_postgres
from switch.store.api import StoreError
from switch.store.postgres_outbox import PostgresOutbox
from switch.store.sqlite_outbox import SqliteOutbox

PROG = "python -m switch.notify.service"
DB_NAME = "switch.db"  # the store file inside the state directory (as SwitchCore.open names it)
PARENT_CHECK_INTERVAL = 0.5

log = logging.getLogger("switch.notify.service")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _pid(text: str) -> int:
    if not is_ascii_digits(text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process id")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deliver the switch's SMS alerts from its outbox (transport: SWITCH_SMS).",
    )
    parser.add_argument(
        "--state-dir", type=Path, required=True, help="the switch's state directory"
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_seconds,
        default=1.0,
        metavar="S",
        help="seconds between polls of an empty outbox (default 1)",
    )
    parser.add_argument(
        "--parent-pid",
        type=_pid,
        default=None,
        metavar="PID",
        help="stop when this process (the supervising switch) is no longer our parent",
    )
    parser.add_argument(
        "--log-level",
        type=log_level,
        choices=LOG_LEVELS,
        default="INFO",
        help="the lowest level logged (default: INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=env_log_format(),
        help="text or JSON lines (default: SWITCH_LOG_FORMAT, set by switch run, else text)",
    )
    return parser


def command(
    state_dir: Path,
    *,
    poll_interval: float,
    parent_pid: int | None = None,
    log_level: str = "INFO",
) -> list[str]:
    """The argv that runs this service with the current interpreter (for supervisors)."""
    state = str(Path(state_dir).absolute())
    argv = [sys.executable, "-m", "switch.notify.service", "--state-dir", state]
    argv += ["--poll-interval", repr(poll_interval), "--log-level", log_level]
    if parent_pid is not None:
        argv += ["--parent-pid", str(parent_pid)]
    return argv


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once we were re-parented: the switch that started us has died."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("parent process %d is gone: stopping", parent_pid)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_INTERVAL)


async def serve(
    outbox: SqliteOutbox | PostgresOutbox,
    transport: SmsTransport,
    *,
    poll_interval: float,
    parent_pid: int | None = None,
    seal: AlertSeal | None = None,
) -> None:
    """Run the worker until SIGTERM/SIGINT (or the parent's death); then close the transport.
    ``seal`` opens sealed one-time codes for a transport that delivers them."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = AlertWorker(outbox, transport, poll_interval=poll_interval, seal=seal)
    watch = None if parent_pid is None else asyncio.create_task(_watch_parent(parent_pid, stop))
    try:
        await worker.run(stop)
    finally:
        stop.set()
        if watch is not None:
            await watch
        worker.close()
    log.info("stopped: %d SMS sent, %d failed attempts", worker.stats.sent, worker.stats.failed)


def _outbox(state_dir: Path) -> SqliteOutbox | PostgresOutbox:
    """The store ``switch run --store`` named (``SWITCH_STORE``), else the state directory's."""
    spec = os.environ.get(ENV_STORE)
    if is_postgres(spec):
        assert spec is not None
        return PostgresOutbox(spec)
    return SqliteOutbox(Path(spec) if spec else state_dir / DB_NAME)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(str(args.log_level), args.log_format)  # as switch run's own lines
    state_dir: Path = args.state_dir
    if args.parent_pid is not None and os.getppid() != args.parent_pid:
        print(f"{PROG}: --parent-pid {args.parent_pid}: not our parent; exiting", file=sys.stderr)
        return 0  # the supervisor died while starting us: nothing to serve for
    if not state_dir.is_dir():
        print(f"{PROG}: --state-dir {state_dir}: no such directory", file=sys.stderr)
        return 1
    with contextlib.ExitStack() as cleanup:
        try:
            outbox = _outbox(state_dir)
            cleanup.callback(outbox.close)
            if not isinstance(outbox, PostgresOutbox):  # PostgreSQL: leased claims, any number
                cleanup.callback(release_worker_lock, acquire_worker_lock(state_dir))
            seal = AlertSeal.for_state_dir(state_dir)
        except (StoreError, WorkerLockError, OSError, ValueError) as exc:
            print(f"{PROG}: --state-dir: {exc}", file=sys.stderr)
            return 1
        try:
            shows = show_codes_setting()
        except ValueError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        try:
            transport = transport_from_url(
                os.environ.get("SWITCH_SMS"), state_dir, show_codes=shows
            )
        except ValueError as exc:
            print(f"{PROG}: SWITCH_SMS: {exc}", file=sys.stderr)
            return 2
        log.info("delivering the SMS alerts of %s (pid %d)", outbox.path, os.getpid())
        uvloop.run(
            serve(
                outbox,
                transport,
                poll_interval=args.poll_interval,
                parent_pid=args.parent_pid,
                seal=seal,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
