"""Builders of demo-data requests, for tests, benchmarks and the other parts' tests.

They produce *real* inputs: PIN blocks encrypted under the demo terminal's clear test TPK,
CVV2s from the demo CVK, ARQCs computed from the demo issuer master key -- the same things
an ATM, a card and a merchant would send.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import switch_native

from switch.core import demo
from switch.core.emv import arqc_transaction_data, encode_tlv, parse_tlv
from switch.core.model import (
    DZD,
    AuthRequest,
    AuthResult,
    Channel,
    OriginalRef,
    ResponseCode,
    TxnType,
)

if TYPE_CHECKING:
    from switch.core.service import SwitchCore

_stan = itertools.count(1)

CARD = demo.CARDS[0]  # active, 150,000 DZD, PIN 1234
POOR_CARD = demo.CARDS[1]  # active, 5,000 DZD
RICH_CARD = demo.CARDS[7]  # active, 1,000,000 DZD
ATM = demo.TERMINALS[0]
OTHER_ATM = demo.TERMINALS[1]
POS = demo.TERMINALS[2]
COUNTER = demo.TERMINALS[3]
ECOM = demo.MERCHANTS[0]
FUEL = demo.MERCHANTS[1]


def next_stan() -> str:
    return f"{next(_stan) % 1_000_000:06d}"


def pin_block(pan: str, pin: str, tpk_clear: str = ATM.tpk_clear) -> bytes:
    return switch_native.pin_block_encrypt(bytes.fromhex(tpk_clear), 0, pin, pan)


def withdrawal(
    pan: str = CARD.pan,
    amount: int = 500_000,
    pin: str = CARD.pin,
    terminal: demo.DemoTerminal = ATM,
    **kw: object,
) -> AuthRequest:
    channel = Channel.COUNTER if terminal.kind == "counter" else Channel.ATM
    base = AuthRequest(
        TxnType.CASH_WITHDRAWAL, channel, pan, amount, DZD, terminal.acquirer_id,
        terminal.terminal_id, next_stan(), "1129120000",
        pin_block=pin_block(pan, pin, terminal.tpk_clear),
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def balance_inquiry(pan: str = CARD.pan, pin: str = CARD.pin, **kw: object) -> AuthRequest:
    return replace(withdrawal(pan, 0, pin), txn_type=TxnType.BALANCE_INQUIRY, **kw)  # type: ignore[arg-type]


def ecommerce(
    txn_type: TxnType = TxnType.PURCHASE,
    pan: str = CARD.pan,
    amount: int = 250_000,
    expiry: str | None = None,
    key: str | None = None,
    **kw: object,
) -> AuthRequest:
    c = next(c for c in demo.CARDS if c.pan == pan) if pan.startswith(demo.ON_US_BIN) else CARD
    exp = expiry or c.expiry
    base = AuthRequest(
        txn_type, Channel.ECOMMERCE, pan, amount, DZD, demo.ACQUIRER_ID, ECOM.terminal_id,
        next_stan(), "1129120000", merchant_id=ECOM.merchant_id, expiry=exp,
        cvv2=demo.cvv2(pan, exp) if pan.startswith(demo.ON_US_BIN) else "123",
        idempotency_key=key or f"k-{next_stan()}-{id(object())}",
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def follow_up(
    txn_type: TxnType, transaction_id: str, amount: int, pan: str = "", **kw: object
) -> AuthRequest:
    """Capture / refund / void of a merchant payment by its transaction id."""
    base = AuthRequest(
        txn_type, Channel.ECOMMERCE, pan, amount, DZD, demo.ACQUIRER_ID, ECOM.terminal_id,
        next_stan(), "1129120000", merchant_id=ECOM.merchant_id,
        original=OriginalRef(transaction_id=transaction_id),
        idempotency_key=f"f-{next_stan()}-{id(object())}",
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def reversal_of(req: AuthRequest, amount: int | None = None, **kw: object) -> AuthRequest:
    """The 0400 an ATM sends for ``req`` (field 90 = the original's STAN and date)."""
    return replace(
        req,
        txn_type=TxnType.REVERSAL,
        amount=req.amount if amount is None else amount,
        stan=next_stan(),
        pin_block=None,
        original=OriginalRef(
            mti="0200", stan=req.stan, transmission=req.transmission, acquirer_id=req.acquirer_id
        ),
        **kw,  # type: ignore[arg-type]
    )


def emv_request_data(pan: str, amount: int, atc: int = 1, pan_seq: str = "00") -> bytes:
    """Field 55 with a genuine ARQC from the demo issuer master key (CVN 10-like layout)."""
    tags = {
        0x9F02: amount.to_bytes(6, "big").hex().encode(),
        0x9F03: bytes(6),
        0x9F1A: bytes.fromhex("0012"),
        0x95: bytes(5),
        0x5F2A: bytes.fromhex("0012"),
        0x9A: bytes.fromhex("261129"),
        0x9C: b"\x01",
        0x9F37: bytes.fromhex("A1B2C3D4"),
        0x82: bytes.fromhex("3C00"),
        0x9F36: atc.to_bytes(2, "big"),
        0x9F10: bytes.fromhex("06010A03A00000"),
        0x5F34: bytes.fromhex(pan_seq),
    }
    tags[0x9F02] = bytes.fromhex(f"{amount:012d}")
    data = arqc_transaction_data(tags)
    imk = bytes.fromhex(demo.MK_AC_CLEAR)
    icc = switch_native.emv_derive_icc_master_key_option_a(imk, pan, pan_seq)
    sk = switch_native.emv_derive_common_session_key(icc, tags[0x9F36])
    arqc = switch_native.emv_generate_ac(sk, data)
    body = b"".join(encode_tlv(t, v) for t, v in tags.items()) + encode_tlv(0x9F26, arqc)
    assert parse_tlv(body)[0x9F26] == arqc
    return body


CHIP_READ = "051"  # field 22: chip (contact) read, PIN entry capability
STRIPE_READ = "901"  # field 22: full magnetic stripe read


def track2(
    card: demo.DemoCard = CARD,
    *,
    chip: bool,
    service_code: str | None = None,
    cvv: str | None = None,
) -> str:
    """Track 2 as our cards carry it (``switch.core.card_checks``): PAN=YYMM SSS PVKI PVV CVV.

    ``chip``: the chip's track 2 equivalent, whose CVV is the iCVV (service code 999);
    otherwise the magnetic stripe's, with the CVV for the card's service code. The PVV is
    the real one (demo PVK); ``service_code`` / ``cvv`` override what the card would hold.
    """
    sc = service_code or card.service_code
    pvv = switch_native.pvv_generate(bytes.fromhex(demo.PVK_CLEAR), card.pan, demo.PVKI, card.pin)
    if cvv is None:
        cvk = bytes.fromhex(demo.CVK_CLEAR)
        cvv = switch_native.cvv_generate(cvk, card.pan, card.expiry, "999" if chip else sc)
    return f"{card.pan}={card.expiry}{sc}{demo.PVKI}{pvv}{cvv}"


def card_read(
    req: AuthRequest,
    *,
    chip: bool,
    service_code: str | None = None,
    cvv: str | None = None,
) -> AuthRequest:
    """``req`` as a terminal that read the card sends it: track 2 (field 35, see
    :func:`track2`) and entry mode (22); a chip read also carries field 55 with a genuine
    ARQC."""
    c = next(c for c in demo.CARDS if c.pan == req.pan)
    t2 = track2(c, chip=chip, service_code=service_code, cvv=cvv)
    return replace(
        req,
        track2=t2,
        service_code=t2.split("=", 1)[1][4:7],
        expiry=c.expiry,
        entry_mode=CHIP_READ if chip else STRIPE_READ,
        emv_data=emv_request_data(req.pan, req.amount) if chip else req.emv_data,
    )


def expected_arpc(pan: str, emv: bytes, arc: bytes, pan_seq: str = "00") -> bytes:
    tags = parse_tlv(emv)
    imk = bytes.fromhex(demo.MK_AC_CLEAR)
    icc = switch_native.emv_derive_icc_master_key_option_a(imk, pan, pan_seq)
    sk = switch_native.emv_derive_common_session_key(icc, tags[0x9F36])
    return switch_native.emv_arpc_method1(sk, tags[0x9F26], arc)


# -- running a core in a test ----------------------------------------------------------------
class ManualClock:
    """A clock a test sets by hand (epoch seconds), passed as ``SwitchCore.open(clock=...)``:
    the core then never reads the wall clock, so the test means the same on any date."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_core(state: Path, body: Callable[[SwitchCore], Awaitable[None]], **open_kw: Any) -> None:
    """``body`` on a core freshly opened on ``state`` (``SwitchCore.open(state, **open_kw)``),
    closed afterwards -- so the next ``run_core`` on the same state is a restart."""
    from switch.core.service import SwitchCore

    async def go() -> None:
        core = await SwitchCore.open(state, **open_kw)
        try:
            await asyncio.wait_for(body(core), 30)
        finally:
            await core.close()

    asyncio.run(go())


async def authorize_expecting(
    core: SwitchCore, req: AuthRequest, code: ResponseCode = ResponseCode.APPROVED
) -> AuthResult:
    """``core.authorize(req)``, asserting the response code it must get."""
    result = await core.authorize(req)
    assert result.response_code is code, result
    return result
