"""``switch run``: the core, the ISO 8583 listener(s) and gRPC in one process; SMS beside it.

Wiring only -- every part is built elsewhere. On first start the state directory is created
with the SQLite store, a development LMK and the demo data (``SwitchCore.open``). The SMS
alert worker runs as a supervised child process by default (``--sms-worker process``: its
CPU no longer competes with the event loop answering ATMs), or in this process (``inline``),
or not at all (``off``: another worker delivers the outbox); see ``switch.notify.delivery``.
It prints alerts on the console by default (``SWITCH_SMS`` selects another transport) and the
child shares this terminal, so a newcomer sees the alert of a withdrawal here. SIGINT/SIGTERM
stop the listeners, let requests in flight answer, stop the worker, then close the store.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import grpc
import uvloop

from switch.api.server import start_grpc_server, transport
from switch.api.tls_files import server_tls
from switch.config import load_config
from switch.core.holds import EXPIRY_INTERVAL_S, expire_holds_every
from switch.core.interchange import check_acquirer_keys, load_acquirers
from switch.core.live_cache import DEFAULT_CAPACITY
from switch.core.service import CoreError, SwitchCore
from switch.digits import ascii_int, is_ascii_digits
from switch.gateway import options as gateway_options
from switch.gc_tuning import tune_gc_for_serving
from switch.hsm.client import HsmClient
from switch.iso8583.framing import Framing, LengthHeader
from switch.iso8583.remote import RemoteIssuers, load_remote_issuers, start_remote_issuers
from switch.iso8583.server import IsoListener, ListenerConfig, start_iso_server
from switch.merchant_notify import service as merchant_notify
from switch.notify.delivery import MODES, SmsDelivery, check_sms_setting, start_sms_delivery
from switch.notify.worker_lock import WorkerLockError
from switch.observe.endpoints import http_port, start_observe_server
from switch.observe.http import HttpServer
from switch.observe.logs import (
    ENV_LOG_FORMAT,
    LOG_FORMATS,
    LOG_LEVELS,
    configure_logging,
    log_level,
)
from switch.observe.state import Observed, Phase
from switch.operator.keys import operators_path
from switch.store import ENV_STORE, is_postgres, store_arg
from switch.store.api import StoreError
from switch.workers import supervise, worker_index

if TYPE_CHECKING:  # aiohttp loads only when the gateway starts
    from switch.gateway.server import Gateway

log = logging.getLogger("switch.app")

BANNER_HSM_DEV = (
    "HSM: in-process software emulator with a DEVELOPMENT LMK ({lmk}) -- test keys only, "
    "never real cards"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("./var"),
        help="store, keys and logs (default: ./var)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the listeners bind to")
    parser.add_argument(
        "--iso-port", type=ascii_int, default=8583, help="ISO 8583 listener port (default: 8583)"
    )
    parser.add_argument("--iso-spec", default="ascii87", help="ascii87, binary87 or a spec file")
    parser.add_argument(
        "--iso-listener",
        action="append",
        default=[],
        metavar="PORT:SPEC[:tpdu]",
        help="an extra acquirer listener, e.g. 8584:binary87 or 8585:binary87:tpdu",
    )
    parser.add_argument(
        "--grpc-port", type=ascii_int, default=50051, help="merchant gRPC API port (default: 50051)"
    )
    parser.add_argument(
        "--grpc-tls-cert",
        type=Path,
        default=None,
        metavar="PEM",
        help="serve gRPC over TLS with this certificate (chain); needs --grpc-tls-key",
    )
    parser.add_argument(
        "--grpc-tls-key", type=Path, default=None, metavar="PEM", help="its private key"
    )
    parser.add_argument(
        "--grpc-client-ca",
        type=Path,
        default=None,
        metavar="PEM",
        help="require gRPC clients to present a certificate signed by this CA (mutual TLS)",
    )
    parser.add_argument(
        "--http-port",
        type=http_port,
        default=8080,
        help="HTTP /healthz, /readyz and /metrics (0: a free port, -1: off)",
    )
    parser.add_argument(
        "--zmk",
        default="",
        help="zone master key under the LMK for 0800/101 key changes (default: refused)",
    )
    parser.add_argument(
        "--require-mac",
        action="store_true",
        help="refuse unsigned requests from terminals that have a MAC key",
    )
    parser.add_argument(
        "--hsm",
        default=None,
        help="tcp://host:port of a payShield-protocol HSM (default: in-process)",
    )
    parser.add_argument("--config", type=Path, default=None, help="card products TOML")
    parser.add_argument(
        "--remote-issuers",
        type=Path,
        default=None,
        metavar="TOML",
        help="[remote_issuers.<name>] tables: ISO 8583 links to other issuers (BIN routes); "
        "[acquirers.<id>] tables: zone keys of acquirers that route our BINs to us",
    )
    parser.add_argument(
        "--interchange",
        type=Path,
        default=None,
        metavar="TOML",
        help="the same kind of file as --remote-issuers (an alias; both may be given)",
    )
    parser.add_argument(
        "--no-fsync", action="store_true", help="do not fsync commits (benchmarks only)"
    )
    parser.add_argument(  # PG (issue 13): which store; the keys stay in --state-dir
        "--store",
        type=store_arg,
        default=None,
        metavar="URL|PATH",
        help="postgresql://user@host:port/db, or a SQLite file (default: STATE_DIR/switch.db)",
    )
    parser.add_argument(  # NODES (issue 13): N processes sharing the ports and the store
        "--workers",
        type=ascii_int,
        default=1,
        metavar="N",
        help="run N switch processes sharing the ISO 8583 and gRPC ports (SO_REUSEPORT) and "
        "the store, under one supervisor (default 1); the first also runs HTTP "
        "health/metrics, the gateway and (SQLite) the SMS worker; on PostgreSQL each runs one",
    )
    parser.add_argument(
        "--card-cache",
        type=ascii_int,
        default=DEFAULT_CAPACITY,
        metavar="N",
        help=f"cards and accounts kept in memory, each (least recently used first out; "
        f"default {DEFAULT_CAPACITY}); the rest is read from the store on use",
    )
    parser.add_argument(
        "--sms-worker",
        choices=MODES,
        default="process",
        help="SMS alert delivery: a supervised child process (default), inline in this "
        "process, or off (alerts stay pending for `python -m switch.notify.service`)",
    )
    parser.add_argument(
        "--log-level",
        type=log_level,
        choices=LOG_LEVELS,
        default="INFO",
        help="the lowest level logged, any case (default: INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="log lines as text or one JSON object each (ISO 8601 times with their offset); "
        "every transaction is one INFO line on switch.txn",
    )
    gateway_options.add_arguments(parser)  # --gateway-port, its TLS, session and tries
    merchant_notify.add_arguments(parser)  # --merchant-notify inline|off


def _listener(spec_text: str, args: argparse.Namespace) -> ListenerConfig:
    parts = spec_text.split(":")
    if len(parts) < 2 or not is_ascii_digits(parts[0]):
        raise SystemExit(f"--iso-listener {spec_text!r}: expected PORT:SPEC[:tpdu]")
    tpdu = len(parts) > 2 and parts[2] == "tpdu"
    return ListenerConfig(
        host=args.host,
        port=int(parts[0]),
        spec=parts[1],
        framing=Framing(LengthHeader.BINARY2, tpdu),
        require_mac=args.require_mac,
        zmk=args.zmk,
        reuse_port=worker_index() is not None,
    )


def _hsm_client(url: str | None) -> HsmClient | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise SystemExit(f"--hsm {url!r}: expected tcp://host:port")
    from switch.hsm.tcp_client import TcpHsmClient

    return TcpHsmClient(parts.hostname, parts.port)


async def serve(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    grpc_tls = server_tls(args.grpc_tls_cert, args.grpc_tls_key, args.grpc_client_ca)
    gateway_options.check(args)  # a bad --gateway-* option stops us before the store opens
    hsm = _hsm_client(args.hsm)
    config = load_config(args.config) if args.config else None
    links = list(dict.fromkeys(p for p in (args.remote_issuers, args.interchange) if p))
    remote_configs = [c for path in links for c in load_remote_issuers(path)]
    acquirers = load_acquirers(links)
    check_sms_setting(os.environ.get("SWITCH_SMS"), state_dir)  # a bad URL stops us here
    if args.card_cache < 1:
        raise SystemExit(f"--card-cache {args.card_cache}: must be at least 1")
    core = await SwitchCore.open(
        state_dir,
        hsm=hsm,
        durable=not args.no_fsync,
        config=config,
        cache_size=args.card_cache,
        store_spec=args.store,
        shared=worker_index() is not None,  # --workers: other processes write the store
    )
    tune_gc_for_serving()  # the loaded state is frozen out of the collector's scans
    try:
        acquirer_lines = await check_acquirer_keys(core.hsm, acquirers)
    except BaseException:  # a zone key the HSM refuses: stop before serving anything
        await core.close()
        if hsm is not None:
            await hsm.close()
        raise
    for acq in acquirers:
        core.register_acquirer(acq)
    remotes: RemoteIssuers | None = None
    listeners: list[IsoListener] = []
    grpc_server: grpc.aio.Server | None = None
    gateway: Gateway | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sms: SmsDelivery | None = None
    notify: merchant_notify.MerchantNotify | None = None
    observed = Observed(core, listeners)  # /readyz says 503 until Phase.READY
    http_server: HttpServer | None = None
    # releases pre-authorization holds past their validity: once now, then every minute
    expiry = asyncio.create_task(expire_holds_every(core.expire_holds, EXPIRY_INTERVAL_S))
    try:
        if args.http_port >= 0:  # first: probes get an answer (503 not ready) during the start
            http_server = await start_observe_server(observed, args.host, args.http_port)
        if remote_configs:
            remotes = await start_remote_issuers(core, remote_configs, state_dir)
            observed.remotes = remotes
        configs = [
            ListenerConfig(
                host=args.host,
                port=args.iso_port,
                spec=args.iso_spec,
                require_mac=args.require_mac,
                zmk=args.zmk,
                reuse_port=worker_index() is not None,
            ),
            *(_listener(text, args) for text in args.iso_listener),
        ]
        for cfg in configs:
            listener = await start_iso_server(core, cfg)
            listeners.append(listener)
        sms = await start_sms_delivery(
            args.sms_worker, core.store, state_dir, log_level=str(args.log_level)
        )
        print(f"switch: state directory {state_dir.resolve()}", flush=True)
        for listener in listeners:
            cfg = listener.config
            tpdu = " + TPDU" if cfg.framing.tpdu else ""
            print(
                f"ISO 8583 acquirer listener on {cfg.host}:{listener.port} "
                f"(spec {cfg.spec}, 2-byte length header{tpdu})",
                flush=True,
            )
        if args.hsm:
            print(f"HSM: {args.hsm} (payShield host protocol)", flush=True)
        else:
            print(BANNER_HSM_DEV.format(lmk=state_dir / "lmk.json"), flush=True)
        print(f"SMS alerts: {sms.banner}", flush=True)
        notify = await merchant_notify.start_merchant_notify(
            core, state_dir, args.merchant_notify, durable=not args.no_fsync
        )
        print(f"merchant notifications: {notify.banner}", flush=True)
        for rc in remote_configs:
            print(f"remote issuer {rc.name}: ISO 8583 link to {rc.host}:{rc.port}", flush=True)
        for line in acquirer_lines:
            print(line, flush=True)
        grpc_server = await start_grpc_server(
            core,
            args.host,
            args.grpc_port,
            tls=grpc_tls,
            operators=operators_path(state_dir),
            reuse_port=worker_index() is not None,
        )
        print(
            f"gRPC merchant API on {args.host}:{grpc_server.bound_port} ({transport(grpc_tls)})",
            flush=True,
        )
        print(  # same port, own credentials: `switch operator add NAME` makes a key
            f"gRPC operator API on {args.host}:{grpc_server.bound_port} "
            f"(keys: {operators_path(state_dir)})",
            flush=True,
        )
        gateway = await gateway_options.start(core, args)  # REST gateway + payment page
        if http_server is not None:
            print(f"HTTP health/metrics on {args.host}:{http_server.port}", flush=True)
        observed.phase = Phase.READY
        print("switch ready -- Ctrl-C to stop", flush=True)
        await stop.wait()
        print("switch: stopping", flush=True)
    finally:
        observed.phase = Phase.STOPPING
        expiry.cancel()
        for listener in listeners:
            await listener.close()
        if grpc_server is not None:
            await grpc_server.stop(5)
        if gateway is not None:
            await gateway.close()
        if sms is not None:
            await sms.stop()
        if notify is not None:
            await notify.stop()
        if remotes is not None:
            await remotes.close()
        if http_server is not None:  # last before the store: it reads the store's counters
            await http_server.close()
        await core.close()
        if hsm is not None:
            await hsm.close()
    print("switch: stopped", flush=True)
    return 0


def _supervise(args: argparse.Namespace) -> int:
    """``--workers N``: the supervisor of N ``switch run`` children (``switch.workers``)."""
    if args.workers < 1:
        print(f"switch run: --workers {args.workers}: must be at least 1", file=sys.stderr)
        return 2
    # (remote issuers are fine: the workers share one store-and-forward queue, saf.db or the
    # PostgreSQL store's table, and take turns on each issuer's queue, switch.iso8583.saf)
    if args.sms_worker == "inline":
        print("switch run: --workers: use --sms-worker process or off", file=sys.stderr)
        return 2

    async def prepare() -> None:  # keys, migrations and demo data once, before the workers
        core = await SwitchCore.open(
            args.state_dir, durable=not args.no_fsync, store_spec=args.store
        )
        await core.close()

    try:
        uvloop.run(prepare())
    except (CoreError, StoreError) as exc:  # e.g. a single-node switch runs on this directory
        print(f"switch run: {exc}", file=sys.stderr)
        return 1
    return supervise(
        sys.argv[1:], args.workers, args.host, args.iso_port, args.grpc_port,
        sms_in_all=is_postgres(os.environ.get(ENV_STORE)),  # leased claims: a worker each
    )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    configure_logging(str(args.log_level), args.log_format)
    os.environ[ENV_LOG_FORMAT] = args.log_format  # the SMS worker child logs alike
    if args.store is not None:  # the SMS worker child reads the same outbox
        os.environ[ENV_STORE] = args.store
    if args.workers != 1 and worker_index() is None:
        return _supervise(args)
    try:
        return uvloop.run(serve(args))
    except CoreError as exc:  # e.g. another switch already runs on this state directory
        print(f"switch run: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:  # e.g. --store names a PostgreSQL that does not answer
        print(f"switch run: --store: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad --remote-issuers/--interchange file (names the key)
        print(f"switch run: {exc}", file=sys.stderr)
        return 1
    except WorkerLockError as exc:  # --sms-worker inline beside a running worker process
        print(f"switch run: --sms-worker inline: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a port already in use
        print(f"switch run: cannot start: {exc}", file=sys.stderr)
        return 1
