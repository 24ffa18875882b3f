"""The HSM's TCP host-protocol server (payShield framing), for ``switch hsm serve``.

Framing: a 2-byte big-endian length (excluding itself), then ``header | command | fields``; the
header (fixed length, default 4) is echoed in the answer so a client can pipeline requests and
match answers. A connection is an ``asyncio.Protocol``: ``data_received`` cuts every complete
frame out of the buffer, runs it synchronously through the command core (crypto takes
microseconds, so no task per request) and writes all the answers of that read in one call.
A garbage frame (length above the maximum, shorter than header + command, a command code that is
not printable ASCII) closes only that connection.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import cast

from switch.hsm.commands import execute
from switch.hsm.core import HsmCore
from switch.hsm.lmk import Lmk

log = logging.getLogger("switch.hsm.server")

DEFAULT_PORT = 1500
DEFAULT_HEADER_LENGTH = 4
MAX_FRAME = 32 * 1024
_COMMAND_CHARS = frozenset(range(0x21, 0x7F))  # printable ASCII; unknown ones answer 68


class HostProtocolConnection(asyncio.Protocol):
    """One client connection; answers every complete frame in arrival order."""

    def __init__(
        self,
        core: HsmCore,
        header_length: int,
        max_frame: int,
        registry: set[HostProtocolConnection] | None = None,
    ) -> None:
        self.core = core
        self.registry = registry
        self.header_length = header_length
        self.max_frame = max_frame
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have its interface
        self.transport = cast(asyncio.Transport, transport)
        if self.registry is not None:
            self.registry.add(self)

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its requests (backpressure).
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.buffer.clear()
        if self.registry is not None:
            self.registry.discard(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        out: list[bytes] = []
        pos = 0
        size = len(buf)
        hlen = self.header_length
        core = self.core
        while size - pos >= 2:
            length = (buf[pos] << 8) | buf[pos + 1]
            if length > self.max_frame or length < hlen + 2:
                self._garbage(f"frame length {length}")
                return
            end = pos + 2 + length
            if end > size:
                break
            frame = bytes(buf[pos + 2 : end])
            pos = end
            command = frame[hlen : hlen + 2]
            if not _COMMAND_CHARS.issuperset(command):
                self._garbage("command code is not two printable ASCII characters")
                return
            answer = frame[:hlen] + execute(core, command, frame[hlen + 2 :])
            out.append(len(answer).to_bytes(2, "big") + answer)
        if pos:
            del buf[:pos]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            core.audit.flush()

    def _garbage(self, why: str) -> None:
        log.warning("closing HSM connection: garbage frame (%s)", why)
        self.buffer.clear()
        if self.transport is not None:
            self.transport.abort()


async def start_hsm_server(
    lmk: Lmk,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    header_length: int = DEFAULT_HEADER_LENGTH,
    authorised: bool = False,
    core: HsmCore | None = None,
    max_frame: int = MAX_FRAME,
) -> asyncio.Server:
    """Start serving the host protocol (port 0 picks a free port: read ``server.sockets``)."""
    hsm = core or HsmCore(lmk, authorised=authorised)
    loop = asyncio.get_running_loop()
    connections: set[HostProtocolConnection] = set()
    server = await loop.create_server(
        lambda: HostProtocolConnection(hsm, header_length, max_frame, connections), host, port
    )
    _connections[server] = connections
    return server


_connections: weakref.WeakKeyDictionary[asyncio.Server, set[HostProtocolConnection]] = (
    weakref.WeakKeyDictionary()
)


async def stop_hsm_server(server: asyncio.Server) -> None:
    """Stop listening and drop every open connection (``Server.close`` leaves them open)."""
    server.close()
    for conn in list(_connections.get(server, ())):
        if conn.transport is not None:
            conn.transport.abort()
    await server.wait_closed()


def bound_port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port
