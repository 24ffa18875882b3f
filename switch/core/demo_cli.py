"""``switch demo show [--json]``: print the demo data set (cards, terminals, merchants...)."""

from __future__ import annotations

import argparse
import json

from switch.core.demo import demo_document


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="print the demo data set (test data and test keys)")
    show.add_argument("--json", action="store_true", help="machine-readable JSON")


def main(args: argparse.Namespace) -> int:
    doc = demo_document()
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    print(doc["warning"])
    print(f"on-us BIN {doc['on_us_bin']}, acquirer {doc['acquirer_id']}")
    for c in doc["cards"]:
        print(
            f"card {c['pan']} PIN {c['pin']} exp {c['expiry']} CVV2 {c['cvv2']} "
            f"{c['status']:<9} balance {c['balance'] / 100:,.2f} DZD phone {c['phone']}"
        )
    for t in doc["terminals"]:
        print(f"terminal {t['terminal_id']} {t['kind']:<7} TPK {t['tpk']} ({t['location']})")
    for m in doc["merchants"]:
        print(f"merchant {m['merchant_id']} key {m['api_key']} ({m['name']})")
    for b in doc["billers"]:
        refs = ", ".join(f"{x['reference']}={x['amount_due'] / 100:,.2f}" for x in b["bills"])
        print(f"biller {b['biller_id']} ({b['category']}): {refs}")
    for r in doc["bin_routes"]:
        print(f"BIN {r['prefix']} -> {r['destination']}")
    return 0
