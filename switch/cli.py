"""The ``switch`` console script (docs/architecture.md §3: CLI contract).

Each sub-command lives with the part it drives and is imported only when used, so
``switch demo show`` does not pay for starting gRPC, and a part's CLI stays next to its code.
A part adds itself to ``COMMANDS`` as ``name -> "module"``; that module provides
``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from switch.exits import EPILOG, Exit

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "hsm": ("switch.hsm.cli", "software HSM (payShield host protocol): switch hsm serve"),
    "demo": ("switch.core.demo_cli", "the demo data set: switch demo show --json"),
    "pay": ("switch.api.cli", "merchant API client: switch pay sale|refund|bill|... (gRPC)"),
    "run": ("switch.app", "run the switch: ISO 8583 listener, SMS alerts, gRPC API"),
    "atm": ("switch.atm", "ATM simulator sending real ISO 8583: withdraw, balance, reverse"),
    "import": ("switch.cardbase.cli", "load an issuer's card base: switch import cards|accounts"),
    "operator": ("switch.operator.keys_cli", "operator keys and trail: add|list|remove|audit"),
    "txn": ("switch.operator.txn_cli", "operator: switch txn show|search (gRPC, audited)"),
    "card": ("switch.operator.card_cli", "operator: switch card show|block|unblock|... (gRPC)"),
    "account": ("switch.operator.account_cli", "operator: switch account show (gRPC)"),
    "loaddata": ("switch.loaddata", "a load-test data set and its Locust files"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switch",
        description="Card payment switch",
        epilog=f"client commands (pay, atm, txn, card, account): {EPILOG}",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc: int = args._module.main(args)
        sys.stdout.flush()  # here, so a closed pipe is seen now and not at interpreter exit
    except BrokenPipeError:
        return _pipe_closed()
    return rc


def _pipe_closed() -> int:
    """The reader of our output went away (``switch pay list | head -1``): stop quietly.

    Python ignores SIGPIPE, so the write raised instead of killing us; restoring SIGPIPE's
    default would also kill ``switch run`` on a client's closed socket. Pointing stdout at
    /dev/null keeps the interpreter's own final flush from printing a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return Exit.PIPE_CLOSED


if __name__ == "__main__":
    sys.exit(main())
