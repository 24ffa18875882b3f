"""``switch hsm serve``: run the software HSM alone on the payShield host protocol port.

The emulator is for development and tests: it says so at start, reports the LMK check value,
and keeps its development LMK (created at first start, mode 0600) and its audit log in the
state directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvloop

from switch.digits import ascii_int, ascii_seconds
from switch.hsm import dectables
from switch.hsm.audit import Audit, attach_file
from switch.hsm.client import HsmError
from switch.hsm.core import HsmCore
from switch.hsm.dectables import MODES, STANDARD_TABLE, DecTables
from switch.hsm.lmk import Lmk
from switch.hsm.pinwatch import DEFAULT_LIMIT, DEFAULT_WINDOW_S, PinFailureWatch
from switch.hsm.server import DEFAULT_HEADER_LENGTH, DEFAULT_PORT, bound_port, start_hsm_server

log = logging.getLogger("switch.hsm")

BANNER = (
    "switch software HSM - FOR DEVELOPMENT AND TESTS ONLY: keys live in process memory, "
    "the LMK is a file on disk. Use a real HSM for real cards."
)


def _lmk_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("./var"),
        help="the switch's state directory (default: %(default)s)",
    )
    parser.add_argument(
        "--lmk-file",
        type=Path,
        help="LMK JSON (default: <state-dir>/lmk.json, shared with switch run; created)",
    )
    parser.add_argument("--test-lmk", action="store_true", help="use the fixed public test LMK")


def _held_table(text: str) -> tuple[str, str]:
    index, sep, table = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--dec-table {text!r}: expected INDEX=TABLE")
    return index, table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="hsm_command", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help="serve the payShield-style host protocol over TCP")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port", type=ascii_int, default=DEFAULT_PORT, help="TCP port (default: %(default)s)"
    )
    _lmk_arguments(serve)
    serve.add_argument(
        "--header-length",
        type=ascii_int,
        default=DEFAULT_HEADER_LENGTH,
        help="characters of message header before each command (default: %(default)s)",
    )
    serve.add_argument(
        "--dec-tables",
        choices=MODES,
        default="clear",
        help="DA/EA tables taken from the host besides held ones (K+index): clear = any "
        "strong table, held = only tables the HSM holds, encrypted = 16H under LMK 18-19",
    )
    serve.add_argument(
        "--dec-table",
        type=_held_table,
        action="append",
        default=[],
        metavar="INDEX=TABLE",
        help=f"hold a decimalisation table at a 3-hex index (default 000={STANDARD_TABLE})",
    )
    serve.add_argument(
        "--pin-failure-limit",
        type=ascii_int,
        default=DEFAULT_LIMIT,
        help="alarm past this many failed PIN verifications per PVK and account in the window",
    )
    serve.add_argument(
        "--pin-failure-window", type=ascii_seconds, default=DEFAULT_WINDOW_S, help="seconds"
    )
    serve.add_argument(
        "--authorised",
        action="store_true",
        help="authorised state: allow commands that take or reveal clear PINs/keys (BA, NG, FK)",
    )

    encrypt = sub.add_parser(
        "encrypt-dec-table",
        help="ED: print a decimalisation table encrypted under the LMK (for --dec-tables "
        "encrypted)",
    )
    encrypt.add_argument("table", help="16 decimal digits, at least 8 distinct, none > 4 times")
    _lmk_arguments(encrypt)


def load_lmk(args: argparse.Namespace) -> Lmk:
    if args.test_lmk:
        return Lmk.test()
    if args.lmk_file is not None:
        return Lmk.load(args.lmk_file)
    return Lmk.load_or_create(args.state_dir / "lmk.json")


def build_core(args: argparse.Namespace) -> HsmCore:
    """The HSM as configured; a bad LMK, table or alarm setting raises ``ValueError`` (named)
    before anything listens."""
    lmk = load_lmk(args)
    held = {"000": STANDARD_TABLE, **dict(args.dec_table)}
    dec_tables = DecTables(lmk, args.dec_tables, held)
    audit = Audit()
    watch = PinFailureWatch(lmk, audit, args.pin_failure_limit, args.pin_failure_window)
    attach_file(args.state_dir, audit)
    return HsmCore(
        lmk, authorised=args.authorised, audit=audit, dec_tables=dec_tables, pin_watch=watch
    )


async def serve(args: argparse.Namespace, core: HsmCore) -> None:
    lmk = core.lmk
    server = await start_hsm_server(
        lmk, args.host, args.port, header_length=args.header_length, core=core
    )
    log.warning(BANNER)
    log.warning(
        "HSM listening on %s:%d, LMK check value %s%s%s",
        args.host,
        bound_port(server),
        lmk.check_value(),
        " (public test LMK)" if lmk.is_test else "",
        ", AUTHORISED STATE" if args.authorised else "",
    )
    watch = core.pin_watch
    log.warning(
        "decimalisation tables: mode %s, held at %s; PIN failure alarm past %d in %gs",
        core.dec_tables.mode,
        ",".join(sorted(core.dec_tables.held)),
        watch.limit,
        watch.window,
    )
    async with server:
        await server.serve_forever()


def encrypt_table(args: argparse.Namespace) -> int:
    try:
        print(dectables.encrypt(load_lmk(args), args.table))
    except HsmError as exc:
        print(f"switch hsm encrypt-dec-table: {exc.message}", file=sys.stderr)
        return 2
    return 0


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        if args.hsm_command == "encrypt-dec-table":
            return encrypt_table(args)
        core = build_core(args)
    except ValueError as exc:  # LmkError, or a bad table / alarm setting: names the field
        print(f"switch hsm: {exc}", file=sys.stderr)
        return 2
    try:
        uvloop.run(serve(args, core))
    except KeyboardInterrupt:
        return 0
    return 0
