"""``switch operator add|list|remove``: operator keys in ``state_dir/operators.json``;
``switch operator audit``: the trail of their actions in the store (read-only, also while a
switch runs on it).

Run on the switch's machine (it writes the state directory, not the gRPC API); a running
switch sees the change at its next operator call. ``add NAME`` prints the new key once: hand
it to the operator (``SWITCH_OPERATOR_ID=NAME SWITCH_OPERATOR_KEY=...``); it cannot be shown
again, only replaced (``remove`` then ``add``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from switch.digits import ascii_int
from switch.operator.keys import (
    OperatorKeyError,
    add_operator,
    operators_path,
    read_operators,
    remove_operator,
)
from switch.store import ENV_STORE, is_postgres, store_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path("var"),
        help="the switch's state directory (default: %(default)s)",
    )
    common.add_argument("--json", action="store_true", help="print the answer as JSON")
    sub = parser.add_subparsers(dest="operator_command", required=True, metavar="OP")
    p = sub.add_parser("add", parents=[common], help="a new operator; prints its key once")
    p.add_argument("name", help="the operator's name, as the audit trail shows it")
    sub.add_parser("list", parents=[common], help="the operators (never their keys)")
    p = sub.add_parser("remove", parents=[common], help="revoke an operator's key")
    p.add_argument("name", help="the operator to remove")
    p = sub.add_parser("audit", parents=[common], help="the audit trail, newest first")
    p.add_argument("--operator", default="", help="only this operator's actions")
    p.add_argument("--limit", type=ascii_int, default=50, help="how many rows (default 50)")
    p.add_argument(  # PG (issue 13): a switch run --store postgresql://... keeps its trail there
        "--store", type=store_arg, default=None, metavar="URL|PATH",
        help="the store switch run --store names (default: SWITCH_STORE, else STATE_DIR/switch.db)",
    )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    if args.operator_command == "audit":
        return _audit(args)
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


def _audit(args: argparse.Namespace) -> int:
    store = args.store or os.environ.get(ENV_STORE)
    if is_postgres(store):
        import psycopg

        try:
            return _show_audit(args, _pg_audit_rows(str(store), args))
        except psycopg.Error as e:  # unreachable, or a database the switch never migrated
            print(f"switch operator audit: --store: {e}", file=sys.stderr)
            return 2
    db = Path(store) if store else Path(args.state_dir) / "switch.db"
    if not db.exists():
        print(f"switch operator audit: state_dir: no store in {args.state_dir}", file=sys.stderr)
        return 2
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT created_at, operator_id, action, target, outcome, detail FROM operator_audit "
            "WHERE ? = '' OR operator_id = ? ORDER BY audit_id DESC LIMIT ?",
            (args.operator, args.operator, max(args.limit, 0)),
        ).fetchall()
    except sqlite3.OperationalError as e:  # a store older than the operator tools
        print(f"switch operator audit: {e}", file=sys.stderr)
        return 2
    finally:
        conn.close()
    return _show_audit(args, rows)


def _pg_audit_rows(url: str, args: argparse.Namespace) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, options="-c default_transaction_read_only=on") as conn:
        return conn.execute(
            "SELECT created_at, operator_id, action, target, outcome, detail FROM operator_audit "
            "WHERE %s = '' OR operator_id = %s ORDER BY audit_id DESC LIMIT %s",
            (args.operator, args.operator, max(args.limit, 0)),
        ).fetchall()


def _show_audit(args: argparse.Namespace, rows: list[tuple[Any, ...]]) -> int:
    keys = ("time", "operator_id", "action", "target", "outcome", "detail")
    docs = [
        dict(zip(keys, (dt.datetime.fromtimestamp(r[0], dt.UTC).isoformat("T", "seconds"),
                        *r[1:]), strict=True))
        for r in rows
    ]  # fmt: skip
    if args.json:
        print(json.dumps(docs, indent=2, ensure_ascii=False))
    else:
        for d in docs:
            detail = f"  ({d['detail']})" if d["detail"] else ""
            print(f"{d['time']}  {d['operator_id']}  {d['action']}  {d['target']}  "
                  f"{d['outcome']}{detail}")  # fmt: skip
        if not docs:
            print("no operator actions recorded")
    return 0
