"""What ``switch txn|card|account`` share: connection options, credentials, output, errors.

Like ``switch pay``: the target comes from ``--target`` or ``SWITCH_GRPC`` (default
127.0.0.1:50051), the credentials from ``--operator-id``/``--operator-key`` or
``SWITCH_OPERATOR_ID``/``SWITCH_OPERATOR_KEY`` (prefer the environment: a flag shows in
``ps``). Every command prints text for a person, or with ``--json`` the answer as the proto3
JSON mapping with every field and 64-bit amounts as numbers (``switch.protojson``). Exit
status as ``switch.exits`` (the same as ``switch pay``): 0 done, 2 bad usage, 3 refused (the
gRPC status and message on stderr, e.g. ``switch card block: NOT_FOUND: card.pan: no card with
this number``), 4 cannot connect or the switch is unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from switch.api.cli import rpc_exit
from switch.api.client import DEFAULT_TARGET
from switch.api.tls_files import TlsFileError, client_tls
from switch.digits import ascii_seconds
from switch.exits import Exit
from switch.operator.client import OperatorClient
from switch.protojson import message_doc

M = TypeVar("M", bound=Message)


def common_options() -> argparse.ArgumentParser:
    """Options every leaf command takes (``switch card block --pan ... --json``)."""
    p = argparse.ArgumentParser(add_help=False)
    connection_options(p)
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    return p


def connection_options(p: argparse.ArgumentParser, timeout: float = 10.0) -> None:
    """Target, credentials, deadline and TLS of the operator API (``switch import`` takes
    them too, for a switch that is running)."""
    g = p.add_argument_group("connection")
    g.add_argument(
        "--target", default=os.environ.get("SWITCH_GRPC", DEFAULT_TARGET),
        help="the switch's gRPC address (default: $SWITCH_GRPC or %(default)s)",
    )  # fmt: skip
    g.add_argument("--operator-id", default=None, help="default: $SWITCH_OPERATOR_ID")
    g.add_argument(
        "--operator-key", default=None, help="default: $SWITCH_OPERATOR_KEY (prefer the env)"
    )
    g.add_argument(
        "--timeout", type=ascii_seconds, default=timeout, help="seconds to wait for an answer"
    )
    g.add_argument("--tls-ca", type=Path, help="CA of the server certificate (enables TLS)")
    g.add_argument("--tls-cert", type=Path, help="our client certificate, for mutual TLS")
    g.add_argument("--tls-key", type=Path, help="its private key (PEM, unencrypted)")


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    """(operator id, key) from the flags or the environment; ('', '') parts when missing."""
    operator_id = args.operator_id or os.environ.get("SWITCH_OPERATOR_ID", "")
    key = args.operator_key or os.environ.get("SWITCH_OPERATOR_KEY", "")
    return operator_id, key


def pan_argument(text: str) -> str:
    """``--pan -`` reads the PAN from stdin, keeping it out of ``ps`` and shell history."""
    if text == "-":
        return sys.stdin.readline().strip()
    return text


def time_argument(text: str) -> dt.datetime:
    """ISO 8601 (``2026-12-03``, ``2026-12-03T08:00``, ``...+01:00``); no zone means UTC."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: not an ISO 8601 date or date-time (2026-12-03T08:00:00+01:00)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def when(ts: Timestamp) -> str:
    """A timestamp for people: UTC, ISO 8601, to the second, zone shown."""
    if ts.seconds == 0 and ts.nanos == 0:
        return "-"
    return ts.ToDatetime(tzinfo=dt.UTC).isoformat(timespec="seconds")


def money(minor: int, currency: int = 12) -> str:
    sign = "-" if minor < 0 else ""
    units, cents = divmod(abs(minor), 100)
    unit = "DZD" if currency == 12 else f"(currency {currency:03d})"
    return f"{sign}{units:,}.{cents:02d} {unit}"


def lines(pairs: list[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in pairs)


def run(
    args: argparse.Namespace,
    what: str,
    call: Callable[[OperatorClient], Awaitable[M]],
    text: Callable[[M], str],
) -> int:
    """Connect, make ``call``, print its answer (``--json`` or ``text``); the exit status."""
    operator_id, key = credentials(args)
    if not operator_id or not key:
        print(
            f"{what}: --operator-id and --operator-key (or SWITCH_OPERATOR_ID/"
            "SWITCH_OPERATOR_KEY) are required; `switch operator add NAME` makes a key",
            file=sys.stderr,
        )
        return Exit.USAGE
    try:
        tls = client_tls(args.tls_ca, args.tls_cert, args.tls_key)
    except TlsFileError as e:
        print(f"{what}: {e}", file=sys.stderr)
        return Exit.USAGE

    async def go() -> M:
        async with OperatorClient(
            args.target, operator_id, key, timeout=args.timeout, tls=tls
        ) as client:
            return await call(client)

    try:
        answer = asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        print(f"{what}: {e.code().name}: {e.details()}", file=sys.stderr)
        return rpc_exit(e)
    if args.json:
        print(json.dumps(message_doc(answer), indent=2, ensure_ascii=False))
    else:
        print(text(answer))
    return Exit.OK
