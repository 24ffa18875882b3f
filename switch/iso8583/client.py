"""A persistent ISO 8583 connection to one remote host (the issuer side of an interchange).

The connection is opened once and kept: on connect the client signs on (0800, field 70 =
001) and only then accepts requests; while up it sends an echo (0800/301) every
``echo_interval`` seconds and drops the line when an echo goes unanswered (a host that no
longer answers is down even if TCP says otherwise); when the line drops it reconnects with
exponential back-off. Requests share the line: the :class:`~switch.iso8583.mux.Mux` hands
each answer to its caller, so many requests are in flight at once.

``request`` never queues behind a dead line: with the connection down it raises
:class:`ConnectionDownError` before anything is written, so the caller knows the host never
saw the request (nothing to reverse). A :class:`TimeoutError` means the opposite: the request
was written and its outcome is unknown.

With a :class:`~switch.iso8583.link_mac.LinkMac` every transaction message is signed (field
64/128) just before it is written -- over the bytes written -- and every answer must carry a
valid MAC over its bytes as received. An answer whose
MAC is missing or wrong is no answer: ``request`` raises :class:`AnswerMacError`, a
:class:`TimeoutError` -- the request was sent and its outcome is unknown (the real issuer may
have acted on it; the bytes we got may be forged), which is exactly the time-out case.

A framing with a TPDU (NAC-style links) sends the configured ``tpdu`` on every message and
answers the host's own 0800s with the TPDU it received, addresses swapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from pathlib import Path

from switch_native import Spec

from switch.iso8583.codec import Codec, Iso8583Error
from switch.iso8583.framing import (
    DEFAULT_FRAMING,
    TPDU_SIZE,
    FrameSplitter,
    Framing,
    FramingError,
    frame,
    swap_tpdu,
)
from switch.iso8583.link_mac import LinkMac, is_network
from switch.iso8583.message import Message
from switch.iso8583.mux import Answer, Mux
from switch.tasks import cancel_and_wait

__all__ = ["AnswerMacError", "ConnectionDownError", "IsoClient", "transmission_now"]

log = logging.getLogger(__name__)

SIGN_ON = "001"
ECHO = "301"


class ConnectionDownError(ConnectionError):
    """The remote host is not connected (or signed on): nothing was sent."""


class AnswerMacError(TimeoutError):
    """The request was sent but its answer's MAC is missing or wrong: no valid answer, so
    the outcome is unknown (a TimeoutError, handled like one)."""


def transmission_now() -> str:
    """Field 7: transmission date and time, MMDDhhmmss UTC."""
    return dt.datetime.now(dt.UTC).strftime("%m%d%H%M%S")


class IsoClient:
    """One signed-on connection to ``host:port`` with reconnect, echo and a MUX."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        spec: Spec | str | Path = "ascii87",
        framing: Framing = DEFAULT_FRAMING,
        connect_timeout: float = 3.0,
        echo_interval: float = 30.0,
        echo_timeout: float = 5.0,
        backoff_min: float = 0.1,
        backoff_max: float = 10.0,
        on_connected: Callable[[], None] | None = None,
        mac: LinkMac | None = None,
        tpdu: bytes | None = None,
    ) -> None:
        if framing.tpdu and (tpdu is None or len(tpdu) != TPDU_SIZE):
            raise ValueError(f"tpdu: this framing needs {TPDU_SIZE} bytes")
        if tpdu is not None and not framing.tpdu:
            raise ValueError("tpdu: this framing has no TPDU")
        self.name = name
        self.host = host
        self.port = port
        self.codec = Codec(spec)
        self.framing = framing
        self.connect_timeout = connect_timeout
        self.echo_interval = echo_interval
        self.echo_timeout = echo_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.on_connected = on_connected
        self.mac = mac
        self.tpdu = tpdu
        self.mux = Mux()
        self._stan = secrets.randbelow(999_999)
        self._writer: asyncio.StreamWriter | None = None
        self._signed_on = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # counters for tests, logs and metrics
        self.connects = 0
        self.echoes_answered = 0
        self.unmatched_answers = 0
        self.bad_macs = 0  # answers refused for a missing or wrong MAC

    # -- public ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True once signed on and until the line drops."""
        return self._signed_on.is_set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"iso-client-{self.name}")

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._signed_on.wait(), timeout)
        return self.connected

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self._drop(ConnectionDownError(f"{self.name}: client closed"))

    def next_stan(self) -> str:
        """A STAN of this client's own (network messages, reversals it originates)."""
        self._stan = self._stan % 999_999 + 1
        return f"{self._stan:06d}"

    async def request(self, msg: Message, timeout: float) -> Message:
        """Send ``msg`` and await its answer.

        Raises ConnectionDownError (not sent), TimeoutError (sent, no answer in time; also
        when the line drops while waiting: the host may have acted on it), AnswerMacError
        (a TimeoutError: sent, the answer's MAC is not valid) or MuxKeyInUseError; HsmError
        when the MAC cannot be generated (not sent).
        """
        self._writer_or_down()
        signing = self.mac is not None and not is_network(msg)
        wire: bytes | None = None
        if signing:
            assert self.mac is not None
            msg, wire = await self.mac.sign(msg)  # MACed over exactly these bytes
        writer = self._writer_or_down()  # the line may have dropped while the HSM worked
        answer, payload = await self._exchange(writer, msg, timeout, wire)
        if signing:
            assert self.mac is not None
            problem = await self.mac.problem(answer, payload)
            if problem is not None:
                self.bad_macs += 1
                log.warning(
                    "%s: %s answer to STAN %s refused: %s (treated as no answer)",
                    self.name, answer.mti, msg.get(11), problem,
                )  # fmt: skip
                raise AnswerMacError(f"remote issuer {self.name}: {problem}")
        return answer

    def _writer_or_down(self) -> asyncio.StreamWriter:
        writer = self._writer
        if not self.connected or writer is None or writer.is_closing():
            raise ConnectionDownError(f"remote issuer {self.name}: not connected")
        return writer

    # -- the line -------------------------------------------------------------------------
    async def _exchange(
        self,
        writer: asyncio.StreamWriter,
        msg: Message,
        timeout: float,
        wire: bytes | None = None,
    ) -> Answer:
        """Send ``msg`` (as ``wire`` when given: the exact bytes of a signed message) and
        await its answer."""
        payload = wire if wire is not None else self.codec.encode(msg)  # encode errors here
        data = frame(payload, self.framing, self.tpdu)
        fut = self.mux.expect(msg)
        try:
            writer.write(data)
            return await asyncio.wait_for(fut, timeout)
        except ConnectionDownError as exc:  # dropped while waiting: the outcome is unknown
            raise TimeoutError(str(exc)) from None
        finally:
            self.mux.forget(msg, fut)

    async def _run(self) -> None:
        backoff = self.backoff_min
        while not self._closing:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                log.info("%s: connect failed (%s), retry in %.1fs", self.name, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            self._writer = writer
            reading = asyncio.create_task(self._read(reader, writer))
            try:
                await self._sign_on(writer)
                backoff = self.backoff_min
                self.connects += 1
                log.info("%s: signed on to %s:%d", self.name, self.host, self.port)
                if self.on_connected is not None:
                    self.on_connected()
                await self._echo_until_down(writer, reading)
            except (OSError, TimeoutError, ConnectionDownError, Iso8583Error) as exc:
                log.warning("%s: line down (%s)", self.name, str(exc) or type(exc).__name__)
            finally:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reading
                self._drop(ConnectionDownError(f"remote issuer {self.name}: connection lost"))
            if not self._closing:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)

    def _drop(self, exc: ConnectionDownError) -> None:
        self._signed_on.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self.mux.fail_all(exc)

    def _network(self, code: str) -> Message:
        return Message("0800", {7: transmission_now(), 11: self.next_stan(), 70: code})

    async def _sign_on(self, writer: asyncio.StreamWriter) -> None:
        answer, _ = await self._exchange(writer, self._network(SIGN_ON), self.echo_timeout)
        if answer.get(39) != "00":
            raise ConnectionDownError(f"{self.name}: sign-on refused ({answer.get(39)!r})")
        self._signed_on.set()

    async def _echo_until_down(
        self, writer: asyncio.StreamWriter, reading: asyncio.Task[None]
    ) -> None:
        while not self._closing:  # also ends the loop if a cancellation was lost
            done, _ = await asyncio.wait({reading}, timeout=self.echo_interval)
            if done:
                return  # the host closed the line
            answer, _ = await self._exchange(writer, self._network(ECHO), self.echo_timeout)
            if answer.get(39) != "00":
                raise ConnectionDownError(f"{self.name}: echo refused ({answer.get(39)!r})")
            self.echoes_answered += 1

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        splitter = FrameSplitter(self.framing)
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            try:
                frames = splitter.feed(chunk)
            except FramingError as exc:
                log.error("%s: framing error from host: %s", self.name, exc)
                return
            for f in frames:
                try:
                    msg = self.codec.decode(f.payload)
                except Iso8583Error as exc:
                    log.error("%s: undecodable message from host: %s", self.name, exc)
                    continue
                if msg.mti == "0800":  # the host's own echo / sign-on: acknowledge it
                    reply = Message(
                        "0810", {k: v for k, v in msg.fields.items() if k in (7, 11, 70)}
                    )
                    reply[39] = "00"
                    tpdu = swap_tpdu(f.tpdu) if f.tpdu is not None else None
                    writer.write(frame(self.codec.encode(reply), self.framing, tpdu))
                elif not self.mux.resolve(msg, f.payload):
                    self.unmatched_answers += 1
                    log.warning("%s: unmatched %s (late or unknown)", self.name, msg.mti)
