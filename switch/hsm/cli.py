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

from switch.hsm.audit import Audit, attach_file
from switch.hsm.core import HsmCore
from switch.hsm.lmk import Lmk, LmkError
from switch.hsm.server import DEFAULT_HEADER_LENGTH, DEFAULT_PORT, bound_port, start_hsm_server

log = logging.getLogger("switch.hsm")

BANNER = (
    "switch software HSM - FOR DEVELOPMENT AND TESTS ONLY: keys live in process memory, "
    "the LMK is a file on disk. Use a real HSM for real cards."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="hsm_command", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help="serve the payShield-style host protocol over TCP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--state-dir", type=Path, default=Path("./var"))
    serve.add_argument(
        "--lmk-file",
        type=Path,
        help="LMK JSON (default: <state-dir>/lmk.json, shared with switch run; created)",
    )
    serve.add_argument("--test-lmk", action="store_true", help="use the fixed public test LMK")
    serve.add_argument("--header-length", type=int, default=DEFAULT_HEADER_LENGTH)
    serve.add_argument(
        "--authorised",
        action="store_true",
        help="authorised state: allow commands that take or reveal clear PINs/keys (BA, NG, FK)",
    )


def load_lmk(args: argparse.Namespace) -> Lmk:
    if args.test_lmk:
        return Lmk.test()
    if args.lmk_file is not None:
        return Lmk.load(args.lmk_file)
    return Lmk.load_or_create(args.state_dir / "lmk.json")


async def serve(args: argparse.Namespace) -> None:
    lmk = load_lmk(args)
    audit = Audit()
    attach_file(args.state_dir, audit)
    core = HsmCore(lmk, authorised=args.authorised, audit=audit)
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
    async with server:
        await server.serve_forever()


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        uvloop.run(serve(args))
    except LmkError as exc:
        print(f"switch hsm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
