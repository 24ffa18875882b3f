"""Locust load test of the ISO 8583 acquirer listener: each user is an ATM on its own TCP
connection, one request at a time, with real PIN blocks under its terminal's TPK.

Run against ``switch run`` loaded by ``switch loaddata`` (README, "Load tests")::

    locust -f loadtests/locustfile_iso.py --host tcp://127.0.0.1:8583 \\
        --cards-file loaddata/cards.csv --terminals loaddata/terminals.csv

Scenarios (``--mix``, default ``withdrawal=6,balance=3,reversal=1,wrong_pin=1``):
``withdrawal`` (0200, 1,000 to 20,000 DZD), ``balance`` (0200 balance inquiry),
``reversal`` (a withdrawal, then its 0420 as when the ATM could not dispense), ``wrong_pin``
(a mistyped PIN, answered 55, then the right one). Each answer is named by its response code
(``withdrawal 00``, ``wrong PIN 55``); a code the scenario does not expect is a failure.

Users spread over the terminals (round robin; in a distributed run each worker takes its own
share), and the STANs of a terminal come from one counter. A user that cannot connect reports
a failed ``connect`` and tries again after a back-off (0.1 s doubling to 2 s); a dropped
connection fails the request in flight and the next scenario connects again.
"""

from __future__ import annotations

import itertools
import random
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run by path (locust -f): the repository root is importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import switch_native
from locust import User, events, task
from locust.env import Environment

from loadtests.common import (
    Mix,
    Pacing,
    SelectedShape,
    add_common_arguments,
    check_startup,
    load_cards,
    partition,
    report,
    rotation,
)
from switch.core import demo
from switch.iso8583.codec import Codec
from switch.iso8583.framing import FrameSplitter, frame
from switch.iso8583.message import Message
from switch.loaddata import LoadCard, LoadTerminal, read_terminals

__all__ = ["AtmUser", "SelectedShape"]  # SelectedShape: Locust finds the --shape here

CODEC = Codec("ascii87")
SCENARIOS = ("withdrawal", "balance", "reversal", "wrong_pin")
DEFAULT_MIX = "withdrawal=6,balance=3,reversal=1,wrong_pin=1"
MAX_BACKOFF = 2.0


@events.init_command_line_parser.add_listener  # type: ignore[misc]
def _arguments(parser: Any) -> None:
    add_common_arguments(parser, DEFAULT_MIX)
    parser.add_argument(
        "--terminals",
        default="",
        help="terminals.csv of `switch loaddata` (terminal_id, acquirer_id, tpk); "
        "default: the demo ATM GAB00001",
    )


class Data:
    """The cards and terminals of this process, read once when the test starts."""

    cards: ClassVar[list[LoadCard]] = []
    terminals: ClassVar[Iterator[LoadTerminal]] = iter(())  # this process's share, rotating
    stans: ClassVar[dict[str, Iterator[int]]] = {}  # terminal id -> its STAN counter


@events.init.add_listener  # type: ignore[misc]
def _check(environment: Environment, **_: Any) -> None:
    check_startup(environment, SCENARIOS, [("terminals", read_terminals)])


@events.test_start.add_listener  # type: ignore[misc]
def _load(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None or getattr(opts, "master", False):
        return  # the master sends no requests
    Data.cards = load_cards(opts)
    if opts.terminals:
        terminals = read_terminals(Path(opts.terminals))
    else:
        atm = demo.TERMINALS[0]
        terminals = [LoadTerminal(atm.terminal_id, atm.acquirer_id, atm.tpk_clear)]
    Data.terminals = rotation(partition(environment, terminals))
    Data.stans = {t.terminal_id: itertools.count(random.randrange(999_999)) for t in terminals}


class IsoClient:
    """A blocking ISO 8583 connection (Locust patches sockets to be cooperative)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.splitter = FrameSplitter()

    def exchange(self, msg: Message) -> Message:
        self.sock.sendall(frame(CODEC.encode(msg)))
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the switch closed the connection")
            frames = self.splitter.feed(data)
            if frames:
                return CODEC.decode(frames[0].payload)

    def close(self) -> None:
        self.sock.close()


class AtmUser(User):
    """One ATM: its own terminal and connection, one request at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pacing = Pacing(self)
        self.mix = Mix(
            self,
            {
                "withdrawal": self.withdrawal,
                "balance": self.balance,
                "reversal": self.reversal,
                "wrong_pin": self.wrong_pin,
            },
            DEFAULT_MIX,
        )
        self.client: IsoClient | None = None
        self.terminal: LoadTerminal = next(Data.terminals)
        self.tpk = bytes.fromhex(self.terminal.tpk)
        self.backoff = 0.0
        opts = self.environment.parsed_options
        self.timeout = float(opts.timeout) if opts else 10.0

    def wait_time(self) -> float:
        return self.pacing.wait()

    def on_stop(self) -> None:
        self._drop()

    @task
    def scenario(self) -> None:
        if self._connected():
            self.mix.run_one()

    # -- scenarios ----------------------------------------------------------------------------

    def withdrawal(self) -> None:
        card = random.choice(Data.cards)
        self._send("withdrawal", self._0200(card, "010000", _amount()))

    def balance(self) -> None:
        self._send("balance", self._0200(random.choice(Data.cards), "310000", 0))

    def reversal(self) -> None:
        card = random.choice(Data.cards)
        original = self._0200(card, "010000", _amount())
        if self._send("reversal withdrawal", original) != "00":
            return  # nothing to reverse
        self._send("reversal", self._0420(original), expected_mti="0430")

    def wrong_pin(self) -> None:
        card = random.choice(Data.cards)
        wrong = f"{(int(card.pin) + 1) % 10_000:04d}"
        msg = self._0200(card, "010000", _amount(), pin=wrong)
        if self._send("wrong PIN", msg, expected=frozenset({"55"})) == "55":
            self._send("wrong PIN retry", self._0200(card, "010000", _amount()))

    # -- messages and the exchange ----------------------------------------------------------

    def _stan(self) -> str:
        return f"{next(Data.stans[self.terminal.terminal_id]) % 999_999 + 1:06d}"

    def _0200(self, card: LoadCard, proc: str, amount: int, pin: str | None = None) -> Message:
        block = switch_native.pin_block_encrypt(self.tpk, 0, pin or card.pin, card.pan)
        return Message(
            "0200",
            {
                2: card.pan,
                3: proc,
                4: f"{amount:012d}",
                7: time.strftime("%m%d%H%M%S", time.gmtime()),
                11: self._stan(),
                32: self.terminal.acquirer_id,
                41: self.terminal.terminal_id,
                49: f"{demo.CURRENCY:03d}",
                52: block,
            },
        )

    def _0420(self, original: Message) -> Message:
        acquirer = self.terminal.acquirer_id
        data = f"0200{original.text(11)}{original.text(7)}{acquirer:0>11}{'0' * 11}"
        return Message(
            "0420",
            {
                2: original.text(2),
                3: original.text(3),
                4: original.text(4),
                7: time.strftime("%m%d%H%M%S", time.gmtime()),
                11: self._stan(),
                32: acquirer,
                41: self.terminal.terminal_id,
                49: original.text(49),
                90: data,
            },
        )

    def _send(
        self,
        scenario: str,
        msg: Message,
        *,
        expected: frozenset[str] = frozenset({"00"}),
        expected_mti: str = "0210",
    ) -> str | None:
        """Send, wait for the answer, report it by code; the code, or None without one."""
        if self.client is None and not self._connected():
            return None
        assert self.client is not None
        started = time.perf_counter()
        try:
            answer = self.client.exchange(msg)
        except (OSError, ValueError) as exc:  # timeout, reset, closed, undecodable
            report(self, "ISO8583", scenario, started, error=exc)
            self._drop()  # the next scenario connects again
            return None
        if answer.mti != expected_mti or answer.get(11) != msg.get(11):
            error = RuntimeError(
                f"answer {answer.mti} STAN {answer.get(11)!r} to STAN {msg.text(11)}"
            )
            report(self, "ISO8583", scenario, started, error=error)
            self._drop()  # out of step: start afresh on a new connection
            return None
        code = str(answer.get(39, "??"))
        report(self, "ISO8583", scenario, started, code=code, expected=expected,
               length=len(answer.fields))  # fmt: skip
        return code

    def _connected(self) -> bool:
        """Connect when not connected; a failure is reported and backs off."""
        if self.client is not None:
            return True
        url = urlsplit(self.host or "tcp://127.0.0.1:8583")
        started = time.perf_counter()
        try:
            self.client = IsoClient(url.hostname or "127.0.0.1", url.port or 8583, self.timeout)
        except OSError as exc:
            report(self, "TCP", "connect", started, error=exc)
            self.backoff = min(MAX_BACKOFF, max(0.1, self.backoff * 2))
            time.sleep(self.backoff)  # cooperative: Locust patches time.sleep
            return False
        report(self, "TCP", "connect", started)
        self.backoff = 0.0
        return True

    def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _amount() -> int:
    """1,000 to 20,000 DZD in thousands, in minor units."""
    return random.randrange(1, 21) * 100_000
