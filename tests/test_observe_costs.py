"""What the hot-path savings of the telemetry and the HSM audit must not change.

* The latency and HSM histograms are fed from pending lists folded at collection time
  (``switch.observe.telemetry.fold``): the exposition must be exactly what observing each
  value would give, values on a bucket bound included.
* ``switch run``'s log handler writes the lines of one event-loop turn together, in order,
  within the atomic pipe write size; WARNING and above at once.
* At INFO the audit logger gets no line for the routine successes of an authorization (PIN
  verification, translation) but still every key-management command, every refusal and every
  verification failure.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest

from switch.core import testing as t
from switch.core.model import AuthResult, ResponseCode
from switch.core.service import SwitchCore
from switch.hsm.audit import AUDIT_LOGGER_NAME
from switch.hsm.inprocess import InProcessHsm
from switch.hsm.lmk import Lmk
from switch.observe import trace
from switch.observe.logs import MAX_WRITE, BatchingStreamHandler
from switch.observe.telemetry import FOLD_AT, LATENCY_BUCKETS, fold


def _exposition(values_ns: list[int], folded: bool) -> bytes:
    reg = CollectorRegistry()
    h = Histogram("x_seconds", "x", ["a"], buckets=LATENCY_BUCKETS, registry=reg)
    child = h.labels("1")
    if folded:
        fold(child, values_ns)
    else:
        for v in values_ns:
            child.observe(v / 1e9)
    return generate_latest(reg)


def test_folding_gives_the_same_histogram_as_observing_each_value() -> None:
    bounds_ns = [round(b * 1e9) for b in LATENCY_BUCKETS]
    values = [0, 1, 999, 123_456_789, 20_000_000_000]  # 0, tiny, above the last bound
    values += bounds_ns + [b - 1 for b in bounds_ns] + [b + 1 for b in bounds_ns]
    values += [(i * 7_919_993) % 60_000_000 for i in range(3000)]
    assert _exposition(values, True) == _exposition(values, False)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


def test_a_core_counts_every_answer_whether_folded_early_or_at_the_scrape(state: Path) -> None:
    """More answers than ``FOLD_AT`` in one label set (folded once on the way) plus a few
    left pending: the counter and the histogram's count both say all of them."""

    async def body() -> None:
        core = await SwitchCore.open(state, durable=False, clock=t.ManualClock(1_743_400_000.0))
        try:
            tel = core.telemetry
            req = t.withdrawal(t.CARD.pan, 100_000, t.CARD.pin)
            result = await core.authorize(req)
            assert result.response_code is ResponseCode.APPROVED
            for _ in range(FOLD_AT + 10):  # the same answer again, as the trace would see it
                tel.answered(req, result, 0)
            n = FOLD_AT + 11
            reg = tel.registry
            labels = {"txn_type": "cash_withdrawal", "response_code": "00", "channel": "atm"}
            assert reg.get_sample_value("switch_authorizations_total", labels) == n
            timed = {"channel": "atm", "txn_type": "cash_withdrawal"}
            assert reg.get_sample_value("switch_authorization_duration_seconds_count", timed) == n
            hsm = reg.get_sample_value(
                "switch_hsm_call_duration_seconds_count", {"command": "verify_pin_pvv"}
            )
            assert hsm == 1
        finally:
            await core.close()

    asyncio.run(body())


def test_audit_at_info_keeps_key_management_and_failures_not_routine_successes(state: Path) -> None:
    logger = logging.getLogger(AUDIT_LOGGER_NAME)
    capture = _Capture()
    logger.addHandler(capture)
    old_level = logger.level
    logger.setLevel(logging.INFO)

    async def body() -> None:
        core = await SwitchCore.open(state, durable=False, clock=t.ManualClock(1_743_400_000.0))
        try:
            ok = await core.authorize(t.withdrawal(t.CARD.pan, 100_000, t.CARD.pin))
            assert ok.response_code is ResponseCode.APPROVED
            assert capture.lines == []  # one DC, rc 00: routine
            bad = await core.authorize(t.withdrawal(t.CARD.pan, 100_000, "0000"))
            assert bad.response_code is ResponseCode.INCORRECT_PIN
            assert len(capture.lines) == 1
            assert capture.lines[0].startswith("INFO cmd=DC rc=01 kcv=")
            hsm = InProcessHsm(Lmk.test(), authorised=True)
            await hsm.encrypt_pin("1234", t.CARD.pan)  # an LMK-encrypted PIN: not routine
            assert capture.lines[1] == "INFO cmd=BA rc=00 kcv=-"
        finally:
            await core.close()

    try:
        asyncio.run(body())
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)


class _Writes(io.StringIO):
    """A stream that remembers each ``write``."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, s: str) -> int:
        self.writes.append(s)
        return super().write(s)


def test_log_lines_of_one_loop_turn_are_written_together_in_order() -> None:
    stream = _Writes()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("switch.test.batching")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)

    async def turn() -> list[str]:
        for i in range(3):
            log.info("line %d", i)
        kept = list(stream.writes)  # nothing written yet: the turn is not over
        await asyncio.sleep(0)
        log.info("line 3")
        log.warning("alarm")  # written at once, after the line kept before it
        long = "x" * (MAX_WRITE // 2)
        for _ in range(3):
            log.info(long)  # more than one batch's bytes: written as the batch fills
        await asyncio.sleep(0)
        return kept

    try:
        kept = asyncio.run(turn())
        log.info("outside the loop")  # at once
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert kept == []
    assert stream.writes[0] == "INFO line 0\nINFO line 1\nINFO line 2\n"
    assert stream.writes[1] == "INFO line 3\nWARNING alarm\n"  # with the line before it
    assert all(len(w) <= MAX_WRITE for w in stream.writes)
    assert stream.getvalue().count("x" * (MAX_WRITE // 2)) == 3
    assert stream.writes[-1] == "INFO outside the loop\n"


def test_a_trace_record_serves_every_stdlib_format_field() -> None:
    """``TxnRecord`` skips ``LogRecord.__init__``: a formatter asking for any attribute of a
    record still gets one, and the message and level are the trace line's."""
    req = t.withdrawal()
    result = AuthResult(ResponseCode.APPROVED, "approved", "123456", "000000000001", 1, 1, 12)
    line = trace.TxnLine(trace.fields(req, result, "core", "", 42, "atm", "cash_withdrawal"))
    everything = " ".join(
        f"%({name})s"
        for name in (
            "name", "levelno", "levelname", "pathname", "filename", "module", "lineno",
            "funcName", "created", "asctime", "msecs", "relativeCreated", "thread",
            "threadName", "process", "processName", "message",
        )
    )  # fmt: skip
    text = logging.Formatter(everything).format(trace.TxnRecord(line))
    assert text.startswith("switch.txn 20 INFO ")
    assert text.endswith(str(line)) and "txn_id=000000000001" in text
    assert t.CARD.pan not in text  # masked as ever
