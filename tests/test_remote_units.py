"""Remote issuer pieces without a network: outbound mapping (checked against the acquirer
listener's inbound mapping), answer parsing, the MUX, and the durable SAF queue."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest

from switch.core import testing as t
from switch.core.followups import ORIGINAL_TERMINAL
from switch.core.model import (
    AuthRequest,
    AuthResult,
    Channel,
    OriginalRef,
    ResponseCode,
    TxnType,
)
from switch.iso8583.codec import Codec
from switch.iso8583.mapping import (
    FieldError,
    answer_mti,
    balances_field,
    request_from_message,
    result_to_message,
)
from switch.iso8583.message import Message
from switch.iso8583.mux import Mux, MuxKeyInUseError
from switch.iso8583.remote import (
    RemoteIssuerConfig,
    acquirer_reversal,
    answer_to_result,
    completion_advice,
    load_remote_issuers,
    request_to_message,
    reversal_for,
)
from switch.iso8583.saf import SafQueue, SafSealError

PAN = "6270000000000018"
KEY = bytes(range(32))


@pytest.mark.parametrize("spec", ["ascii87", "binary87"])
@pytest.mark.parametrize(
    "req",
    [
        t.withdrawal(pan=PAN, amount=123_400),
        t.balance_inquiry(pan=PAN),
        replace(
            t.withdrawal(pan=PAN, amount=5_000),
            txn_type=TxnType.BILL_PAYMENT,
            biller_id="SONELGAZ",
            bill_reference="000000000001",
            rrn="123456789012",
            local_time=dt.datetime(2026, 11, 29, 12, 30, 5),
        ),
        replace(
            t.withdrawal(pan=PAN, amount=7_000),
            txn_type=TxnType.TRANSFER,
            destination_account="0001000002-25",
        ),
    ],
    ids=["withdrawal", "balance", "bill", "transfer"],
)
def test_outbound_mapping_reads_back_as_the_same_request(spec: str, req: AuthRequest) -> None:
    codec = Codec(spec)
    pin = bytes(range(8))
    wire = codec.decode(codec.encode(request_to_message(req, pin)))
    back = request_from_message(wire, None)  # the issuer side's inbound mapping
    assert back.txn_type is req.txn_type
    assert (back.pan, back.amount, back.currency) == (req.pan, req.amount, req.currency)
    assert (back.stan, back.transmission) == (req.stan, req.transmission)
    assert (back.acquirer_id, back.terminal_id) == (req.acquirer_id, req.terminal_id)
    assert back.pin_block == pin
    assert back.biller_id == req.biller_id and back.bill_reference == req.bill_reference
    assert back.destination_account == req.destination_account

    # fields 12/13 carry no year: the receiver takes the one nearest to its clock
    def mmdd_hhmmss(at: dt.datetime | None) -> str | None:
        return None if at is None else at.strftime("%m%d%H%M%S")

    assert mmdd_hhmmss(back.local_time) == mmdd_hhmmss(req.local_time)
    assert back.rrn == req.rrn


def test_timeout_reversal_names_the_original_in_field_90() -> None:
    req = t.withdrawal(pan=PAN, amount=50_000)
    original = request_to_message(req, None)
    rev = reversal_for(original, "000777")
    back = request_from_message(Codec().decode(Codec().encode(rev)), None)
    assert back.txn_type is TxnType.REVERSAL and back.amount == 50_000
    assert back.original is not None
    assert (back.original.mti, back.original.stan) == ("0200", req.stan)
    assert back.original.transmission == req.transmission
    assert back.original.acquirer_id is None  # same acquirer as field 32


def test_acquirer_reversal_needs_iso_original_data() -> None:
    req = t.reversal_of(t.withdrawal(pan=PAN))
    assert acquirer_reversal(req, "000001").text(90)[4:10] == req.original.stan  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="original"):
        acquirer_reversal(replace(req, original=None), "000001")


def test_answer_parsing_matches_the_listener_answers() -> None:
    req_msg = request_to_message(t.balance_inquiry(pan=PAN), None)
    res = AuthResult(ResponseCode.APPROVED, auth_code="A1B2C3", available_balance=990_000,
                     ledger_balance=-5, currency=12, issuer_script=b"\x91\x02ab")  # fmt: skip
    assert balances_field("00", res)
    answer = Codec().decode(Codec().encode(result_to_message(req_msg, res)))
    got = answer_to_result("x", answer)
    assert got.response_code is ResponseCode.APPROVED and got.auth_code == "A1B2C3"
    assert (got.available_balance, got.ledger_balance, got.currency) == (990_000, -5, 12)
    assert got.issuer_script == b"\x91\x02ab"
    odd = answer_to_result("x", Message("0210", {11: "000001", 39: "Z9"}))
    assert odd.response_code is ResponseCode.DO_NOT_HONOUR and "Z9" in odd.message


def test_config_from_mapping_names_missing_keys() -> None:
    c = RemoteIssuerConfig.from_mapping("rb", {"host": "h", "port": 9, "zpk": "U" + "0" * 32,
                                              "length_header": "ascii4", "timeout": 2})  # fmt: skip
    assert c.framing.header.value == "ascii4" and c.timeout == 2.0
    with pytest.raises(ValueError, match=r"remote_issuers\.rb\.zpk"):
        RemoteIssuerConfig.from_mapping("rb", {"host": "h", "port": 9})


@pytest.mark.parametrize(("key", "value"), [("port", [8583]), ("port", "x"), ("timeout", None)])
def test_config_from_mapping_names_a_bad_number(key: str, value: object) -> None:
    table: dict[str, object] = {"host": "h", "port": 9, "zpk": "U" + "0" * 32, key: value}
    with pytest.raises(ValueError, match=rf"remote_issuers\.rb\.{key}: .* is not a"):
        RemoteIssuerConfig.from_mapping("rb", table)


def test_config_saf_lease_outlasts_the_answer_wait() -> None:
    """A node renews its lease on an issuer's queue before each send, so a lease must be
    longer than the wait for an answer; unset, it follows the time-out."""
    base: dict[str, object] = {"host": "h", "port": 9, "zpk": "U" + "0" * 32, "timeout": 12}
    assert RemoteIssuerConfig.from_mapping("rb", base).lease == 3 * 12 + 5.0
    assert RemoteIssuerConfig.from_mapping("rb", {**base, "timeout": 2}).lease == 30.0
    assert RemoteIssuerConfig.from_mapping("rb", {**base, "saf_lease": 20}).lease == 20.0
    with pytest.raises(ValueError, match=r"remote_issuers\.rb\.saf_lease: must be longer"):
        RemoteIssuerConfig.from_mapping("rb", {**base, "saf_lease": 12})
    with pytest.raises(ValueError, match=r"remote_issuers\.rb\.saf_lease: 'x' is not a"):
        RemoteIssuerConfig.from_mapping("rb", {**base, "saf_lease": "x"})


def test_load_remote_issuers_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "remote.toml"
    path.write_text(
        '[remote_issuers.remote-bank]\nhost = "10.0.0.5"\nport = 8600\nzpk = "U00"\n'
        'spec = "binary87"\ntimeout = 4.5\n'
    )
    (c,) = load_remote_issuers(path)
    assert (c.name, c.host, c.port, c.spec, c.timeout) == ("remote-bank", "10.0.0.5", 8600,
                                                          "binary87", 4.5)  # fmt: skip
    # acquirer keys have one home, the [acquirers.<id>] tables, for both directions
    path.write_text(path.read_text() + '[remote_issuers.remote-bank.acquirer_zpks]\n"7" = "U1"\n')
    with pytest.raises(
        ValueError, match=r"remote_issuers\.remote-bank\.acquirer_zpks: .*acquirers"
    ):
        load_remote_issuers(path)
    path.write_text('[remote_issuers.x]\nhost = "h"\nport = 1\n')
    with pytest.raises(ValueError, match=r"remote_issuers\.x\.zpk"):
        load_remote_issuers(path)


def test_mux_matches_by_stan_and_terminal_out_of_order() -> None:
    async def go() -> None:
        mux = Mux()
        a = Message("0200", {11: "000001", 41: "T1      "})
        b = Message("0200", {11: "000001", 41: "T2      "})
        fa, fb = mux.expect(a), mux.expect(b)
        with pytest.raises(MuxKeyInUseError):
            mux.expect(Message("0200", {11: "000001", 41: "T1"}))
        assert not mux.resolve(Message("0110", {11: "000001", 41: "T2"}))  # wrong MTI class
        assert mux.resolve(Message("0210", {11: "000001", 41: "T2", 39: "51"}))
        assert mux.resolve(Message("0210", {11: "000001", 41: "T1", 39: "00"}))
        assert (await fa).message[39] == "00" and (await fb).message[39] == "51"
        assert not mux.resolve(Message("0210", {11: "000001", 41: "T1"}))  # late duplicate
        assert len(mux) == 0
        # the same STAN and terminal id from two acquirers (field 32) are two requests
        c = Message("0200", {11: "000009", 41: "T1", 32: "628058"})
        d = Message("0200", {11: "000009", 41: "T1", 32: "000099"})
        fc, fd = mux.expect(c), mux.expect(d)
        assert mux.resolve(Message("0210", {11: "000009", 41: "T1", 32: "000099", 39: "05"}))
        assert not fc.done() and (await fd).message[39] == "05"
        mux.forget(c, fc)
        assert fc.cancelled() and len(mux) == 0

    asyncio.run(go())


def test_saf_queue_is_durable_and_ordered(tmp_path: Path) -> None:
    async def go() -> None:
        q = SafQueue(tmp_path / "saf.db", KEY)
        first = await q.add("rb", Message("0420", {11: "000001", 52: b"\x00" * 8}))
        await q.add("rb", Message("0420", {11: "000002"}))
        await q.add("other", Message("0420", {11: "000003"}))
        await q.mark_attempt(first)
        q.close()
        q = SafQueue(tmp_path / "saf.db", KEY)  # as after a restart
        entries = await q.pending("rb")
        assert [e.message.text(11) for e in entries] == ["000001", "000002"]
        assert entries[0].attempts == 1 and entries[1].attempts == 0
        assert entries[0].message.binary(52) == b"\x00" * 8
        await q.acknowledge(first)
        assert await q.count("rb") == 1 and await q.count() == 2
        assert (tmp_path / "saf.db").stat().st_mode & 0o077 == 0
        q.close()

    asyncio.run(go())


def test_saf_rows_show_no_pan_and_refuse_another_key(tmp_path: Path) -> None:
    async def go() -> None:
        q = SafQueue(tmp_path / "saf.db", KEY)
        await q.add("rb", Message("0420", {2: PAN, 11: "000001"}))
        q.close()
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        assert PAN.encode() not in raw and PAN.encode().hex().encode() not in raw
        q = SafQueue(tmp_path / "saf.db", KEY)
        (entry,) = await q.pending("rb")
        assert entry.message.text(2) == PAN
        q.close()
        q = SafQueue(tmp_path / "saf.db", bytes(32))
        with pytest.raises(SafSealError):
            await q.pending("rb")
        q.close()

    asyncio.run(go())


# -- follow-ups: refunds (0200/20) and completion advices (0220) ----------------------------
ORIGINAL = OriginalRef(mti="0100", stan="000123", transmission="1129101010", acquirer_id="628058")


def _followup(txn_type: TxnType, pan: str = PAN) -> AuthRequest:
    """A merchant's follow-up as the core hands it to the issuer client: the original's wire
    identity in ``original`` and its terminal in ``extra``."""
    base = t.follow_up(txn_type, "T-1", 45_000, pan=pan, merchant_id="M-1")
    return replace(base, original=ORIGINAL, extra={ORIGINAL_TERMINAL: "POS00001"})


@pytest.mark.parametrize("spec", ["ascii87", "binary87"])
@pytest.mark.parametrize("pan", [PAN, ""], ids=["pan", "no-pan"])
def test_refund_maps_to_0200_20_naming_its_original(spec: str, pan: str) -> None:
    codec = Codec(spec)
    msg = request_to_message(_followup(TxnType.REFUND, pan), None)
    assert (msg.mti, msg.text(3)[:2], msg.text(41)) == ("0200", "20", "POS00001")
    assert (2 in msg) is bool(pan)
    back = request_from_message(codec.decode(codec.encode(msg)), None)
    assert back.txn_type is TxnType.REFUND and back.amount == 45_000 and back.pan == pan
    assert back.terminal_id == "POS00001"  # the issuer finds the original by 41 + 90
    assert back.original == replace(ORIGINAL, acquirer_id=None)  # same acquirer as field 32


@pytest.mark.parametrize("mti", ["0220", "0221"])
def test_completion_advice_maps_to_a_completion_of_the_preauth(mti: str) -> None:
    advice = completion_advice(_followup(TxnType.COMPLETION))
    assert advice.mti == "0220" and advice.text(90)[:4] == "0100"
    wire = Codec().decode(Codec().encode(Message(mti, dict(advice.fields))))
    back = request_from_message(wire, None)
    assert back.txn_type is TxnType.COMPLETION and back.amount == 45_000
    assert back.original is not None and back.original.stan == ORIGINAL.stan
    # a repeat is answered with the first transmission's answer MTI
    assert result_to_message(wire, AuthResult(ResponseCode.APPROVED)).mti == "0230"


def test_followups_without_original_data_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="original: the remote issuer needs"):
        request_to_message(replace(_followup(TxnType.REFUND), original=None), None)
    with pytest.raises(ValueError, match="original"):
        completion_advice(replace(_followup(TxnType.COMPLETION), original=OriginalRef()))
    refund = request_to_message(_followup(TxnType.REFUND), None)
    advice = completion_advice(_followup(TxnType.COMPLETION))
    for msg, field in ((refund, 90), (advice, 90)):
        del msg.fields[field]
        with pytest.raises(FieldError, match=f"field {field}: missing"):
            request_from_message(msg, None)
    advice = completion_advice(_followup(TxnType.COMPLETION))
    advice[3] = "200000"
    with pytest.raises(FieldError, match="field 3"):
        request_from_message(advice, None)
    purchase = request_to_message(t.withdrawal(pan=PAN), None)
    del purchase.fields[2]
    with pytest.raises(FieldError, match="field 2: missing"):  # only follow-ups may omit it
        request_from_message(purchase, None)


@pytest.mark.parametrize(
    ("channel", "mcc", "expected"),
    [
        (Channel.ATM, None, Channel.ATM),
        (Channel.COUNTER, None, Channel.COUNTER),
        (Channel.POS, "5411", Channel.POS),
        (Channel.POS, None, Channel.POS),
        (Channel.ECOMMERCE, "5999", Channel.ECOMMERCE),
    ],
)
def test_the_issuer_reads_a_foreign_terminals_channel_from_18_and_25(
    channel: Channel, mcc: str | None, expected: Channel
) -> None:
    req = replace(t.withdrawal(pan=PAN), channel=channel, mcc=mcc)
    wire = request_to_message(req, None)
    assert request_from_message(wire, None).channel is expected
    wire.fields.pop(18, None)
    del wire.fields[25]
    assert request_from_message(wire, None).channel is Channel.ATM  # as before: neither


def test_repeats_are_answered_as_their_first_transmission() -> None:
    assert answer_mti("0421") == "0430" and answer_mti("0221") == "0230"
    assert answer_mti("0200") == "0210" and answer_mti("0800") == "0810"
    with pytest.raises(ValueError):
        answer_mti("0210")

    async def go() -> None:
        mux = Mux()
        rev = Message("0421", {11: "000005", 41: "T1"})
        fut = mux.expect(rev)
        assert not mux.resolve(Message("0410", {11: "000005", 41: "T1"}))
        assert mux.resolve(Message("0430", {11: "000005", 41: "T1", 39: "00"}))
        assert (await fut).message.mti == "0430"
        fut = mux.expect(rev)  # some hosts echo the repeat bit: accepted too
        assert mux.resolve(Message("0431", {11: "000005", 41: "T1", 39: "00"}))
        assert (await fut).message.mti == "0431"

    asyncio.run(go())


def test_config_zak_and_tpdu() -> None:
    base = {"host": "h", "port": 9, "zpk": "U" + "0" * 32}
    c = RemoteIssuerConfig.from_mapping("rb", {**base, "zak": "U" + "1" * 32, "tpdu": "6000010000"})
    assert c.zak == "U" + "1" * 32 and c.tpdu == bytes.fromhex("6000010000") and c.framing.tpdu
    plain = RemoteIssuerConfig.from_mapping("rb", base)
    assert plain.zak == "" and plain.tpdu is None and not plain.framing.tpdu
    for bad in ("60000100", "zz00010000", True):
        with pytest.raises(ValueError, match=r"remote_issuers\.rb\.tpdu: .* is not 10 hex"):
            RemoteIssuerConfig.from_mapping("rb", {**base, "tpdu": bad})
    with pytest.raises(ValueError, match=r"remote_issuers\.rb\.zak"):
        RemoteIssuerConfig.from_mapping("rb", {**base, "zak": 5})
