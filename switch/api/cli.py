"""``switch pay ...``: the merchant API from the command line, through ``MerchantClient``.

Talks to a running switch (``switch run``; default 127.0.0.1:50051). Credentials come from
``--merchant-id``/``--api-key`` or ``SWITCH_MERCHANT_ID``/``SWITCH_API_KEY``. Prints the answer
as JSON; exit status 0 = approved/ok, 1 = declined, 2 = refused with a gRPC error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from switch.api.client import DEFAULT_TARGET, MerchantClient
from switch.api.tls_files import TlsFileError, client_tls
from switch.digits import ascii_int, ascii_seconds


def _card(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pan", required=True)
    p.add_argument("--expiry", required=True, help="YYMM")
    p.add_argument("--cvv2", required=True)
    p.add_argument("--otp", default="", help="code from `switch pay verify`")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=os.environ.get("SWITCH_GRPC", DEFAULT_TARGET))
    parser.add_argument("--merchant-id", default=os.environ.get("SWITCH_MERCHANT_ID", ""))
    parser.add_argument(
        "--api-key", default=None, help="default: $SWITCH_API_KEY (prefer the env variable)"
    )
    parser.add_argument("--key", default=None, help="idempotency key (default: a fresh one)")
    parser.add_argument("--timeout", type=ascii_seconds, default=10.0)
    parser.add_argument("--tls-ca", type=Path, help="CA of the server certificate (enables TLS)")
    parser.add_argument(
        "--tls-cert", type=Path, help="our client certificate (PEM), for a mutual-TLS server"
    )
    parser.add_argument("--tls-key", type=Path, help="its private key (PEM, unencrypted)")
    sub = parser.add_subparsers(dest="op", required=True, metavar="OP")
    for name in ("sale", "authorize"):
        p = sub.add_parser(name, help=f"{name} (amount in minor units)")
        p.add_argument("amount", type=ascii_int)
        _card(p)
        p.add_argument("--currency", type=ascii_int, default=12)
    for name in ("capture", "refund"):
        p = sub.add_parser(name, help=f"{name} a payment (amount: default everything)")
        p.add_argument("payment_id")
        p.add_argument("amount", type=ascii_int, nargs="?")
    sub.add_parser("void", help="void a payment").add_argument("payment_id")
    sub.add_parser("get", help="show a payment").add_argument("payment_id")
    p = sub.add_parser("list", help="list your payments, newest first")
    p.add_argument("--page-size", type=ascii_int, default=20)
    p.add_argument("--page-token", default="")
    p = sub.add_parser("bill-lookup", help="what a bill is for")
    p.add_argument("biller_id")
    p.add_argument("reference")
    p = sub.add_parser("bill", help="pay a bill")
    p.add_argument("biller_id")
    p.add_argument("reference")
    p.add_argument("amount", type=ascii_int)
    _card(p)
    p = sub.add_parser("transfer", help="transfer to a CCP account")
    p.add_argument("destination_account")
    p.add_argument("amount", type=ascii_int)
    _card(p)
    p = sub.add_parser("verify", help="send the cardholder a one-time code by SMS")
    p.add_argument("--pan", required=True)
    p.add_argument("amount", type=ascii_int)


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


async def _main(args: argparse.Namespace) -> int:
    api_key = args.api_key or os.environ.get("SWITCH_API_KEY", "")
    if not args.merchant_id or not api_key:
        print(
            "pay: --merchant-id and --api-key (or SWITCH_MERCHANT_ID/SWITCH_API_KEY) are required",
            file=sys.stderr,
        )
        return 2
    try:
        tls = client_tls(args.tls_ca, args.tls_cert, args.tls_key)
    except TlsFileError as e:
        print(f"pay: {e}", file=sys.stderr)
        return 2
    async with MerchantClient(
        args.target, args.merchant_id, api_key, timeout=args.timeout, tls=tls
    ) as c:
        try:
            answer = await _run(args, c)
        except grpc.aio.AioRpcError as e:
            print(f"pay {args.op}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 2
    doc = MessageToDict(answer, preserving_proto_field_name=True)
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    if "approved" in answer.DESCRIPTOR.fields_by_name and not doc.get("approved", False):
        return 1
    return 0


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))
