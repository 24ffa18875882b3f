"""``switch pay ...`` against the merchant API served by another process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from switch.api.testing import ECOM
from switch.core import demo

CARD = demo.CARDS[0]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("api-cli")
    proc = subprocess.Popen(
        [sys.executable, "-m", "switch.api.standalone", "--state-dir", str(state), "--no-fsync"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        yield f"127.0.0.1:{int(line.split()[1])}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the server stops when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pay(
    target: str, *args: str, key: str = ECOM.api_key, after: bool = False
) -> subprocess.CompletedProcess[str]:
    """``switch pay --target T ARGS``, or with ``after`` ``switch pay ARGS --target T``."""
    env = {**os.environ, "SWITCH_API_KEY": key, "SWITCH_MERCHANT_ID": ECOM.merchant_id}
    env.pop("SWITCH_GRPC", None)
    where = ["--target", target]
    argv = [*args, *where] if after else [*where, *args]
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", "pay", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


CARD_ARGS = ["--pan", CARD.pan, "--expiry", CARD.expiry, "--cvv2", CVV2]


def test_sale_get_refund(target: str) -> None:
    r = pay(target, "--key", "cli-1", "sale", "1500", *CARD_ARGS)  # DZD
    assert r.returncode == 0, r.stderr
    sale = json.loads(r.stdout)
    assert sale["approved"] is True and sale["response_code"] == "00"
    assert CVV2 not in r.stdout and CARD.pan not in r.stdout
    got = json.loads(pay(target, "get", sale["payment_id"]).stdout)
    assert got["amount"]["amount_minor"] == 150_000  # a number, not the proto JSON string
    r = pay(target, "refund", sale["payment_id"], "500")
    assert r.returncode == 0 and json.loads(r.stdout)["approved"]
    assert json.loads(pay(target, "get", sale["payment_id"]).stdout)["refunded_minor"] == 50_000


def test_amounts_in_dzd_with_decimals_or_minor_units(target: str) -> None:
    r = pay(target, "sale", "12.5", *CARD_ARGS)
    assert r.returncode == 0, r.stderr
    paid = json.loads(pay(target, "get", json.loads(r.stdout)["payment_id"]).stdout)
    assert paid["amount"]["amount_minor"] == 1_250
    r = pay(target, "sale", "1250", "--minor", *CARD_ARGS)
    assert r.returncode == 0, r.stderr
    paid = json.loads(pay(target, "get", json.loads(r.stdout)["payment_id"]).stdout)
    assert paid["amount"]["amount_minor"] == 1_250
    for bad, flags in (("12.345", []), ("12.5", ["--minor"]), ("1e3", []), ("-5", [])):
        r = pay(target, "sale", *flags, *CARD_ARGS, "--", bad)
        assert r.returncode == 2 and "amount" in r.stderr and '"approved"' not in r.stdout, bad


def test_options_after_the_operation(target: str) -> None:
    r = pay(target, "sale", "10", *CARD_ARGS, "--key", "after-1", "--timeout", "20", after=True)
    assert r.returncode == 0, r.stderr
    again = pay(target, "sale", "10", *CARD_ARGS, "--key", "after-1", after=True)
    assert json.loads(again.stdout)["payment_id"] == json.loads(r.stdout)["payment_id"]
    # the operation's own defaults do not undo an option given before it
    r = pay(target, "--timeout", "20", "list", "--page-size", "1")
    assert r.returncode == 0 and len(json.loads(r.stdout)["payments"]) == 1, r.stderr


def test_target_from_switch_grpc_and_in_help(target: str) -> None:
    env = {**os.environ, "SWITCH_API_KEY": ECOM.api_key, "SWITCH_MERCHANT_ID": ECOM.merchant_id}
    r = subprocess.run(
        [sys.executable, "-m", "switch.cli", "pay", "list"],
        capture_output=True, text=True, timeout=30, env={**env, "SWITCH_GRPC": target},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    for argv in (["pay", "--help"], ["pay", "sale", "--help"]):
        h = subprocess.run(
            [sys.executable, "-m", "switch.cli", *argv], capture_output=True, text=True, timeout=30
        )
        text = " ".join(h.stdout.split())
        assert h.returncode == 0 and "SWITCH_GRPC" in text and "--minor" in text
        assert "1 declined" in text and "3 refused" in text and "4 cannot connect" in text


def test_decline_prints_defaults_and_errors_exit_codes(target: str) -> None:
    poor = demo.CARDS[1]
    card = ["--pan", poor.pan, "--expiry", poor.expiry, "--cvv2", demo.cvv2(poor.pan, poor.expiry)]
    r = pay(target, "sale", str(poor.balance + 1), "--minor", *card)
    assert r.returncode == 1
    declined = json.loads(r.stdout)
    assert declined["response_code"] == "51" and declined["approved"] is False
    r = pay(target, "sale", "0", *card)
    assert r.returncode == 3 and "INVALID_ARGUMENT" in r.stderr and "amount" in r.stderr
    r = pay(target, "bill-lookup", "ADE", "0000000001", key="wrong")
    assert r.returncode == 3 and "UNAUTHENTICATED" in r.stderr
    with socket.socket() as s:  # a port nobody listens on: held bound, so nobody can meanwhile
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
        r = pay(closed, "--timeout", "10", "list")
    assert r.returncode == 4 and "UNAVAILABLE" in r.stderr, r.stderr
    r = pay(target, "list", key="")
    assert r.returncode == 2 and "--api-key" in r.stderr


def test_a_closed_pipe_ends_quietly(target: str) -> None:
    """``switch pay list | head -1``: the reader is gone before we write (deterministic)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "SWITCH_API_KEY": ECOM.api_key, "SWITCH_MERCHANT_ID": ECOM.merchant_id}
    try:
        r = subprocess.run(
            [sys.executable, "-m", "switch.cli", "pay", "--target", target, "list"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, env=env, timeout=30,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert r.stderr == "" and r.returncode == 141


def test_bill_lookup_and_pay(target: str) -> None:
    r = pay(target, "bill-lookup", "AT", "021000001")
    assert r.returncode == 0 and json.loads(r.stdout)["amount_due"]["amount_minor"] == 250000
    r = pay(target, "bill", "AT", "021000001", "2500", *CARD_ARGS)
    assert r.returncode == 0, r.stderr


def test_help_lists_operations(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "switch.cli", "pay", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0 and "sale" in r.stdout and "transfer" in r.stdout


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_server_reflection_v1_and_v1alpha(target: str, version: str) -> None:
    """grpcurl asks v1 first, older tools v1alpha: both list our services and describe them.
    (v1's messages are v1alpha's, field for field, so the v1alpha classes encode them.)"""
    from grpc_reflection.v1alpha import reflection_pb2 as rpb

    method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    with grpc.insecure_channel(target) as channel:
        call = channel.stream_stream(
            method,
            request_serializer=rpb.ServerReflectionRequest.SerializeToString,
            response_deserializer=rpb.ServerReflectionResponse.FromString,
        )
        asks = [
            rpb.ServerReflectionRequest(list_services=""),
            rpb.ServerReflectionRequest(file_containing_symbol="switch.v1.Payments"),
        ]
        listed, described = list(call(iter(asks), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {"switch.v1.Payments", "grpc.health.v1.Health"} <= names
    assert {
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    assert described.file_descriptor_response.file_descriptor_proto
