"""``switch account show NUMBER``: a CCP account's live balance and holds, for operators."""

from __future__ import annotations

import argparse

from switch.exits import EPILOG
from switch.gen.switch.v1 import operator_pb2 as opb
from switch.operator import cli_common as c


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="account_command", required=True, metavar="OP")
    p = sub.add_parser(
        "show",
        parents=[c.common_options()],
        epilog=EPILOG,
        help="balance, holds and holder of an account",
    )
    p.add_argument("account_number", help="CCP account number, e.g. 0001000001-17")


def account_text(a: opb.AccountInfo) -> str:
    return c.lines([
        ("account", f"{a.account_number} ({a.kind})"),
        ("holder", a.holder or "-"),
        ("phone", a.phone or "-"),
        ("balance", c.money(a.balance_minor, a.currency)),
        ("held", c.money(a.held_minor, a.currency)),
        ("available", c.money(a.available_minor, a.currency)),
    ])  # fmt: skip


def main(args: argparse.Namespace) -> int:
    return c.run(
        args, "switch account show",
        lambda op: op.get_account(args.account_number), account_text,
    )  # fmt: skip
