"""``switch atm``: an ATM simulator that speaks real ISO 8583 to a running switch.

It builds the 0200 (withdrawal, processing code 01; balance inquiry, 31) or the 0420 reversal
(field 90) an ATM sends, with a real PIN block (ISO 9564 format 0) encrypted under the
terminal's TPK -- the demo data's clear *test* TPK, as the ATM's secure PIN pad would hold it --
and prints the switch's answer in words. :class:`AtmClient` is also the pipelined client the
tests use: many requests in flight on one connection, answers matched by STAN.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import secrets
import sys

import switch_native

from switch.core import demo, testing
from switch.core.model import ResponseCode
from switch.digits import ascii_int, ascii_seconds, is_ascii_digits
from switch.iso8583.codec import Codec
from switch.iso8583.framing import FrameSplitter, Framing, frame
from switch.iso8583.mac import MacLayout, mac_field
from switch.iso8583.message import Message

__all__ = ["AtmClient", "AtmError", "describe", "parse_balances"]


class AtmError(RuntimeError):
    """The switch could not be reached or did not answer in time."""


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
    raise AtmError(f"terminal {terminal_id!r} is not in the demo data (its TPK is unknown)")


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
        raise AtmError("a card read (--read chip/stripe) needs a demo card: its track is unknown")
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


def describe(answer: Message) -> str:
    """The answer in words: approved with balances, or the decline reason and code."""
    code = str(answer.fields.get(39, "??"))
    try:
        reason = ResponseCode(code).name.replace("_", " ").lower()
    except ValueError:
        reason = "security violation (MAC)" if code == "63" else "unknown response code"
    lines = []
    if code == "00":
        auth = answer.fields.get(38)
        auth = auth if isinstance(auth, str) else None
        lines.append(f"APPROVED (00){f', authorization code {auth}' if auth else ''}")
    else:
        lines.append(f"DECLINED ({code}): {reason}")
    field54 = answer.fields.get(54)
    if isinstance(field54, str):
        balances = parse_balances(field54)
        if "available" in balances:
            lines.append(f"  available balance: {dzd(balances['available'])}")
        if "ledger" in balances:
            lines.append(f"  ledger balance:    {dzd(balances['ledger'])}")
    return "\n".join(lines)


# ---- CLI -----------------------------------------------------------------------------------


_DZD = re.compile(r"([0-9]+)(?:\.([0-9]{1,2}))?", re.ASCII)


def _amount(text: str) -> int:
    """DZD as a person types them (``5000``, ``12.5``) in minor units. ASCII digits only:
    ``Decimal`` would also take Arabic-Indic digits, ``1e3``, ``NaN`` or ``Infinity``."""
    m = _DZD.fullmatch(text)
    if m is None:
        raise argparse.ArgumentTypeError(
            f"amount {text!r}: DZD in digits 0-9, with at most 2 decimals"
        )
    return int(m[1]) * 100 + int((m[2] or "").ljust(2, "0"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    card = demo.CARDS[0]
    sub = parser.add_subparsers(dest="atm_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1")
    common.add_argument("--port", type=ascii_int, default=8583)
    common.add_argument("--spec", default="ascii87")
    common.add_argument("--terminal", default=demo.TERMINALS[0].terminal_id)
    common.add_argument("--card", default=card.pan, help="PAN (default: the first demo card)")
    common.add_argument("--timeout", type=ascii_seconds, default=10.0)
    w = sub.add_parser("withdraw", parents=[common], help="cash withdrawal (0200, code 01)")
    w.add_argument("--pin", default=card.pin)
    w.add_argument("--amount", type=_amount, required=True, help="in DZD, e.g. 5000")
    b = sub.add_parser("balance", parents=[common], help="balance inquiry (0200, code 31)")
    b.add_argument("--pin", default=card.pin)
    for p in (w, b):
        p.add_argument(
            "--read",
            choices=READS,
            default="keyed",
            help="keyed PAN (default), chip (track 2 equivalent + ARQC) or stripe (fallback)",
        )
    r = sub.add_parser("reverse", parents=[common], help="reverse a withdrawal (0420, field 90)")
    r.add_argument("--amount", type=_amount, required=True, help="the original amount in DZD")
    r.add_argument("--stan", required=True, help="the original's STAN (field 11)")
    r.add_argument("--transmission", required=True, help="the original's field 7 (MMDDhhmmss)")
    r.add_argument("--dispensed", type=_amount, default=None, help="partial: DZD really given")


async def _run(args: argparse.Namespace) -> int:
    if args.atm_command == "withdraw":
        msg = financial("010000", args.card, args.pin, args.amount, args.terminal, read=args.read)
        what = f"withdrawal of {dzd(args.amount)}"
    elif args.atm_command == "balance":
        msg = financial("310000", args.card, args.pin, 0, args.terminal, read=args.read)
        what = "balance inquiry"
    else:
        msg = reversal(
            args.card, args.amount, args.stan, args.transmission, args.terminal, args.dispensed
        )
        what = f"reversal of {dzd(args.amount)} (original STAN {args.stan})"
    client = AtmClient(args.spec)
    tak = _terminal(args.terminal).tak_clear
    if tak:  # this ATM has a MAC key: sign the request, check the answer
        sign(msg, tak, client.codec)
    await client.connect(args.host, args.port)
    try:
        answer = await client.request(msg, args.timeout)
    finally:
        await client.close()
    masked = args.card[:6] + "*" * max(len(args.card) - 10, 0) + args.card[-4:]
    print(f"{what} -- card {masked} at {args.terminal}")
    rrn = answer.fields.get(37)  # assigned by the switch: what `switch txn search --rrn` takes
    rrn_text = f", RRN {rrn}" if isinstance(rrn, str) else ""
    print(f"  STAN {msg.text(11)}, transmission {msg.text(7)}{rrn_text}")
    print(describe(answer))
    if tak and not mac_ok(answer, tak, client.codec):
        print("  WARNING: the answer's MAC does not verify under this ATM's TAK")
        return 2
    return 0 if answer.fields.get(39) == "00" else 1


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except AtmError as exc:
        print(f"switch atm: {exc}", file=sys.stderr)
        return 3
