"""``switch atm``: an ATM simulator that speaks real ISO 8583 to a running switch.

It builds the 0200 (withdrawal, processing code 01; balance inquiry, 31) or the 0420 reversal
(field 90) an ATM sends, with a real PIN block (ISO 9564 format 0) encrypted under the
terminal's TPK -- the demo data's clear *test* TPK, as the ATM's secure PIN pad would hold it --
and prints the switch's answer in words (``--json``: one JSON object). :class:`AtmClient` is
also the pipelined client the tests use: many requests in flight on one connection, answers
matched by STAN. Amounts are DZD unless ``--minor`` (``switch.amounts``, as ``switch pay``);
exit status as ``switch.exits``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import secrets
import sys
from typing import Any

import switch_native

from switch import amounts
from switch.core import demo, testing
from switch.core.model import response_text
from switch.digits import ascii_int, ascii_seconds, is_ascii_digits
from switch.exits import EPILOG, Exit
from switch.iso8583.codec import Codec
from switch.iso8583.framing import FrameSplitter, Framing, frame
from switch.iso8583.mac import MacLayout, mac_field
from switch.iso8583.mapping import ORIGINAL_NOT_FOUND
from switch.iso8583.message import Message

__all__ = ["AtmClient", "AtmError", "AtmUsageError", "describe", "parse_balances"]


class AtmError(RuntimeError):
    """The switch could not be reached or did not answer in time."""


class AtmUsageError(AtmError):
    """The request cannot be built as asked (a terminal or card the demo data lacks)."""


class AtmClient:
    """One ISO 8583 connection to the switch; ``request`` sends and awaits the answer by STAN."""

    def __init__(self, spec: str = "ascii87", framing: Framing | None = None) -> None:
        self.codec = Codec(spec)
        self.framing = framing or Framing()
        self._splitter = FrameSplitter(self.framing)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self, host: str, port: int, timeout: float = 5.0) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise AtmError(f"cannot connect to the switch at {host}:{port}: {exc}") from None
        self._reader_task = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        assert self._reader is not None
        error: Exception = AtmError("the switch closed the connection")
        try:
            while data := await self._reader.read(65536):
                for fr in self._splitter.feed(data):
                    msg = self.codec.decode(fr.payload)
                    stan = msg.fields.get(11)
                    fut = self._waiting.pop(stan if isinstance(stan, str) else "", None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        except Exception as exc:  # report it to every waiter, do not die silently
            error = exc
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(error)
        self._waiting.clear()

    async def request(self, msg: Message, timeout: float = 10.0) -> Message:
        """Send ``msg`` (which must carry field 11) and return the answer with that STAN."""
        if self._writer is None:
            raise AtmError("not connected")
        stan = msg.text(11)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[stan] = fut
        self._writer.write(frame(self.codec.encode(msg), self.framing))
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._waiting.pop(stan, None)
            raise AtmError(f"no answer from the switch within {timeout:.0f} s") from None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)


# ---- message builders ----------------------------------------------------------------------


READS = ("keyed", "chip", "stripe")  # how ``financial`` presents the card (--read)


def new_stan() -> str:
    return f"{secrets.randbelow(999_999) + 1:06d}"


def transmission_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%m%d%H%M%S")


def _terminal(terminal_id: str) -> demo.DemoTerminal:
    for t in demo.TERMINALS:
        if t.terminal_id == terminal_id:
            return t
    raise AtmUsageError(f"terminal {terminal_id!r} is not in the demo data (its TPK is unknown)")


def financial(
    proc: str,
    pan: str,
    pin: str,
    amount: int,
    terminal_id: str = "GAB00001",
    stan: str | None = None,
    transmission: str | None = None,
    read: str = "keyed",
) -> Message:
    """A 0200 as the demo ATM ``terminal_id`` sends it, PIN block under its test TPK.

    ``read``: ``keyed`` (field 2, entry mode 021, no track), or how a card reader gives a demo
    card: ``chip`` (track 2 equivalent with the iCVV, entry mode 051, ARQC in field 55) or
    ``stripe`` (magnetic stripe track 2 with the CVV, entry mode 901: a chip card's fallback).
    """
    term = _terminal(terminal_id)
    now = dt.datetime.now(dt.UTC)
    pin_block = switch_native.pin_block_encrypt(bytes.fromhex(term.tpk_clear), 0, pin, pan)
    msg = Message(
        "0200",
        {
            2: pan,
            3: proc,
            4: f"{amount:012d}",
            7: transmission or transmission_now(),
            11: stan or new_stan(),
            12: now.strftime("%H%M%S"),
            13: now.strftime("%m%d"),
            22: "021",
            32: term.acquirer_id,
            41: term.terminal_id,
            43: term.location[:40].ljust(40),
            49: f"{demo.CURRENCY:03d}",
            52: pin_block,
        },
    )
    if read != "keyed":
        _card_read(msg, pan, amount, chip=read == "chip")
    return msg


def _card_read(msg: Message, pan: str, amount: int, *, chip: bool) -> None:
    """Fields 35 and 22 (and 55 for a chip) as the ATM's reader gives them for a demo card;
    the PAN then comes from track 2 (``switch.core.card_checks`` documents its layout)."""
    card = next((c for c in demo.CARDS if c.pan == pan), None)
    if card is None:
        raise AtmUsageError("--read chip/stripe needs a demo card (--card): its track is unknown")
    del msg.fields[2]
    msg.fields[35] = testing.track2(card, chip=chip)
    msg.fields[22] = testing.CHIP_READ if chip else testing.STRIPE_READ
    if chip:
        msg.fields[55] = testing.emv_request_data(pan, amount)


def reversal(
    pan: str,
    amount: int,
    original_stan: str,
    original_transmission: str,
    terminal_id: str = "GAB00001",
    dispensed: int | None = None,
) -> Message:
    """A 0420 reversing the 0200 (``original_stan``, ``original_transmission``)."""
    term = _terminal(terminal_id)
    fields: dict[int, str | bytes] = {
        2: pan,
        3: "010000",
        4: f"{amount:012d}",
        7: transmission_now(),
        11: new_stan(),
        32: term.acquirer_id,
        41: term.terminal_id,
        49: f"{demo.CURRENCY:03d}",
        90: f"0200{original_stan}{original_transmission}{term.acquirer_id:0>11}{'0' * 11}",
    }
    if dispensed is not None:
        fields[95] = f"{dispensed:012d}{'0' * 12}{'C00000000' * 2}"
    return Message("0420", fields)


def sign(msg: Message, tak_clear: str, codec: Codec) -> Message:
    """``msg`` with its MAC (64 or 128) under the clear test TAK, as the ATM's PIN pad adds it."""
    data = MacLayout(codec).covered(msg)
    msg.fields[mac_field(msg)] = switch_native.mac_iso9797_1_alg3(bytes.fromhex(tak_clear), data)
    return msg


def mac_ok(answer: Message, tak_clear: str, codec: Codec) -> bool:
    """Whether the answer's MAC verifies under the clear test TAK."""
    mac = answer.fields.get(mac_field(answer))
    if not isinstance(mac, bytes):
        return False
    data = MacLayout(codec).covered(answer)
    expected = switch_native.mac_iso9797_1_alg3(bytes.fromhex(tak_clear), data)
    return bool(switch_native.constant_time_eq(expected, mac))


# ---- presenting answers --------------------------------------------------------------------


def dzd(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    units, cents = divmod(abs(minor), 100)
    return f"{sign}{units:,}.{cents:02d} DZD"


def parse_balances(field54: str) -> dict[str, int]:
    """{'ledger': ..., 'available': ...} from field 54 (20-character amount blocks)."""
    out: dict[str, int] = {}
    names = {"01": "ledger", "02": "available"}
    for i in range(0, len(field54) - 19, 20):
        block = field54[i : i + 20]
        name = names.get(block[2:4])
        if name and is_ascii_digits(block[8:]):
            value = int(block[8:])
            out[name] = -value if block[7] == "D" else value
    return out


def original_unknown(answer: Message) -> bool:
    """Whether a 0430 says the switch had no such original (recorded, nothing reversed)."""
    return answer.mti == "0430" and answer.fields.get(44) == ORIGINAL_NOT_FOUND


def describe(answer: Message) -> str:
    """The answer in words: approved with balances, or the decline reason and code."""
    code = str(answer.fields.get(39, "??"))
    lines = []
    if code == "00":
        auth = answer.fields.get(38)
        auth = auth if isinstance(auth, str) else None
        lines.append(f"APPROVED (00){f', authorization code {auth}' if auth else ''}")
        if original_unknown(answer):
            lines.append(
                "  the switch has no such original (check --stan and --transmission): "
                "the reversal is recorded, nothing was reversed"
            )
    else:
        lines.append(f"DECLINED ({code}): {response_text(code)}")
    field54 = answer.fields.get(54)
    if isinstance(field54, str):
        balances = parse_balances(field54)
        if "available" in balances:
            lines.append(f"  available balance: {dzd(balances['available'])}")
        if "ledger" in balances:
            lines.append(f"  ledger balance:    {dzd(balances['ledger'])}")
    return "\n".join(lines)


# ---- CLI -----------------------------------------------------------------------------------


def _amount(text: str) -> int:
    """DZD as a person types them (``5000``, ``12.5``) in minor units (``switch.amounts``)."""
    try:
        return amounts.to_minor(amounts.amount_text(text), minor=False)
    except amounts.AmountError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    card = demo.CARDS[0]
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="atm_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1", help="the switch's ISO 8583 host")
    common.add_argument(
        "--port", type=ascii_int, default=8583, help="its ISO 8583 port (default: 8583)"
    )
    common.add_argument(
        "--spec", default="ascii87", help="the listener's message spec (default: ascii87)"
    )
    common.add_argument(
        "--terminal",
        default=demo.TERMINALS[0].terminal_id,
        help="the demo ATM sending (field 41; its test TPK and TAK are used)",
    )
    common.add_argument(
        "--card",
        default=card.pan,
        help="PAN (default: the first demo card); any other card needs --pin",
    )
    common.add_argument(
        "--timeout", type=ascii_seconds, default=10.0, help="seconds to wait for the answer"
    )
    common.add_argument("--minor", action="store_true", help=amounts.MINOR_HELP)
    common.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    pin_help = "the cardholder's PIN (default: a demo card's own PIN)"
    w = sub.add_parser(
        "withdraw", parents=[common], help="cash withdrawal (0200, code 01)", epilog=EPILOG
    )
    w.add_argument("--pin", default=None, help=pin_help)
    w.add_argument("--amount", type=amounts.amount_text, required=True, help=amounts.AMOUNT_HELP)
    b = sub.add_parser(
        "balance", parents=[common], help="balance inquiry (0200, code 31)", epilog=EPILOG
    )
    b.add_argument("--pin", default=None, help=pin_help)
    for p in (w, b):
        p.add_argument(
            "--read",
            choices=READS,
            default="keyed",
            help="keyed PAN (default), chip (track 2 equivalent + ARQC) or stripe (fallback)",
        )
    r = sub.add_parser(
        "reverse", parents=[common], help="reverse a withdrawal (0420, field 90)", epilog=EPILOG
    )
    r.add_argument(
        "--amount", type=amounts.amount_text, required=True, help="the original amount, "
        + amounts.AMOUNT_HELP,
    )  # fmt: skip
    r.add_argument("--stan", required=True, help="the original's STAN (field 11)")
    r.add_argument("--transmission", required=True, help="the original's field 7 (MMDDhhmmss)")
    r.add_argument(
        "--dispensed", type=amounts.amount_text, default=None, help="partial: the cash really given"
    )


def _pin(args: argparse.Namespace) -> str:
    """``--pin``, or a demo card's own PIN: never the first demo card's PIN for another card."""
    if args.pin is not None:
        return str(args.pin)
    card = next((c for c in demo.CARDS if c.pan == args.card), None)
    if card is None:
        raise AtmUsageError("--pin: required for a card that is not a demo card (--card)")
    return card.pin


def _report(args: argparse.Namespace, msg: Message, answer: Message, mac: bool | None) -> None:
    """The answer on stdout: words for a person, or with ``--json`` one object."""
    masked = args.card[:6] + "*" * max(len(args.card) - 10, 0) + args.card[-4:]
    rrn = answer.fields.get(37)  # assigned by the switch: what `switch txn search --rrn` takes
    code = str(answer.fields.get(39, ""))
    if args.json:
        auth = answer.fields.get(38)
        f54 = answer.fields.get(54)
        doc: dict[str, Any] = {
            "operation": args.atm_command,
            "card": masked,
            "terminal": args.terminal,
            "stan": msg.text(11),
            "transmission": msg.text(7),
            "rrn": rrn if isinstance(rrn, str) else "",
            "response_code": code,
            "approved": code == "00",
            "reason": response_text(code),
            "auth_code": auth if isinstance(auth, str) else "",
            "amount_minor": int(msg.text(4)),
            "balances_minor": parse_balances(f54) if isinstance(f54, str) else {},
            "mac_verified": mac,
        }
        if args.atm_command == "reverse":
            doc["original_found"] = not original_unknown(answer)
        print(json.dumps(doc, indent=2))
        return
    if args.atm_command == "withdraw":
        what = f"withdrawal of {dzd(args.amount)}"
    elif args.atm_command == "balance":
        what = "balance inquiry"
    else:
        what = f"reversal of {dzd(args.amount)} (original STAN {args.stan})"
    print(f"{what} -- card {masked} at {args.terminal}")
    rrn_text = f", RRN {rrn}" if isinstance(rrn, str) else ""
    print(f"  STAN {msg.text(11)}, transmission {msg.text(7)}{rrn_text}")
    print(describe(answer))
    if mac is False:
        print("  WARNING: the answer's MAC does not verify under this ATM's TAK")


async def _run(args: argparse.Namespace) -> int:
    if args.atm_command == "withdraw":
        msg = financial("010000", args.card, _pin(args), args.amount, args.terminal, read=args.read)
    elif args.atm_command == "balance":
        msg = financial("310000", args.card, _pin(args), 0, args.terminal, read=args.read)
    else:
        msg = reversal(
            args.card, args.amount, args.stan, args.transmission, args.terminal, args.dispensed
        )
    client = AtmClient(args.spec)
    tak = _terminal(args.terminal).tak_clear
    if tak:  # this ATM has a MAC key: sign the request, check the answer
        sign(msg, tak, client.codec)
    await client.connect(args.host, args.port)
    try:
        answer = await client.request(msg, args.timeout)
    finally:
        await client.close()
    mac = mac_ok(answer, tak, client.codec) if tak else None
    _report(args, msg, answer, mac)
    if mac is False:
        return Exit.REFUSED
    return Exit.OK if answer.fields.get(39) == "00" else Exit.DECLINED


def main(args: argparse.Namespace) -> int:
    try:
        amounts.resolve(args, "amount", "dispensed")
        return asyncio.run(_run(args))
    except amounts.AmountError as exc:
        print(f"switch atm: --{exc}", file=sys.stderr)
        return Exit.USAGE
    except AtmUsageError as exc:
        print(f"switch atm: {exc}", file=sys.stderr)
        return Exit.USAGE
    except AtmError as exc:
        print(f"switch atm: {exc}", file=sys.stderr)
        return Exit.UNREACHABLE
