"""The trace of every transaction: one INFO line on the ``switch.txn`` logger per answer.

Where it is written: ``SwitchCore.authorize`` (through ``Telemetry.answered``), the one
point both wire layers pass, so no channel can forget it. What only the wire knows -- its
name for the operation (the MTI, or the gRPC method) and when the request arrived -- it
leaves in ``CURRENT_CALL`` before it calls the core; the ISO listener and the gRPC
interceptor each set it in the task that serves the request, so concurrent requests never
see each other's call. ``Call.on_answer`` lets the wire learn the transaction id as soon
as the core has one (the gRPC layer puts it in the answer's metadata).

What a line holds: transaction id, channel (atm, pos, counter, ecommerce), interface
(iso8583, grpc, or core for an in-process caller), operation, transaction type, acquirer,
terminal, merchant, STAN, RRN (the acquirer's, else the one the switch assigned: the
transaction id, as journaled and answered in field 37), the PAN masked (first 6 / last 4
at most), amount and currency (minor units, ISO 4217 numeric), response code, reason,
whether it replays an earlier answer, and the latency in microseconds from the request's
arrival to the core's answer. Never a PIN block, CVV2, track 2, one-time code, EMV data
or the full PAN: the fields are picked one by one from the request, nothing is copied
wholesale.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final, NamedTuple

from switch.core.model import AuthRequest, AuthResult

TRACE_LOGGER: Final = "switch.txn"
MAX_REASON: Final = 200  # characters of the core's reason kept in a line
UNKNOWN: Final = "unknown"  # a channel or type that is not one of ours (declined 12)

ISO8583: Final = "iso8583"
GRPC: Final = "grpc"
IN_PROCESS: Final = "core"

log = logging.getLogger(TRACE_LOGGER)
_json_str = json.JSONEncoder(ensure_ascii=False).encode  # a str as a JSON string literal
_BARE = re.compile(r"[A-Za-z0-9_.:/*+@-]+")


@dataclass(slots=True)
class Call:
    """What the wire layer knows about the request it is serving."""

    interface: str  # ISO8583 / GRPC
    operation: str  # the MTI ("0200") or the RPC ("Sale")
    received_ns: int  # time.perf_counter_ns() when the request arrived
    on_answer: Callable[[str], None] | None = None  # told the transaction id, if any
    answered: bool = False  # set once the core answered (and traced) this request


CURRENT_CALL: ContextVar[Call | None] = ContextVar("switch_current_call", default=None)


def masked_pan(pan: object) -> str:
    """First 6 and last 4 characters at most; shorter or odd values entirely masked."""
    if not isinstance(pan, str) or not pan:
        return ""
    if len(pan) < 13:
        return "*" * len(pan)
    return f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}"


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


class TxnFields(NamedTuple):
    """One transaction's trace, in the order the text format prints it."""

    txn_id: str
    channel: str
    interface: str
    op: str
    txn_type: str
    acquirer: str
    terminal: str
    merchant: str
    stan: str
    rrn: str
    pan: str
    amount: int
    currency: int
    rc: str
    reason: str
    replayed: bool
    latency_us: int


class TxnLine:
    """The log record's message: ``str()`` renders the fields as ``key=value`` pairs.

    Being the message itself, the text is built only if a handler formats it, and the JSON
    formatter takes the typed fields instead. Values the switch makes (ids, enums, numbers)
    are printed as they are; those a request brings are quoted when they are not one token,
    so a line stays one line whatever was sent."""

    __slots__ = ("fields",)

    def __init__(self, fields: TxnFields) -> None:
        self.fields = fields

    def __str__(self) -> str:
        f = self.fields
        q = _logfmt
        return (
            f"txn_id={q(f.txn_id)} channel={f.channel} interface={f.interface} op={q(f.op)} "
            f"txn_type={f.txn_type} acquirer={q(f.acquirer)} terminal={q(f.terminal)} "
            f"merchant={q(f.merchant)} stan={q(f.stan)} rrn={q(f.rrn)} pan={q(f.pan)} "
            f"amount={f.amount} currency={f.currency} rc={f.rc} reason={q(f.reason)} "
            f"replayed={'true' if f.replayed else 'false'} latency_us={f.latency_us}"
        )

    def json_fields(self) -> str:
        """The fields as the members of a JSON object (no braces), typed: what the JSON
        log format appends after ``ts``, ``level``, ``logger`` and ``msg``. Written out
        here rather than by ``json.dumps`` of a dict: a third of the cost, same text."""
        f = self.fields
        s = _json_str
        return (
            f'"txn_id":{s(f.txn_id)},"channel":{s(f.channel)},"interface":{s(f.interface)},'
            f'"op":{s(f.op)},"txn_type":{s(f.txn_type)},"acquirer":{s(f.acquirer)},'
            f'"terminal":{s(f.terminal)},"merchant":{s(f.merchant)},"stan":{s(f.stan)},'
            f'"rrn":{s(f.rrn)},"pan":{s(f.pan)},"amount":{f.amount},"currency":{f.currency},'
            f'"rc":{s(f.rc)},"reason":{s(f.reason)},'
            f'"replayed":{"true" if f.replayed else "false"},"latency_us":{f.latency_us}'
        )


def _logfmt(value: str) -> str:
    """A value as printed: bare when it is one token (the common case, checked first with
    ``str.isalnum``, which costs a fraction of the regular expression), else JSON-quoted."""
    if value.isalnum() or _BARE.fullmatch(value):
        return value
    return json.dumps(value, ensure_ascii=False) if value else '""'


def fields(
    req: AuthRequest,
    result: AuthResult,
    interface: str,
    operation: str,
    latency_us: int,
    channel: str,
    txn_type: str,
) -> TxnFields:
    """The trace of ``req`` answered ``result``; ``channel`` and ``txn_type`` are the
    caller's label values (``UNKNOWN`` for a value that is not ours)."""
    return TxnFields(
        result.transaction_id or "",
        channel,
        interface,
        operation,
        txn_type,
        _text(req.acquirer_id),
        _text(req.terminal_id),
        _text(req.merchant_id),
        _text(req.stan),
        _text(req.rrn or result.transaction_id),  # as journaled: ours if none came
        masked_pan(req.pan),
        req.amount if type(req.amount) is int else 0,
        req.currency if type(req.currency) is int else 0,
        result.response_code._value_,
        result.message[:MAX_REASON],
        result.replayed,
        latency_us,
    )


class TxnRecord(logging.LogRecord):
    """The log record of a trace line, made for a fraction of a ``LogRecord``'s cost.

    ``LogRecord.__init__`` works out a dozen attributes per record (file and module names
    from the path, thread, process, the message's arguments) that are the same for every
    trace line or printed by no format here: it was a third of a line's cost (cProfile of
    20,000 lines). They are computed once (``_FIXED``) and copied into each record's
    ``__dict__`` in one update -- formatters read the instance dict (``%(name)s``), so
    class attributes would not do -- then the message and the times are set as
    ``LogRecord`` sets them."""

    def __init__(self, line: TxnLine) -> None:  # no super().__init__: the point
        d = self.__dict__
        d.update(_FIXED)
        d["msg"] = line
        ct = time.time()
        d["created"] = ct
        d["msecs"] = int((ct - int(ct)) * 1000) + 0.0
        d["relativeCreated"] = (ct - _START) * 1000


def _fixed() -> dict[str, object]:
    """What every trace record holds, as ``LogRecord`` would set it for ``emit``'s call."""
    model = logging.LogRecord(TRACE_LOGGER, logging.INFO, __file__, 0, "", (), None, "emit")
    fixed = dict(model.__dict__)
    for per_record in ("msg", "created", "msecs", "relativeCreated"):
        del fixed[per_record]
    return fixed


_FIXED: Final = _fixed()
_START: Final = float(getattr(logging, "_startTime", time.time()))  # as LogRecord's


def emit(line: TxnLine) -> None:
    """Log ``line`` at INFO on ``switch.txn`` (the caller checked the level).

    A ``TxnRecord`` + ``handle`` rather than ``log.info``: the same record for handlers,
    filters and formatters, without the stack walk that finds the caller's file and line
    or the per-record work of ``LogRecord.__init__``, none of which a format here prints."""
    log.handle(TxnRecord(line))
