"""Digits are 0-9: Arabic-Indic, full-width and other Unicode digits are refused at the edge.

``\\d``, ``str.isdigit`` and ``int()`` all accept ``٣٠١٢``. Before, such an expiry passed the
gRPC checks and ended in a TypeError (UNAVAILABLE), a CVV2 in an HSM error, a PAN in a 14.
Now each is INVALID_ARGUMENT naming the field over real gRPC, a format error (30) in the
core whatever channel it came from, and an argparse error naming the option in the CLIs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from switch import cli
from switch.api.testing import Harness
from switch.api.testing import run_with_api as run
from switch.core import demo
from switch.core import testing as t
from switch.core.model import ResponseCode, TxnType
from switch.core.service import SwitchCore
from switch.digits import ascii_int, ascii_seconds, is_ascii_digits
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import types_pb2 as pb

CARD = demo.CARDS[0]
CVV2 = demo.cvv2(CARD.pan, CARD.expiry)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def arabic(digits: str) -> str:
    """The same number in Arabic-Indic digits (U+0660..U+0669)."""
    return "".join(chr(0x660 + int(d)) for d in digits)


def fullwidth(digits: str) -> str:
    """The same number in full-width digits (U+FF10..U+FF19)."""
    return "".join(chr(0xFF10 + int(d)) for d in digits)


async def status_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    return e.value.code(), e.value.details() or ""


def test_the_helpers() -> None:
    assert is_ascii_digits("0123456789")
    for bad in ("", "12a", arabic("3012"), fullwidth("3012"), "\u00b2", " 1", "1 "):
        assert not is_ascii_digits(bad), bad
    assert int(arabic("8583")) == 8583  # what plain int() does, hence ascii_int
    assert ascii_int("8583") == 8583
    with pytest.raises(Exception, match="digits 0-9"):
        ascii_int(arabic("8583"))
    assert ascii_seconds("2.5") == 2.5
    for bad in ("0", "inf", "nan", "-1", arabic("10"), "1e3"):
        with pytest.raises(Exception, match="seconds"):
            ascii_seconds(bad)


def arabic_pan_passing_a_naive_luhn() -> str:
    """Our card's number in Arabic-Indic digits, its last digit chosen so that a Luhn check
    computing ``ord(c) - 48`` passes (the API's own check did; the core then answered 14)."""
    from switch.api.mapping import luhn_ok

    return next(p for k in "0123456789" if luhn_ok(p := arabic(CARD.pan[:-1] + k)))


@pytest.mark.parametrize(
    ("card", "field"),
    [
        (pb.Card(pan=arabic_pan_passing_a_naive_luhn(), expiry=CARD.expiry, cvv2=CVV2), "card.pan"),
        (pb.Card(pan=CARD.pan, expiry=arabic(CARD.expiry), cvv2=CVV2), "card.expiry"),
        (pb.Card(pan=CARD.pan, expiry=fullwidth(CARD.expiry), cvv2=CVV2), "card.expiry"),
        (pb.Card(pan=CARD.pan, expiry=CARD.expiry, cvv2=arabic(CVV2)), "card.cvv2"),
        (pb.Card(pan=CARD.pan, expiry=CARD.expiry, cvv2=CVV2, otp=arabic("123456")), "card.otp"),
    ],
)
def test_non_ascii_digits_in_a_sale_are_invalid_argument_naming_the_field(
    state: Path, card: pb.Card, field: str
) -> None:
    async def body(h: Harness) -> None:
        req = mpb.CardPaymentRequest(
            idempotency_key="u-1", amount=pb.Money(amount_minor=1000, currency=12), card=card
        )
        code, msg = await status_of(h.client.payments.Sale(req, metadata=h.client.metadata))
        assert code is INVALID and msg.startswith(f"{field}:"), (code, msg)
        assert h.core.store.query("SELECT COUNT(*) FROM journal") == [(0,)]

    run(state, body)


def test_non_ascii_digits_elsewhere_in_the_api(state: Path) -> None:
    async def body(h: Harness) -> None:
        code, msg = await status_of(h.client.start_verification(arabic(CARD.pan), 100))
        assert code is INVALID and msg.startswith("pan:"), msg
        code, msg = await status_of(h.client.list_payments(page_token=arabic("12")))
        assert code is INVALID and msg.startswith("page_token:"), msg
        code, msg = await status_of(h.client.get_payment(arabic("000000000001")))
        assert code is grpc.StatusCode.NOT_FOUND and msg.startswith("payment_id:"), msg

    run(state, body)


def test_the_core_refuses_them_whatever_the_channel(state: Path) -> None:
    async def body(core: SwitchCore) -> None:
        fmt = ResponseCode.FORMAT_ERROR
        for kw in ({"expiry": arabic(CARD.expiry)}, {"cvv2": arabic(CVV2)}, {"otp": arabic("1")}):
            r = await core.authorize(replace(t.ecommerce(), **kw))  # type: ignore[arg-type]
            assert r.response_code is fmt, (kw, r)
        r = await core.authorize(t.ecommerce(pan=arabic(CARD.pan)))
        assert r.response_code is ResponseCode.INVALID_CARD_NUMBER, r
        # track 2 as an acquirer sends it, its CVV in Arabic-Indic digits
        card_read = t.card_read(t.withdrawal(), chip=False)
        assert card_read.track2 is not None
        track = card_read.track2[:-3] + arabic(card_read.track2[-3:])
        r = await core.authorize(replace(card_read, track2=track))
        assert r.response_code is fmt and "track 2" in r.message, r
        # a bill reference: the biller's pattern is \d{12}, which no longer takes these
        bill = t.ecommerce(
            TxnType.BILL_PAYMENT, amount=345_000, biller_id="SONELGAZ",
            bill_reference=arabic("000000000001"),
        )  # fmt: skip
        r = await core.authorize(bill)
        assert r.response_code is fmt and r.message.startswith("bill_reference:"), r
        assert core.store.query("SELECT COUNT(*) FROM postings") == [(0,)]

    t.run_core(state, body, durable=False)


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["atm", "withdraw", "--amount", arabic("5000")], "--amount"),
        (["atm", "withdraw", "--amount", "Infinity"], "--amount"),
        (["atm", "withdraw", "--amount", "1e3"], "--amount"),
        (["atm", "balance", "--port", arabic("8583")], "--port"),
        (["run", "--iso-port", arabic("8583")], "--iso-port"),
        (["run", "--grpc-port", fullwidth("50051")], "--grpc-port"),
        (["pay", "sale", arabic("250000"), "--pan", CARD.pan, "--expiry", "3012"], "amount"),
        (["pay", "refund", "000000000001", arabic("100")], "amount"),
        (["pay", "--timeout", arabic("10"), "list"], "--timeout"),
        (["atm", "balance", "--timeout", "nan"], "--timeout"),
    ],
)
def test_cli_options_take_ascii_digits_only(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--cvv2", "123"] if argv[0] == "pay" and argv[1] == "sale" else argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err, err


def test_atm_amounts_in_dzd() -> None:
    from switch.atm import _amount

    assert _amount("5000") == 500_000
    assert _amount("12.5") == 1_250
    assert _amount("0.05") == 5


def test_run_iso_listener_port_in_ascii_digits(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "switch.cli", "run", "--state-dir", str(tmp_path / "var"),
         "--iso-listener", f"{arabic('8584')}:binary87", "--http-port", "-1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert "--iso-listener" in out.stderr and "PORT:SPEC" in out.stderr, out.stderr
