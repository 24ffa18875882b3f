"""The trace of every transaction, for real (issue 12 section 4).

A ``switch run`` subprocess per log format serves an ISO 8583 withdrawal (``switch atm``)
and a gRPC sale; its stderr must hold one trace line for each, with the fields an operator
searches by and no full PAN or CVV2, and every log line must carry an ISO 8601 time with
its offset. The gRPC answers carry ``x-transaction-id`` (a refused call too). ``/metrics``
must show the latency histograms counting that traffic, the channel label, the process
families, and every metric the shipped Grafana dashboard queries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from switch.api.client import MerchantClient
from switch.api.testing import ECOM, Harness, run_with_api
from switch.api.tracing import TRANSACTION_ID_KEY
from switch.core import demo
from switch.core import testing as t
from switch.core.model import AuthResult, ResponseCode
from switch.core.service import SwitchCore
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.iso8583.codec import Codec
from switch.iso8583.framing import frame
from switch.iso8583.message import Message
from switch.iso8583.server import IsoListener
from switch.observe.logs import JsonFormatter, TextFormatter, configure_logging, iso_timestamp
from switch.observe.trace import TxnFields, TxnLine, masked_pan
from tests import test_iso_server_flows as iso_flows
from tests.pg_server import query_state
from tests.switch_proc import bound_ports, stop
from tests.test_observe_http import _atm_withdraw, _eventually, _samples

SWITCH = [sys.executable, "-m", "switch.cli"]
ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana" / "switch.json"
CARD = demo.CARDS[0]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)
ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
TEXT_LINE = re.compile(rf"^({ISO_TIME}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)$")
LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
SALE_AMOUNT = 123_400


def _logfmt(text: str) -> dict[str, str]:
    return {k: json.loads(v) if v.startswith('"') else v for k, v in LOGFMT.findall(text)}


class Switch:
    """``switch run --log-format FMT`` on free ports; stdout (banner) and stderr (the log)
    kept apart so every stderr line can be held to the log format."""

    def __init__(self, tmp: Path, log_format: str, sms_worker: str = "off") -> None:
        self.out = tmp / "stdout"
        self.err = tmp / "stderr"
        cmd = [*SWITCH, "run", "--state-dir", str(tmp / "var"), "--iso-port", "0"]
        cmd += ["--grpc-port", "0", "--http-port", "0", "--sms-worker", sms_worker]
        cmd += ["--log-format", log_format]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["SWITCH_SMS"] = f"file:{tmp / 'sms.log'}"
        self.proc = subprocess.Popen(
            cmd, stdout=self.out.open("wb"), stderr=self.err.open("wb"), env=env
        )
        _eventually("switch ready", lambda: "switch ready" in self.banner(), timeout=30)
        self.iso = bound_ports(self.out)[0]  # port 0: none picked free and taken meanwhile
        grpc_port = re.search(r"gRPC merchant API on 127\.0\.0\.1:(\d+)", self.banner())
        http_port = re.search(r"HTTP health/metrics on 127\.0\.0\.1:(\d+)", self.banner())
        assert grpc_port is not None and http_port is not None, self.banner()
        self.grpc = f"127.0.0.1:{grpc_port.group(1)}"
        self.http = int(http_port.group(1))

    def banner(self) -> str:
        assert self.proc.poll() is None, self.out.read_text() + self.err.read_text()
        return self.out.read_text(errors="replace")

    def log(self) -> str:
        return self.err.read_text(errors="replace")

    def metrics(self) -> str:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.http, timeout=10)
        try:
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            assert r.status == 200
            return r.read().decode()
        finally:
            conn.close()

    def stop(self) -> None:
        stop(self.proc)


async def _sale(target: str) -> tuple[str, str]:
    """A gRPC sale: (payment id, the x-transaction-id of its trailing metadata)."""
    async with MerchantClient(target, ECOM.merchant_id, ECOM.api_key) as client:
        req = mpb.CardPaymentRequest(
            idempotency_key="trace-sale-1",
            amount=client.money(SALE_AMOUNT),
            card=client.card(CARD.pan, CARD.expiry, CVV2),
        )
        call = client.payments.Sale(req, metadata=client.metadata, timeout=10)
        result = await call
        assert result.approved, result
        trailing = await call.trailing_metadata()
        return str(result.payment_id), str(trailing.get(TRANSACTION_ID_KEY) or "")


def _traffic(switch: Switch) -> tuple[str, str]:
    answer = _atm_withdraw(switch.iso)
    assert "APPROVED (00)" in answer, answer
    payment_id, metadata_id = asyncio.run(_sale(switch.grpc))
    assert metadata_id == payment_id  # the transaction id is the payment id a merchant sees
    # ... and opaque (switch.merchant_notify.ids): the trace line has the journal's id behind it
    assert payment_id.startswith("pay_")
    (txn_id,) = query_state(
        switch.out.parent / "var", "SELECT txn_id FROM payment_orders WHERE payment_id = ?",
        (payment_id,),
    )[0]  # fmt: skip
    return payment_id, str(txn_id)


def _no_card_secrets(text: str) -> None:
    for card in demo.CARDS:
        assert card.pan not in text
    assert f"cvv2={CVV2}" not in text and f'"cvv2":"{CVV2}"' not in text
    assert "pin_block" not in text and "track2" not in text


@pytest.fixture(scope="module")
def text_switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    running = Switch(tmp_path_factory.mktemp("trace-text"), "text")
    try:
        yield running
    finally:
        running.stop()


def test_text_trace_of_an_iso_withdrawal_and_a_grpc_sale(text_switch: Switch) -> None:
    _, txn_id = _traffic(text_switch)
    _eventually("two trace lines", lambda: text_switch.log().count("switch.txn:") >= 2)
    log = text_switch.log()
    traces: list[dict[str, str]] = []
    for line in log.splitlines():  # every line of the log is a log line in the one format
        m = TEXT_LINE.match(line)
        assert m is not None, f"not a log line: {line!r}"
        if m.group(3) == "switch.txn":
            assert m.group(2) == "INFO"
            traces.append(_logfmt(m.group(4)))
    iso = next(f for f in traces if f["interface"] == "iso8583")
    assert iso["op"] == "0200" and iso["channel"] == "atm"
    assert iso["txn_type"] == "cash_withdrawal" and iso["terminal"] == "GAB00001"
    assert iso["acquirer"] and re.fullmatch(r"\d{6}", iso["stan"])
    assert re.fullmatch(r"\d{12}", iso["txn_id"]) and "rrn" in iso
    assert iso["pan"] == f"{CARD.pan[:6]}{'*' * (len(CARD.pan) - 10)}{CARD.pan[-4:]}"
    assert (iso["amount"], iso["currency"], iso["rc"]) == ("500000", "12", "00")
    assert iso["reason"] == "approved" and iso["replayed"] == "false"
    assert int(iso["latency_us"]) > 0
    sale = next(f for f in traces if f["interface"] == "grpc")
    assert (sale["op"], sale["channel"], sale["txn_type"]) == ("Sale", "ecommerce", "purchase")
    assert sale["txn_id"] == txn_id and sale["merchant"] == ECOM.merchant_id
    assert (sale["amount"], sale["rc"], sale["pan"]) == (str(SALE_AMOUNT), "00", iso["pan"])
    _no_card_secrets(log + text_switch.banner())


def test_histograms_count_the_traffic_by_channel(text_switch: Switch) -> None:
    before = _samples(text_switch.metrics())
    assert asyncio.run(_sale_with_key(text_switch.grpc, "trace-sale-2"))
    answer = _atm_withdraw(text_switch.iso)
    assert "APPROVED (00)" in answer, answer
    text = text_switch.metrics()
    after = _samples(text)

    def grew(key: str, by: float = 1) -> bool:
        return after.get(key, 0) >= before.get(key, 0) + by

    atm = 'channel="atm",txn_type="cash_withdrawal"'
    web = 'channel="ecommerce",txn_type="purchase"'
    assert grew(f"switch_authorization_duration_seconds_count{{{atm}}}")
    assert grew(f"switch_authorization_duration_seconds_count{{{web}}}")
    assert (
        after[
            'switch_authorization_duration_seconds_bucket{channel="atm",le="+Inf",txn_type="cash_withdrawal"}'
        ]
        == (after[f"switch_authorization_duration_seconds_count{{{atm}}}"])
    )
    assert after[f"switch_authorization_duration_seconds_sum{{{atm}}}"] > 0
    ok = 'switch_authorizations_total{channel="ecommerce",response_code="00",txn_type="purchase"}'
    assert grew(ok)
    assert grew('switch_hsm_call_duration_seconds_count{command="verify_pin_pvv"}')
    assert grew('switch_hsm_call_duration_seconds_count{command="verify_cvv"}')
    assert grew("switch_store_commit_duration_seconds_count")
    # the batch histogram counts the same commits and units as the older counters
    assert after["switch_store_commit_batch_units_count"] == after["switch_store_commits_total"]
    assert after["switch_store_commit_batch_units_sum"] == after["switch_store_units_total"]
    assert after["process_resident_memory_bytes"] > 0 and after["process_open_fds"] > 0
    assert "process_cpu_seconds_total" in after and "process_max_fds" in after
    _no_card_secrets(text)


async def _sale_with_key(target: str, key: str) -> bool:
    async with MerchantClient(target, ECOM.merchant_id, ECOM.api_key) as client:
        r = await client.sale(1000, CARD.pan, CARD.expiry, CVV2, idempotency_key=key)
        return bool(r.approved)


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "le", "offset", "bool", "and", "or"}


def _dashboard_metrics() -> set[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert len(exprs) >= 20
    names: set[str] = set()
    for expr in exprs:
        # out: label matchers, ranges, strings and grouping clauses (label names)
        bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
        bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
        found = {
            w
            for w in re.findall(r"[a-z_:][a-z0-9_:]*", bare)
            if "_" in w and w not in _PROMQL_WORDS and not w.startswith("histogram_")
        }
        assert found, f"an expression naming no metric: {expr}"
        names |= found
    return names


def test_every_dashboard_metric_is_in_a_scrape(text_switch: Switch) -> None:
    text = text_switch.metrics()
    typed = {ln.split(" ")[2] for ln in text.splitlines() if ln.startswith("# TYPE ")}
    samples = {key.split("{")[0] for key in _samples(text)}
    names = _dashboard_metrics()
    assert {"switch_authorization_duration_seconds_bucket", "process_open_fds"} <= names
    for name in sorted(names):
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in samples or name in typed or family in typed, f"{name}: not in a scrape"


@pytest.fixture(scope="module")
def json_switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    # the SMS worker as a child process: its log lines must be JSON too
    running = Switch(tmp_path_factory.mktemp("trace-json"), "json", sms_worker="process")
    try:
        yield running
    finally:
        running.stop()


def test_json_trace_lines_are_typed_objects(json_switch: Switch) -> None:
    """Every line on stderr, the SMS worker child's included, is one JSON object."""
    _, txn_id = _traffic(json_switch)
    _eventually("two trace lines", lambda: json_switch.log().count('"switch.txn"') >= 2)
    _eventually("the worker's line", lambda: '"switch.notify.service"' in json_switch.log())
    log = json_switch.log()
    docs = [json.loads(line) for line in log.splitlines() if line]  # every line is JSON
    for doc in docs:
        assert re.fullmatch(ISO_TIME, doc["ts"]), doc
        assert {"level", "logger", "msg"} <= doc.keys()
    traces = [d for d in docs if d["logger"] == "switch.txn"]
    iso = next(d for d in traces if d["interface"] == "iso8583")
    assert (iso["op"], iso["channel"], iso["rc"], iso["level"]) == ("0200", "atm", "00", "INFO")
    assert iso["amount"] == 500000 and iso["currency"] == 12 and iso["replayed"] is False
    assert isinstance(iso["latency_us"], int) and iso["latency_us"] > 0
    assert iso["pan"].startswith(CARD.pan[:6]) and iso["pan"].endswith(CARD.pan[-4:])
    assert set(iso["pan"][6:-4]) == {"*"} and iso["terminal"] == "GAB00001"
    sale = next(d for d in traces if d["interface"] == "grpc")
    assert sale["op"] == "Sale" and sale["txn_id"] == txn_id
    assert sale["merchant"] == ECOM.merchant_id and sale["amount"] == SALE_AMOUNT
    expected = {
        "ts", "level", "logger", "msg", "txn_id", "channel", "interface", "op", "txn_type",
        "acquirer", "terminal", "merchant", "stan", "rrn", "pan", "amount", "currency", "rc",
        "reason", "replayed", "latency_us",
    }  # fmt: skip
    assert set(sale) == expected  # nothing else: no PIN block, CVV2, track 2, OTP
    _no_card_secrets(log)


# ---- in process -------------------------------------------------------------------------


def test_a_refused_grpc_call_still_carries_its_transaction_id(state: Path) -> None:
    """The id is set when the core answers, before the servicer turns the answer into an
    error status: a refund above what was captured is FAILED_PRECONDITION, journaled as a
    refused attempt, and the merchant can still quote it."""

    async def body(h: Harness) -> None:
        sale = await h.client.sale(10_000, CARD.pan, CARD.expiry, CVV2, idempotency_key="s-1")
        req = mpb.RefundRequest(idempotency_key="r-1", payment_id=sale.payment_id)
        req.amount.CopyFrom(h.client.money(20_000))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await h.client.payments.Refund(req, metadata=h.client.metadata, timeout=10)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        trailing = refused.value.trailing_metadata()
        txn_id = trailing.get(TRANSACTION_ID_KEY)
        assert txn_id and txn_id != sale.payment_id
        rows = h.core.store.query(  # the quoted id is opaque: its journal row, through it
            "SELECT j.refused, j.txn_type FROM journal j JOIN payment_orders o "
            "ON o.txn_id = j.txn_id WHERE o.payment_id = ?",
            (txn_id,),
        )
        assert [tuple(r) for r in rows] == [(1, "refund")]
        # a call refused before the core (a malformed field) has no transaction: no id
        bad = mpb.CardPaymentRequest(idempotency_key="s-2", card=h.client.card(CARD.pan, "", ""))
        with pytest.raises(grpc.aio.AioRpcError) as malformed:
            await h.client.payments.Sale(bad, metadata=h.client.metadata, timeout=10)
        assert malformed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert malformed.value.trailing_metadata().get(TRANSACTION_ID_KEY) is None

    run_with_api(state, body)


def test_an_in_process_answer_is_traced_once_per_call(state: Path) -> None:
    """``SwitchCore.authorize`` called without a wire layer: interface ``core``; a
    retransmission is a line of its own, marked replayed; a validation decline (no journal
    row, no id) is traced too; a short or odd PAN is never shown."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    trace_log = logging.getLogger("switch.txn")
    trace_log.addHandler(handler)
    old_level = trace_log.level
    trace_log.setLevel(logging.INFO)

    replace = dataclasses.replace

    async def go() -> list[AuthResult]:
        core = await SwitchCore.open(state, durable=False)
        try:
            req = t.withdrawal()
            return [
                await core.authorize(req),
                await core.authorize(req),
                await core.authorize(replace(req, pan="12345", stan="999999")),
            ]
        finally:
            await core.close()

    try:
        first, again, bad = asyncio.run(go())
    finally:
        trace_log.removeHandler(handler)
        trace_log.setLevel(old_level)
    docs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(docs) == 3
    assert [d["interface"] for d in docs] == ["core"] * 3 and docs[0]["op"] == ""
    assert docs[0]["txn_id"] == first.transaction_id == docs[1]["txn_id"]
    assert (docs[0]["replayed"], docs[1]["replayed"]) == (False, True) and again.replayed
    assert bad.response_code is ResponseCode.INVALID_CARD_NUMBER
    assert docs[2]["txn_id"] == "" and docs[2]["pan"] == "*****" and docs[2]["rc"] == "14"


class _Captured:
    """The ``switch.txn`` records of a block, as JSON documents (the JSON formatter's)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.log = logging.getLogger("switch.txn")

    def __enter__(self) -> _Captured:
        self.level = self.log.level
        self.log.addHandler(self.handler)
        self.log.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self.log.removeHandler(self.handler)
        self.log.setLevel(self.level)

    def docs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


def test_requests_the_iso_listener_refuses_itself_are_traced_too(state: Path) -> None:
    """Answered 30 before the core (undecodable; a field missing), they still get a line an
    operator finds by terminal and STAN; an approved request gets exactly one; a network
    message (0800) none."""
    codec = Codec("ascii87")
    stans: list[str] = []

    async def body(core: SwitchCore, listeners: list[IsoListener]) -> None:
        reader, writer = await iso_flows._raw(listeners[0])
        bad = bytearray(codec.encode(iso_flows.withdraw(5_000)))  # a letter in field 4
        bad[bad.index(b"000000500000") + 3] = ord("X")
        missing = iso_flows.withdraw(5_000)
        del missing.fields[41]
        stans.append(str(missing.fields[11]))
        echo = Message("0800", {7: "1129120000", 11: "000777", 41: "GAB00001", 70: "301"})
        good = iso_flows.withdraw(1_000)
        for msg in (bytes(bad), missing, echo, good):
            writer.write(frame(msg if isinstance(msg, bytes) else codec.encode(msg)))
            (answer,) = await iso_flows._read_answers(reader, 1)
        assert answer.fields[39] == "00"
        writer.close()

    with _Captured() as captured:
        iso_flows.serve(state, body)
    docs = captured.docs()
    assert [(d["op"], d["rc"]) for d in docs] == [("0200", "30"), ("0200", "30"), ("0200", "00")]
    undecodable, no_terminal, approved = docs
    (missing_stan,) = stans
    # what could be read before the bad field 4: the PAN, masked (the answer echoes as much)
    assert undecodable["pan"] == masked_pan(CARD.pan) and undecodable["stan"] == ""
    assert undecodable["txn_id"] == "" and undecodable["channel"] == "unknown"
    assert str(undecodable["reason"]).startswith("refused by the ISO 8583 listener")
    assert undecodable["interface"] == "iso8583" and undecodable["latency_us"] is not None
    assert no_terminal["terminal"] == "" and no_terminal["amount"] == 500_000
    assert no_terminal["stan"] == missing_stan and no_terminal["acquirer"]
    assert no_terminal["currency"] == 12 and isinstance(no_terminal["latency_us"], int)
    assert approved["channel"] == "atm" and approved["txn_id"]
    assert CARD.pan not in captured.stream.getvalue()


# ---- units --------------------------------------------------------------------------------


def test_masked_pan_never_shows_more_than_six_and_four() -> None:
    assert masked_pan("6280580000000017") == "628058******0017"
    assert masked_pan("628058000000001") == "628058*****0001"
    assert masked_pan("123456789012") == "*" * 12  # too short to show anything
    assert masked_pan("") == "" and masked_pan(None) == "" and masked_pan(6280580000000017) == ""


def test_values_a_request_brings_cannot_forge_fields_or_lines() -> None:
    """Spaces, quotes, ``=`` and newlines in what a request carries are quoted (text) or
    escaped (JSON): the line parses back to exactly the values, and stays one line."""
    hostile = 'x" rc=00 \n2026-01-01T00:00:00.000+00:00 INFO forged'
    f = TxnFields(
        "", "pos", "iso8583", "0200", "purchase", "ACQ 1", hostile, "", 'st"an', "",
        "628058******0017", 5, 12, "05", 'do not honour: "why"', False, 7,
    )  # fmt: skip
    line = TxnLine(f)
    text = str(line)
    assert "\n" not in text
    parsed = _logfmt(text)
    assert parsed["terminal"] == hostile and parsed["acquirer"] == "ACQ 1"
    assert parsed["stan"] == 'st"an' and parsed["reason"] == 'do not honour: "why"'
    assert parsed["rc"] == "05" and parsed["merchant"] == "" and parsed["replayed"] == "false"
    record = logging.LogRecord("switch.txn", logging.INFO, __file__, 1, line, (), None)
    rendered = JsonFormatter().format(record)
    assert "\n" not in rendered
    doc = json.loads(rendered)
    assert {k: doc[k] for k in TxnFields._fields} == f._asdict()
    assert doc["msg"] == "transaction" and doc["logger"] == "switch.txn"
    assert TEXT_LINE.match(TextFormatter().format(record))


def test_iso_timestamp_has_milliseconds_and_the_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed instant, formatted in two zones (the process's ``TZ``)."""
    try:
        monkeypatch.setenv("TZ", "CET-1")  # POSIX rules: UTC+1, no zone database needed
        time.tzset()
        # 2026-03-01 12:00:00.250 UTC is 13:00:00.250 at UTC+1 (Algiers' time)
        assert iso_timestamp(1_772_366_400.25) == "2026-03-01T13:00:00.250+01:00"
        assert iso_timestamp(1_772_366_400.9999) == "2026-03-01T13:00:00.999+01:00"
        monkeypatch.setenv("TZ", "NST+3:30")  # UTC-3:30, a zone with a half-hour offset
        time.tzset()
        assert iso_timestamp(1_772_366_401.0) == "2026-03-01T08:30:01.000-03:30"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_formatters_render_exceptions_and_configure_replaces_handlers() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("y",), None)
        record.exc_info = sys.exc_info()
    doc = json.loads(JsonFormatter().format(record))
    assert doc["msg"] == "failed y" and "ValueError: boom" in doc["exc"]
    text = TextFormatter().format(record)
    assert TEXT_LINE.match(text.splitlines()[0]) and "ValueError: boom" in text
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        configure_logging("WARNING", "json", out)
        assert len(root.handlers) == 1 and root.level == logging.WARNING
        logging.getLogger("switch.test").warning("hello")
        assert json.loads(out.getvalue())["msg"] == "hello"
        with pytest.raises(ValueError, match="--log-format"):
            configure_logging("INFO", "xml", out)
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
