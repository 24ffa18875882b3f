"""``switch txn show ID`` and ``switch txn search ...``: the journal, for operators.

The search is paged (``--page-size``, then ``--page-token`` as printed); a ``--pan`` is sent
to the switch, which hashes it with the store's key to find the card; every PAN printed is
masked. Options and output: ``switch.operator.cli_common``.
"""

from __future__ import annotations

import argparse

from switch.digits import ascii_int
from switch.exits import EPILOG
from switch.gen.switch.v1 import operator_pb2 as opb
from switch.operator import cli_common as c
from switch.operator.client import Search


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = c.common_options()
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="txn_command", required=True, metavar="OP")
    p = sub.add_parser("show", parents=[common], epilog=EPILOG, help="one transaction by its id")
    p.add_argument("transaction_id", help="the id (also the RRN the switch assigned)")
    p = sub.add_parser(
        "search",
        parents=[common],
        epilog=EPILOG,
        help="transactions matching every filter given, newest first",
    )
    p.add_argument("--terminal", default="", help="terminal id (field 41)")
    p.add_argument("--stan", default="", help="STAN (field 11)")
    p.add_argument("--rrn", default="", help="retrieval reference number (field 37)")
    p.add_argument("--pan", type=c.pan_argument, default="", help="card number ('-': stdin)")
    p.add_argument("--card", type=ascii_int, default=0, help="card id")
    p.add_argument("--from", dest="from_time", type=c.time_argument, help="ISO 8601, inclusive")
    p.add_argument("--to", dest="to_time", type=c.time_argument, help="ISO 8601, exclusive")
    p.add_argument("--code", default="", help="response code (field 39), e.g. 62")
    p.add_argument("--page-size", type=ascii_int, default=50, help="rows per page (default 50)")
    p.add_argument("--page-token", default="", help="as printed after the previous page")


def entry_text(j: opb.JournalEntry) -> str:
    return c.lines([
        ("transaction", j.transaction_id),
        ("time", c.when(j.created_at)),
        ("type", f"{j.txn_type} ({j.channel})"),
        ("response", f"{j.response_code}{' ' + j.message if j.message else ''}"
                     f"{' [refused]' if j.refused else ''}"),
        ("auth code", j.auth_code or "-"),
        ("amount", c.money(j.amount.amount_minor, j.amount.currency)),
        ("fee", c.money(j.fee_minor, j.amount.currency)),
        ("card", f"{j.masked_pan or '-'}{f' (card {j.card_id})' if j.card_id else ''}"),
        ("acquirer", j.acquirer_id or "-"),
        ("terminal", j.terminal_id or "-"),
        ("merchant", j.merchant_id or "-"),
        ("STAN", j.stan or "-"),
        ("transmission", j.transmission or "-"),
        ("RRN", j.rrn or "-"),
        ("original", j.original_transaction_id or "-"),
        ("route", j.route),
        ("business day", j.business_day),
    ])  # fmt: skip


def search_text(r: opb.SearchTransactionsResponse) -> str:
    if not r.transactions:
        return "no transaction matches"
    rows = [("ID", "TIME (UTC)", "TYPE", "RC", "AMOUNT", "CARD", "TERMINAL", "STAN", "RRN")]
    for j in r.transactions:
        rows.append((
            j.transaction_id, c.when(j.created_at).replace("+00:00", ""), j.txn_type,
            j.response_code, c.money(j.amount.amount_minor, j.amount.currency),
            j.masked_pan or "-", j.terminal_id or "-", j.stan or "-", j.rrn or "-",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if r.next_page_token:
        out.append(f"more: --page-token {r.next_page_token}")
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    if args.txn_command == "show":
        return c.run(
            args, "switch txn show",
            lambda op: op.get_transaction(args.transaction_id), entry_text,
        )  # fmt: skip
    search = Search(
        terminal_id=args.terminal, stan=args.stan, rrn=args.rrn, pan=args.pan,
        card_id=args.card, from_time=args.from_time, to_time=args.to_time,
        response_code=args.code,
    )  # fmt: skip
    return c.run(
        args, "switch txn search",
        lambda op: op.search(search, page_size=args.page_size, page_token=args.page_token),
        search_text,
    )  # fmt: skip
