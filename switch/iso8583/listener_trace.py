"""The trace line of a request the ISO 8583 listener answers itself, before the core.

A 0200 answered 30 (undecodable, a field missing), 63 (a wrong MAC) or 12 (a message type
we do not handle) never reaches ``SwitchCore.authorize``, where every other transaction's
line is written (``switch.observe.trace``), yet an operator asked "why did ATM GAB00001 get
a 30 at 10:02" must find it by terminal and STAN too. So the listener writes its line, from
the request's own fields: no transaction id (nothing was journaled), channel and type
``unknown`` (the request was not mapped), the PAN masked like everywhere else. The WARNING
line logged beside it names the faulty field. Network management (08xx) is not a
transaction and has no line.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from switch.iso8583.message import Message
from switch.observe import trace

REASONS: Final = {
    "12": "refused by the ISO 8583 listener: message type not handled",
    "30": "refused by the ISO 8583 listener: format error (see the WARNING line)",
    "63": "refused by the ISO 8583 listener: MAC missing or wrong",
    "96": "refused by the ISO 8583 listener: internal error",
}


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _number(value: object) -> int:
    text = _text(value)
    return int(text) if text.isascii() and text.isdigit() else 0


def trace_refused(request: Message, answer: Message, received_ns: int) -> None:
    """One INFO line on ``switch.txn`` for ``request``, answered ``answer`` here."""
    if request.mti.startswith("08") or not trace.log.isEnabledFor(logging.INFO):
        return
    f = request.fields
    rc = _text(answer.fields.get(39))
    line = trace.TxnFields(
        "",
        trace.UNKNOWN,
        trace.ISO8583,
        request.mti,
        trace.UNKNOWN,
        _text(f.get(32)),
        _text(f.get(41)),
        _text(f.get(42)),
        _text(f.get(11)),
        _text(f.get(37)),
        trace.masked_pan(f.get(2)),
        _number(f.get(4)),
        _number(f.get(49)),
        rc,
        REASONS.get(rc, "refused by the ISO 8583 listener"),
        False,
        (time.perf_counter_ns() - received_ns) // 1000,
    )
    trace.emit(trace.TxnLine(line))
