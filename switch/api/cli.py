"""``switch pay ...``: the merchant API from the command line, through ``MerchantClient``.

Talks to a running switch (``switch run``; ``--target`` or ``SWITCH_GRPC``, default
127.0.0.1:50051). Credentials come from ``--merchant-id``/``--api-key`` or
``SWITCH_MERCHANT_ID``/``SWITCH_API_KEY``. Amounts are DZD (``2500.50``) unless ``--minor``
(``switch.amounts``, as ``switch atm``). Options go before or after the operation
(``switch pay sale 2500 --pan ... --target ...``). Prints the answer as JSON with every field,
amounts as numbers (``switch.protojson``); exit status as ``switch.exits``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import grpc
from google.protobuf.message import Message

from switch import amounts
from switch.api.client import DEFAULT_TARGET, MerchantClient
from switch.api.tls_files import TlsFileError, client_tls
from switch.digits import ascii_int, ascii_seconds
from switch.exits import EPILOG, Exit
from switch.protojson import message_doc

ENV_HELP = (
    "environment: SWITCH_GRPC (the switch's gRPC address, host:port; --target wins), "
    "SWITCH_MERCHANT_ID, SWITCH_API_KEY. " + EPILOG
)


def _connection_options(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every operation shares. On ``switch pay`` itself they carry the defaults;
    each operation takes them again with ``SUPPRESS`` defaults, so ``sale ... --target X``
    sets the target and ``--target X sale ...`` is not overwritten by the operation's default.
    """

    def d(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    g = p.add_argument_group("connection and credentials")
    g.add_argument(
        "--target",
        default=d(os.environ.get("SWITCH_GRPC", DEFAULT_TARGET)),
        help=f"the switch's gRPC address (default: $SWITCH_GRPC, else {DEFAULT_TARGET})",
    )
    g.add_argument(
        "--merchant-id",
        default=d(os.environ.get("SWITCH_MERCHANT_ID", "")),
        help="your merchant id (default: $SWITCH_MERCHANT_ID)",
    )
    g.add_argument(
        "--api-key", default=d(None), help="default: $SWITCH_API_KEY (prefer the env variable)"
    )
    g.add_argument("--key", default=d(None), help="idempotency key (default: a fresh one)")
    g.add_argument(
        "--timeout",
        type=ascii_seconds,
        default=d(10.0),
        help="seconds to wait for the answer (default: 10)",
    )
    g.add_argument(
        "--tls-ca", type=Path, default=d(None), help="CA of the server certificate (enables TLS)"
    )
    g.add_argument(
        "--tls-cert",
        type=Path,
        default=d(None),
        help="our client certificate (PEM), for a mutual-TLS server",
    )
    g.add_argument(
        "--tls-key", type=Path, default=d(None), help="its private key (PEM, unencrypted)"
    )
    g.add_argument("--minor", action="store_true", default=d(False), help=amounts.MINOR_HELP)


def _card(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pan", required=True, help="card number")
    p.add_argument("--expiry", required=True, help="card expiry, YYMM")
    p.add_argument("--cvv2", required=True, help="the 3 digits on the back of the card")
    p.add_argument("--otp", default="", help="code from `switch pay verify`")


def _amount(p: argparse.ArgumentParser, help_text: str = amounts.AMOUNT_HELP) -> None:
    p.add_argument("amount", type=amounts.amount_text, help=help_text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ENV_HELP
    _connection_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="op", required=True, metavar="OP")

    def op(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=ENV_HELP)
        _connection_options(p, suppress=True)
        return p

    for name in ("sale", "authorize"):
        p = op(name, f"{name} with a card")
        _amount(p)
        _card(p)
        p.add_argument(
            "--currency", type=ascii_int, default=12, help="ISO 4217 number (default: 12, DZD)"
        )
    for name in ("capture", "refund"):
        p = op(name, f"{name} a payment (amount: default everything)")
        p.add_argument("payment_id", help="the payment_id printed by the sale or authorize")
        p.add_argument(
            "amount", type=amounts.amount_text, nargs="?", help="default: all of it; "
            + amounts.AMOUNT_HELP,
        )  # fmt: skip
    op("void", "void a payment").add_argument("payment_id", help="the payment to void")
    op("get", "show a payment").add_argument("payment_id", help="the payment to show")
    p = op("list", "list your payments, newest first")
    p.add_argument("--page-size", type=ascii_int, default=20, help="payments per page")
    p.add_argument("--page-token", default="", help="next_page_token of the previous page")
    p = op("bill-lookup", "what a bill is for")
    p.add_argument("biller_id", help="the biller, e.g. SONELGAZ")
    p.add_argument("reference", help="the bill's reference")
    p = op("bill", "pay a bill")
    p.add_argument("biller_id", help="the biller, e.g. SONELGAZ")
    p.add_argument("reference", help="the bill's reference")
    _amount(p)
    _card(p)
    p = op("transfer", "transfer to a CCP account")
    p.add_argument("destination_account", help="CCP account number, e.g. 0001000002-25")
    _amount(p)
    _card(p)
    p = op("verify", "send the cardholder a one-time code by SMS")
    p.add_argument("--pan", required=True, help="card number")
    _amount(p, "the amount the code is for; " + amounts.AMOUNT_HELP)


async def _run(args: argparse.Namespace, c: MerchantClient) -> Message:
    k = args.key
    op = args.op
    if op in ("sale", "authorize"):
        pay = c.sale if op == "sale" else c.authorize
        return await pay(
            args.amount,
            args.pan,
            args.expiry,
            args.cvv2,
            otp=args.otp,
            currency=args.currency,
            idempotency_key=k,
        )
    if op == "capture":
        return await c.capture(args.payment_id, args.amount, idempotency_key=k)
    if op == "refund":
        return await c.refund(args.payment_id, args.amount, idempotency_key=k)
    if op == "void":
        return await c.void(args.payment_id, idempotency_key=k)
    if op == "get":
        return await c.get_payment(args.payment_id)
    if op == "list":
        return await c.list_payments(page_size=args.page_size, page_token=args.page_token)
    if op == "bill-lookup":
        return await c.lookup_bill(args.biller_id, args.reference)
    if op == "bill":
        return await c.pay_bill(
            args.biller_id,
            args.reference,
            args.amount,
            args.pan,
            args.expiry,
            args.cvv2,
            otp=args.otp,
            idempotency_key=k,
        )
    if op == "transfer":
        return await c.transfer(
            args.destination_account,
            args.amount,
            args.pan,
            args.expiry,
            args.cvv2,
            otp=args.otp,
            idempotency_key=k,
        )
    return await c.start_verification(args.pan, args.amount, idempotency_key=k)


def rpc_exit(e: grpc.aio.AioRpcError) -> Exit:
    """UNAVAILABLE (no connection, or the switch says retry later) and DEADLINE_EXCEEDED mean
    try again later; any other status means the request itself was refused."""
    if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Exit.UNREACHABLE
    return Exit.REFUSED


async def _main(args: argparse.Namespace) -> int:
    api_key = args.api_key or os.environ.get("SWITCH_API_KEY", "")
    if not args.merchant_id or not api_key:
        print(
            "pay: --merchant-id and --api-key (or SWITCH_MERCHANT_ID/SWITCH_API_KEY) are required",
            file=sys.stderr,
        )
        return Exit.USAGE
    try:
        amounts.resolve(args, "amount")
        tls = client_tls(args.tls_ca, args.tls_cert, args.tls_key)
    except (amounts.AmountError, TlsFileError) as e:
        print(f"pay: {e}", file=sys.stderr)
        return Exit.USAGE
    async with MerchantClient(
        args.target, args.merchant_id, api_key, timeout=args.timeout, tls=tls
    ) as c:
        try:
            answer = await _run(args, c)
        except grpc.aio.AioRpcError as e:
            print(f"pay {args.op}: {e.code().name}: {e.details()}", file=sys.stderr)
            return rpc_exit(e)
    doc = message_doc(answer)
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    if "approved" in answer.DESCRIPTOR.fields_by_name and not doc["approved"]:
        return Exit.DECLINED
    return Exit.OK


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))
