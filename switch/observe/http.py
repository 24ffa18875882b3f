"""A minimal HTTP/1.1 server for probes and scrapes: GET/HEAD, one request per connection.

Why our own: the endpoint serves three fixed paths to a load balancer and Prometheus, and a
framework would bring a second event-loop model and its own dependencies into the process
that answers ATMs. What it must guarantee is the opposite of features: a slow or malicious
client can never stall the switch. So the request line and headers must arrive within
``read_timeout`` seconds and fit in ``max_head`` bytes (else 408/431, or a plain close), the
answer's write is bounded too, every response says ``Connection: close``, request bodies are
never read, and at most ``max_connections`` clients hold a socket at once.

A probe must be answered even while that many clients sit idle (a load balancer that sees
no answer takes the switch out of service, or restarts it). So a new connection that finds
every slot taken sheds the oldest *idle* client -- one that has not yet sent a complete
request head, and so is owed nothing -- and takes its place. Only when every slot is busy
answering (each bounded by the write time-out and the linger) is the new connection closed
on accept. An idle-connection flood thus costs ``max_connections`` sockets and never blocks
a client that sends its request at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger("switch.observe.http")

READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 5.0
MAX_HEAD = 8192  # request line + headers, bytes
MAX_CONNECTIONS = 64
LINGER_S = 1.0  # after the answer: how long to drain what the client still sends
LINGER_READS = 16  # ... and at most this many reads of max_head bytes
METHODS = frozenset({"GET", "HEAD"})
PLAIN = "text/plain; charset=utf-8"
NOT_FOUND = "not found\n"  # the path is not echoed: nothing from the request is reflected

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: str
    content_type: str = PLAIN


Handler = Callable[[], Awaitable[Response]]


class BadRequest(Exception):
    """The request head is not HTTP/1.x as we accept it: answered 400 with this message."""


def _is_token(text: str) -> bool:
    return bool(text) and text.isascii() and text.isalpha() and text.isupper()


def parse_head(head: bytes) -> tuple[str, str]:
    """``(method, path)`` of a request head (through the blank line); BadRequest if malformed.

    Header values are not needed by any path, but each header line must still look like one:
    a garbage head is a 400, not a guess."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("request head is not ASCII") from None
    lines = text.rstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest("malformed request line")
    method, target, _ = parts
    if not _is_token(method):
        raise BadRequest("malformed method")
    if not target.startswith("/"):
        raise BadRequest("request target must be a path")
    for line in lines[1:]:
        name, sep, _value = line.partition(":")
        if not sep or not name or name != name.strip() or not name.isascii():
            raise BadRequest("malformed header line")
    return method, target.split("?", 1)[0]


def encode_response(response: Response, *, head_only: bool, extra: str = "") -> bytes:
    body = response.body.encode()
    reason = REASONS.get(response.status, "Unknown")
    head = (
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + (b"" if head_only else body)


class HttpServer:
    """Serves ``routes`` (path -> handler) over asyncio streams; see the module docstring."""

    def __init__(
        self,
        routes: Mapping[str, Handler],
        *,
        read_timeout: float = READ_TIMEOUT_S,
        write_timeout: float = WRITE_TIMEOUT_S,
        max_head: int = MAX_HEAD,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.routes = dict(routes)
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.max_head = max_head
        self.max_connections = max_connections
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # every live connection: close() ends them
        self._slots: set[asyncio.Task[None]] = set()  # those counted against max_connections
        # the slot holders still waiting for their request head, oldest first (dicts keep order)
        self._idle: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int) -> None:
        """Bind (OSError if the port is taken) and start accepting."""
        self.server = await asyncio.start_server(self._accept, host, port, limit=self.max_head)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting and drop the connections still open (none waits on anything)."""
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()
            self.server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._slots) >= self.max_connections and not self._shed_oldest_idle():
            writer.transport.abort()  # every slot is busy answering: the client retries
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._slots.add(task)
        self._idle[task] = writer
        try:
            await self._serve(reader, writer, task)
            await self._linger(reader, writer)
        except (ConnectionError, TimeoutError):
            pass  # the client went away or would not read its answer
        except Exception:
            log.exception("http: connection failed")
        finally:
            self._tasks.discard(task)
            self._slots.discard(task)
            self._idle.pop(task, None)
            writer.transport.abort()  # whatever is left is given up on: the socket goes now

    def _shed_oldest_idle(self) -> bool:
        """Free the slot of the client idle the longest (no full request head yet), if any.

        The slot is free at once and the socket is aborted here, not left to the victim's
        task (which only ends when it next runs, cancelled out of its wait for the head).
        False if every slot is busy answering a request."""
        if not self._idle:
            return False
        victim = next(iter(self._idle))
        writer = self._idle.pop(victim)
        self._slots.discard(victim)
        writer.transport.abort()
        victim.cancel()
        return True

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Close our side, then read (and drop) what the client still sends, briefly.

        Closing a socket with unread input (a POST body we never read) makes the kernel send
        a reset, which can destroy the answer before the client reads it; half-closing first
        and draining lets the answer arrive. Bounded in time and bytes like everything else."""
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            for _ in range(LINGER_READS):
                if not await reader.read(self.max_head):
                    return

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        task: asyncio.Task[None],
    ) -> None:
        try:
            async with asyncio.timeout(self.read_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            await self._send(writer, Response(408, "request head not received in time\n"))
            return
        except asyncio.LimitOverrunError:
            await self._send(writer, Response(431, f"request head over {self.max_head} bytes\n"))
            return
        except asyncio.IncompleteReadError:
            return  # closed before a full head: nothing to answer
        # A full head: this client is owed an answer and is never shed. (One answered 408 or
        # 431 above stays sheddable while that answer is written: it sent no request.)
        self._idle.pop(task, None)
        try:
            method, path = parse_head(head)
        except BadRequest as exc:
            await self._send(writer, Response(400, f"{exc}\n"))
            return
        head_only = method == "HEAD"
        handler = self.routes.get(path)
        if handler is None:
            await self._send(writer, Response(404, NOT_FOUND), head_only)
        elif method not in METHODS:
            allow = "Allow: GET, HEAD\r\n"
            response = Response(405, "method not allowed: use GET or HEAD\n")
            await self._send(writer, response, extra=allow)
        else:
            try:
                response = await handler()
            except Exception:
                log.exception("http: handler for %s failed", path)
                response = Response(500, "internal error\n")
            await self._send(writer, response, head_only)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        response: Response,
        head_only: bool = False,
        extra: str = "",
    ) -> None:
        writer.write(encode_response(response, head_only=head_only, extra=extra))
        async with asyncio.timeout(self.write_timeout):
            await writer.drain()
