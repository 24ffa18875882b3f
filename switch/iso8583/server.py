"""The ISO 8583 acquirer listener: ATMs and POS networks connect here (docs/architecture.md §3).

One :class:`asyncio.Protocol` per connection (no stream objects on the hot path). Each framed
request becomes a task, so many requests are in flight per connection and answers go out as
they complete -- possibly out of order; acquirers match them by STAN (field 11).

Failure rules (docs/architecture.md §4):

* a frame that cannot be cut from the stream (bad length header, over ``max_frame``) or whose
  MTI cannot be read closes *that* connection only;
* a readable request MTI with undecodable or unusable fields gets the answer MTI with
  39 = 30 and the offending field named in the log; nothing reaches the core. The answer
  echoes the matching fields (7, 11, 32, 37, 41, ...) the request holds before its first bad
  field (``Codec.salvage``), so an acquirer's MUX pairing answers on 11 or 41 + 11 gets it;
* a repeat (4th MTI digit odd: 0201, 0421) is answered as its first transmission (0210,
  0430) on every path, as ISO 8583:1987 and jPOS do;
* back-pressure: with ``max_in_flight`` requests pending on a connection (or the transport's
  write buffer full) reading pauses until answers drain;
* a connection with nothing in flight and no traffic for ``idle_timeout`` seconds is closed.

MAC (fields 64/128, :mod:`switch.iso8583.mac`): a signed request is verified under its
terminal's TAK by the HSM before anything else (63 on a mismatch, 30 if the terminal has no
TAK or the MAC is not the last field), over the bytes exactly as received; its answer is
signed over the bytes then sent; ``require_mac`` also refuses unsigned requests from terminals
that have a TAK. A request from a terminal that is not ours uses the ZAK of the interchange
acquirer in field 32 instead (``switch.core.interchange``); such an acquirer must sign.

Logs never show a full PAN, PIN block, track 2 or EMV data (``Message.__repr__`` masks them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from switch.core.domain import Terminal
from switch.core.interchange import NO_MAC_KEY, MacKey, is_our_terminal, mac_key
from switch.core.model import ResponseCode
from switch.core.service import SwitchCore
from switch.hsm.client import HsmError
from switch.iso8583.codec import Codec, Iso8583Error
from switch.iso8583.framing import Frame, FrameSplitter, Framing, FramingError, frame, swap_tpdu
from switch.iso8583.listener_trace import trace_refused
from switch.iso8583.mac import MacLayout, MacPlacementError, mac_field
from switch.iso8583.mapping import (
    FINANCIAL_MTIS,
    REVERSAL_MTIS,
    FieldError,
    request_from_message,
    response_to,
    result_to_message,
)
from switch.iso8583.message import Message, answer_mti
from switch.iso8583.network import handle_network
from switch.observe.trace import CURRENT_CALL, ISO8583, Call

__all__ = ["IsoListener", "ListenerConfig", "start_iso_server"]

log = logging.getLogger("switch.iso8583.server")

_FORMAT_ERROR = ResponseCode.FORMAT_ERROR.value
MAC_FAILURE = "63"  # ISO 8583:1987 "security violation": the MAC (64/128) does not verify


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One acquirer listener: where it binds, its spec and framing, its limits."""

    host: str = "127.0.0.1"
    port: int = 8583
    spec: str = "ascii87"
    framing: Framing = field(default_factory=Framing)
    max_in_flight: int = 256  # per connection, before reading pauses
    idle_timeout: float = 300.0  # seconds without traffic (and nothing in flight)
    #: Refuse unsigned messages from terminals that have a TAK. Off by default: a signed
    #: message is always checked, and its answer signed, whatever this says.
    require_mac: bool = False
    zmk: str = ""  # zone master key under the LMK, for 0800/101 key changes ('' = refused)
    #: SO_REUSEPORT: several ``switch run --workers`` processes accept on the same port
    reuse_port: bool = False


class IsoListener:
    """Shared state of one listener: the core, the codec, the config, open connections."""

    def __init__(self, core: SwitchCore, config: ListenerConfig) -> None:
        self.core = core
        self.config = config
        self.codec = Codec(config.spec)
        self.mac_layout = MacLayout(self.codec)
        self.connections: set[_Connection] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _Connection(self),
            self.config.host,
            self.config.port,
            reuse_port=self.config.reuse_port or None,
        )
        return self.server

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests answer (up to ``grace`` s), close."""
        if self.server is not None:
            self.server.close()
        pending = [t for c in self.connections for t in c.tasks]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        for conn in list(self.connections):
            conn.close()
        if self.server is not None:
            await self.server.wait_closed()


async def start_iso_server(core: SwitchCore, config: ListenerConfig | None = None) -> IsoListener:
    """Start one acquirer listener on the running loop; ``await listener.close()`` to stop."""
    listener = IsoListener(core, config or ListenerConfig())
    await listener.start()
    return listener


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_idle_handle",
        "_last_activity",
        "_out",
        "_paused",
        "_write_paused",
        "listener",
        "pauses",
        "peer",
        "splitter",
        "tasks",
        "transport",
    )

    def __init__(self, listener: IsoListener) -> None:
        self.listener = listener
        self.splitter = FrameSplitter(listener.config.framing)
        self.tasks: set[asyncio.Task[None]] = set()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._paused = False
        self._write_paused = False
        self.pauses = 0  # times reading was paused for back-pressure (a metric)
        self._last_activity = time.monotonic()
        self._idle_handle: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []  # answers of this loop turn, written in one syscall

    # ---- connection lifecycle ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.listener.connections.add(self)
        self._arm_idle()
        log.info("acquirer connected from %s", self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self.transport = None
        log.info("acquirer %s disconnected", self.peer)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _arm_idle(self) -> None:
        timeout = self.listener.config.idle_timeout
        if timeout > 0:
            loop = asyncio.get_running_loop()
            self._idle_handle = loop.call_later(timeout, self._check_idle)

    def _check_idle(self) -> None:
        if self.transport is None:
            return
        idle = time.monotonic() - self._last_activity
        timeout = self.listener.config.idle_timeout
        if idle >= timeout and not self.tasks:
            log.info("closing idle connection from %s after %.0f s", self.peer, idle)
            self.transport.close()
            return
        loop = asyncio.get_running_loop()
        self._idle_handle = loop.call_later(max(timeout - idle, 0.5), self._check_idle)

    # ---- flow control ---------------------------------------------------------------------
    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        limit = self.listener.config.max_in_flight
        want_pause = self._write_paused or len(self.tasks) >= limit
        if want_pause and not self._paused:
            transport.pause_reading()
            self._paused = True
            self.pauses += 1
        elif self._paused and not self._write_paused and len(self.tasks) <= limit // 2:
            transport.resume_reading()
            self._paused = False

    # ---- requests -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        try:
            frames = self.splitter.feed(data)
        except FramingError as exc:
            log.warning("closing connection from %s: unreadable frame (%s)", self.peer, exc)
            self.close()
            return
        for fr in frames:
            self._dispatch(fr)
            if self.transport is None or self.transport.is_closing():
                return
        self._update_reading()

    def _dispatch(self, fr: Frame) -> None:
        received = time.perf_counter_ns()  # the trace's latency starts here (switch.observe)
        codec = self.listener.codec
        try:
            msg = codec.decode(fr.payload)
        except Iso8583Error as exc:
            # Answer with what could be read before the bad element -- STAN, terminal,
            # acquirer... -- or the acquirer's MUX cannot match the 30 to its request.
            partial, _ = codec.salvage(fr.payload)
            mti = partial.mti if partial is not None else None
            if partial is None or _answer_mti(partial.mti) is None:
                log.warning(
                    "closing connection from %s: unreadable message (MTI %r): %s",
                    self.peer,
                    mti,
                    exc,
                )
                self.close()
                return
            log.warning("format error from %s in %s: %s -> 30", self.peer, mti, exc)
            refusal = response_to(partial, _FORMAT_ERROR)
            trace_refused(partial, refusal, received)
            self._send(refusal, fr.tpdu)
            return
        if _answer_mti(msg.mti) is None:
            log.warning("closing connection from %s: MTI %s is not a request", self.peer, msg.mti)
            self.close()
            return
        task = asyncio.get_running_loop().create_task(
            self._handle(msg, fr.payload, fr.tpdu, received)
        )
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if self._paused:
            self._update_reading()

    async def _handle(
        self, msg: Message, payload: bytes, tpdu: bytes | None, received_ns: int
    ) -> None:
        answer: Message | bytes
        call = Call(ISO8583, msg.mti, received_ns)
        CURRENT_CALL.set(call)  # this task's own context
        try:
            answer = await self.answer(msg, payload)
        except Exception:  # a bug must not kill the connection nor leave the ATM waiting
            log.exception("error handling %s from %s", msg.mti, self.peer)
            answer = response_to(msg, ResponseCode.SYSTEM_MALFUNCTION.value)
        if not call.answered and isinstance(answer, Message):
            trace_refused(msg, answer, received_ns)  # answered here, not by the core
        self._send(answer, tpdu)

    async def answer(self, msg: Message, payload: bytes) -> Message | bytes:
        """The answer to ``msg`` (``payload``: the message exactly as received, which a MAC
        is checked over): a message, or -- when the request was signed -- the exact bytes of
        the signed answer, which must be sent as they are."""
        core = self.listener.core
        tid = msg.fields.get(41)
        terminal = core.terminal(tid.strip()) if isinstance(tid, str) else None
        # Our terminal's TAK, or the ZAK of the interchange acquirer (field 32) it came from.
        f32 = msg.fields.get(32)
        aid = f32 if isinstance(f32, str) else terminal.acquirer_id if terminal else ""
        acquirer = core.acquirer(aid)
        signed = 64 in msg.fields or 128 in msg.fields
        # Only an acquirer's ZAK is ever *required*: without a signature, require_mac or a
        # registered acquirer there is nothing to check (the common ATM case skips the rule).
        key = NO_MAC_KEY
        if signed or acquirer is not None or self.listener.config.require_mac:
            key = mac_key(terminal, aid, acquirer)
        if not is_our_terminal(terminal, aid, acquirer):
            terminal = None  # another acquirer's terminal with one of our ids: not ours
        if signed or (key.key and (key.required or self.listener.config.require_mac)):
            refused = await self._check_mac(msg, payload, key)
            if refused is not None:
                return refused
        answer = await self._answer(msg, terminal)
        if not signed:
            return answer

        async def mac_of(data: bytes) -> bytes:
            return await core.hsm.generate_mac(key.key_type, key.key, data)

        # MACed over the very bytes that are then sent
        _, wire = await self.listener.mac_layout.sign_with(answer, mac_of)
        return wire

    async def _check_mac(self, msg: Message, payload: bytes, key: MacKey) -> Message | None:
        """None if the MAC is right over the bytes received; otherwise the answer refusing
        the message."""
        try:
            received = self.listener.mac_layout.received(msg, payload)
        except MacPlacementError as exc:
            log.warning("format error from %s in %s: %s -> 30", self.peer, msg.mti, exc)
            return response_to(msg, _FORMAT_ERROR)
        if not key.key or received is None:
            field = received.field if received is not None else mac_field(msg)
            why = "terminal has no MAC key" if not key.key else "missing"
            log.warning(
                "format error from %s in %s: field %d: %s -> 30", self.peer, msg.mti, field, why
            )
            return response_to(msg, _FORMAT_ERROR)
        hsm = self.listener.core.hsm
        try:
            ok = await hsm.verify_mac(key.key_type, key.key, received.covered, received.mac)
        except HsmError as exc:
            log.error("MAC check failed in the HSM for %s: %s -> 96", self.peer, exc)
            return response_to(msg, ResponseCode.SYSTEM_MALFUNCTION.value)
        if not ok:
            log.warning(
                "MAC mismatch from %s in %s (field %d) -> 63", self.peer, msg.mti, received.field
            )
            return response_to(msg, MAC_FAILURE)
        return None

    async def _answer(self, msg: Message, terminal: Terminal | None) -> Message:
        mti = msg.mti
        core = self.listener.core
        if mti in FINANCIAL_MTIS or mti in REVERSAL_MTIS:
            try:
                req = request_from_message(msg, terminal)
            except FieldError as exc:
                log.warning("format error from %s in %s: %s -> 30", self.peer, mti, exc)
                return response_to(msg, _FORMAT_ERROR)
            result = await core.authorize(req)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s stan=%s -> %s %s",
                    mti,
                    req.txn_type,
                    req.stan,
                    result.response_code.value,
                    result.message,
                )
            return result_to_message(msg, result)
        if mti == "0800":
            return await handle_network(core, msg, self.listener.config.zmk)
        log.warning("unsupported MTI %s from %s -> 12", mti, self.peer)
        return response_to(msg, ResponseCode.INVALID_TRANSACTION.value)

    def _send(self, msg: Message | bytes, tpdu: bytes | None) -> None:
        """Frame and queue an answer: a message, or the exact bytes of a signed one."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the acquirer left; it will retransmit or reverse (docs/architecture.md §4)
        listener = self.listener
        try:
            payload = msg if isinstance(msg, bytes) else listener.codec.encode(msg)
            data = frame(
                payload,
                listener.config.framing,
                swap_tpdu(tpdu) if tpdu is not None else None,
            )
        except (Iso8583Error, FramingError) as exc:
            what = "signed" if isinstance(msg, bytes) else msg.mti
            log.error("cannot frame the %s answer for %s: %s", what, self.peer, exc)
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, []
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(b"".join(out))


def _answer_mti(mti: str) -> str | None:
    """The answer MTI of a request MTI (a repeat answered as its first transmission, as on
    every other path: :func:`~switch.iso8583.message.answer_mti`), None if not a request."""
    try:
        return answer_mti(mti)
    except ValueError:
        return None
