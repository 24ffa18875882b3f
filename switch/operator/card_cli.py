"""``switch card show|block|unblock|reset-pin-tries|set-status``: cards, for operators.

A card is named by ``--pan`` (``-`` reads it from stdin) or ``--card ID``. The change is made
by the running switch on the card it authorizes with, so a blocked card is declined (62) by
the next request; ``--reason`` goes into the audit trail. ``unblock`` makes a *blocked* card
active again (an undelivered card is not activated by it); ``set-status`` follows the card
lifecycle (lost, stolen and expired are final). Options and output: ``cli_common``.
"""

from __future__ import annotations

import argparse

from switch.core.domain import CardStatus
from switch.digits import ascii_int
from switch.exits import EPILOG
from switch.gen.switch.v1 import operator_pb2 as opb
from switch.operator import cli_common as c
from switch.operator.client import card_request

_OPS = {
    "show": "the card as the running switch holds it",
    "block": "block the card (declined 62 at once)",
    "unblock": "make a blocked card active again",
    "reset-pin-tries": "clear the count of wrong PINs",
    "set-status": "any status the card lifecycle allows",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = c.common_options()
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="card_command", required=True, metavar="OP")
    for name, help_text in _OPS.items():
        p = sub.add_parser(
            name, parents=[common], epilog=EPILOG, help=help_text, description=help_text
        )
        if name == "set-status":
            p.add_argument("status", choices=[s.value for s in CardStatus], help="the new status")
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--pan", type=c.pan_argument, help="card number ('-': stdin)")
        which.add_argument("--card", type=ascii_int, help="card id")
        if name != "show":
            p.add_argument("--reason", default="", help="why (kept in the audit trail)")


def card_text(i: opb.CardInfo) -> str:
    status = i.status
    if i.previous_status and i.previous_status != i.status:
        status = f"{i.status} (was {i.previous_status})"
    elif i.previous_status:
        status = f"{i.status} (unchanged)"
    return c.lines([
        ("card", f"{i.card_id} {i.masked_pan}"),
        ("status", status),
        ("product", i.product),
        ("expiry", f"{i.expiry[2:]}/{i.expiry[:2]}" if len(i.expiry) == 4 else i.expiry),
        ("service code", i.service_code),
        ("PAN sequence", i.pan_sequence),
        ("wrong PINs", i.pin_tries),
        ("wrong codes", i.otp_tries),
        ("activated", c.when(i.activated_at)),
        ("account", i.account_number or "-"),
        ("holder", i.holder or "-"),
    ])  # fmt: skip


def main(args: argparse.Namespace) -> int:
    op_name: str = args.card_command
    req = card_request(args.pan or "", args.card or 0, getattr(args, "reason", ""))
    what = f"switch card {op_name}"
    if op_name == "show":
        return c.run(args, what, lambda op: op.get_card(req), card_text)
    if op_name == "reset-pin-tries":
        return c.run(args, what, lambda op: op.reset_pin_tries(req), card_text)
    if op_name == "block":
        status, only_blocked = CardStatus.BLOCKED.value, False
    elif op_name == "unblock":
        status, only_blocked = CardStatus.ACTIVE.value, True
    else:
        status, only_blocked = args.status, False
    return c.run(
        args, what,
        lambda op: op.set_card_status(req, status, only_if_blocked=only_blocked), card_text,
    )  # fmt: skip
