"""Locust load test of the ISO 8583 acquirer listener: each user is an ATM on its own TCP
connection sending 0200s (balance inquiries and 1,000 DZD withdrawals with real PIN blocks
under the demo ATM's test TPK) and waiting for each 0210.

Run against ``switch run``: ``locust -f loadtests/locustfile_iso.py --host tcp://127.0.0.1:8583``.
A 0210 counts as a success whatever its response code (a decline is a correct answer; the
demo cards' daily limits will decline withdrawals after a while), except 30 and 96, which
mean the switch could not process the request; no answer or a dropped connection is a
failure. Locust's ``request`` event carries the timing, so its UI and CSVs show the latency.
"""

from __future__ import annotations

import random
import socket
import time
from urllib.parse import urlsplit

import switch_native
from locust import User, between, task

from switch.core import demo
from switch.core.domain import CardStatus
from switch.iso8583.codec import Codec
from switch.iso8583.framing import FrameSplitter, frame
from switch.iso8583.message import Message

CODEC = Codec("ascii87")
ATM = demo.TERMINALS[0]
CARDS = [c for c in demo.CARDS if c.status is CardStatus.ACTIVE]
FAILURE_CODES = frozenset({"30", "96"})


class IsoClient:
    """A blocking ISO 8583 connection (Locust patches sockets to be cooperative)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.splitter = FrameSplitter()
        self.stan = random.randrange(1, 999_999)

    def next_stan(self) -> str:
        self.stan = self.stan % 999_999 + 1
        return f"{self.stan:06d}"

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
    """One ATM: its own connection, one request at a time, like a real cash machine."""

    wait_time = between(0.05, 0.2)  # type: ignore[no-untyped-call]
    client: IsoClient | None = None

    def on_start(self) -> None:
        url = urlsplit(self.host or "tcp://127.0.0.1:8583")
        self.client = IsoClient(url.hostname or "127.0.0.1", url.port or 8583)

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()

    def _send(self, name: str, proc: str, amount: int) -> None:
        assert self.client is not None
        card = random.choice(CARDS)
        msg = Message(
            "0200",
            {
                2: card.pan,
                3: proc,
                4: f"{amount:012d}",
                7: time.strftime("%m%d%H%M%S", time.gmtime()),
                11: self.client.next_stan(),
                32: ATM.acquirer_id,
                41: ATM.terminal_id,
                49: "012",
                52: switch_native.pin_block_encrypt(
                    bytes.fromhex(ATM.tpk_clear), 0, card.pin, card.pan
                ),
            },
        )
        start = time.perf_counter()
        exception: Exception | None = None
        length = 0
        try:
            answer = self.client.exchange(msg)
            length = len(answer.fields)
            code = answer.fields.get(39)
            if code in FAILURE_CODES:
                exception = RuntimeError(f"response code {code!s}")
        except (OSError, ValueError) as exc:
            exception = exc
        self.environment.events.request.fire(
            request_type="ISO8583",
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=exception,
            context={},
        )

    @task(3)
    def balance_inquiry(self) -> None:
        self._send("0200 balance inquiry", "310000", 0)

    @task(1)
    def withdrawal(self) -> None:
        self._send("0200 withdrawal 1,000 DZD", "010000", 100_000)
