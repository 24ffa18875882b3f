"""``switch operator add|list|remove``: operator keys in ``state_dir/operators.json``.

Run on the switch's machine (it writes the state directory, not the gRPC API); a running
switch sees the change at its next operator call. ``add NAME`` prints the new key once: hand
it to the operator (``SWITCH_OPERATOR_ID=NAME SWITCH_OPERATOR_KEY=...``); it cannot be shown
again, only replaced (``remove`` then ``add``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from switch.operator.keys import (
    OperatorKeyError,
    add_operator,
    operators_path,
    read_operators,
    remove_operator,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, default=Path("var"))
    common.add_argument("--json", action="store_true", help="print the answer as JSON")
    sub = parser.add_subparsers(dest="operator_command", required=True, metavar="OP")
    p = sub.add_parser("add", parents=[common], help="a new operator; prints its key once")
    p.add_argument("name")
    sub.add_parser("list", parents=[common], help="the operators (never their keys)")
    p = sub.add_parser("remove", parents=[common], help="revoke an operator's key")
    p.add_argument("name")


def main(args: argparse.Namespace) -> int:
    path = operators_path(args.state_dir)
    try:
        if args.operator_command == "add":
            key = add_operator(path, args.name)
            if args.json:
                print(json.dumps({"operator_id": args.name, "key": key}))
            else:
                print(f"operator {args.name} added. Its key, shown this once:")
                print(key)
            return 0
        if args.operator_command == "remove":
            remove_operator(path, args.name)
            print(json.dumps({"removed": args.name}) if args.json else f"{args.name} removed")
            return 0
        entries = read_operators(path)
    except OperatorKeyError as e:
        print(f"switch operator {args.operator_command}: {e}", file=sys.stderr)
        return 2
    rows = [
        (e.operator_id, dt.datetime.fromtimestamp(e.created_at, dt.UTC).isoformat("T", "seconds"))
        for e in entries.values()
    ]
    if args.json:
        print(json.dumps([{"operator_id": i, "created_at": t} for i, t in rows], indent=2))
    else:
        print("\n".join(f"{i}  created {t}" for i, t in rows) or "no operators")
    return 0
