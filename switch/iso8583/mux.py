"""Match answers from a remote host to the requests waiting for them (the MUX).

Many requests to one remote issuer are in flight on a single connection, and the host
answers in whatever order it finishes. Each request is keyed by its STAN (field 11), terminal
id (41) and acquirer id (32), when present: the fields an issuer echoes back (the STAN is the
acquirer's, passed through, so it is unique only per acquirer and terminal). A key already
in flight is refused rather than silently overwritten, so two callers can never receive
each other's answer.

The answer's MTI must fit the request: 0200 -> 0210. A repeat (0221, 0421) is answered as
its first transmission by ISO 8583:1987 (0230, 0430); some hosts answer 0231 / 0431, which
is accepted too.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from switch.iso8583.message import Message

__all__ = ["Answer", "Mux", "MuxKeyInUseError", "answer_mtis", "mux_key"]

MuxKey = tuple[str, str, str]


class Answer(NamedTuple):
    """An answer handed to its waiter: the decoded message and its bytes exactly as they
    came off the line (what its MAC, if any, is checked over)."""

    message: Message
    payload: bytes


def answer_mtis(request: Message) -> frozenset[str]:
    """The MTIs that answer ``request`` (ValueError if it is not a request)."""
    answer = request.response_mti()  # a repeat's first transmission's answer (0421 -> 0430)
    if int(request.mti[3]) % 2 == 1:  # ...or, from some hosts, its echo (0431)
        return frozenset({answer, answer[:3] + str(int(answer[3]) + 1)})
    return frozenset({answer})


class MuxKeyInUseError(ValueError):
    """A request with the same STAN and terminal id is already waiting for its answer."""


def mux_key(msg: Message) -> MuxKey:
    """(STAN, terminal id, acquirer id) of a request or of its answer (41 and 32 are ''
    when absent); raises KeyError without a STAN."""
    stan = msg.get(11)
    if not isinstance(stan, str) or not stan:
        raise KeyError("field 11: STAN missing")
    term = msg.get(41)
    acquirer = msg.get(32)
    return (
        stan,
        term.strip() if isinstance(term, str) else "",
        acquirer if isinstance(acquirer, str) else "",
    )


class Mux:
    """Pending requests by key; ``resolve`` hands an answer to its waiter."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[MuxKey, tuple[frozenset[str], asyncio.Future[Answer]]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def expect(self, request: Message) -> asyncio.Future[Answer]:
        """Register ``request``; the future gets the answer whose key and MTI match."""
        key = mux_key(request)
        if key in self._pending:
            raise MuxKeyInUseError(f"field 11: STAN {key[0]} already in flight for {key[1]!r}")
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending[key] = (answer_mtis(request), fut)
        return fut

    def forget(self, request: Message, fut: asyncio.Future[Answer]) -> None:
        """Drop ``fut`` (timed out or cancelled): a late answer is then unmatched."""
        try:
            key = mux_key(request)
        except KeyError:
            return
        entry = self._pending.get(key)
        if entry is not None and entry[1] is fut:
            del self._pending[key]
        if not fut.done():
            fut.cancel()

    def resolve(self, answer: Message, payload: bytes = b"") -> bool:
        """Deliver ``answer`` (received as ``payload``); False when nobody waits for it (late
        or unsolicited)."""
        try:
            key = mux_key(answer)
        except KeyError:
            return False
        entry = self._pending.get(key)
        if entry is None or answer.mti not in entry[0]:
            return False
        del self._pending[key]
        if not entry[1].done():
            entry[1].set_result(Answer(answer, payload))
        return True

    def fail_all(self, exc: BaseException) -> None:
        """The connection is gone: every waiter learns it now rather than at its time-out."""
        pending, self._pending = self._pending, {}
        for _, fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
