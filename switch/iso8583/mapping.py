"""ISO 8583 acquirer messages <-> the channel-neutral ``AuthRequest`` / ``AuthResult``.

The wire layer never touches the ledger (docs/architecture.md §1): this module only translates.
A request whose fields cannot be translated raises :class:`FieldError` naming the field, and
the server answers it with response code 30 (format error) before anything reaches the core.

Field usage (docs/architecture.md §3): 2 PAN (or 35 track 2), 3 processing code, 4 amount in minor
units, 7 transmission date-time, 11 STAN, 12/13 local time, 14 expiry, 18 MCC, 22 entry mode,
32 acquirer id (defaults to the terminal's), 37 RRN, 41 terminal, 42 merchant, 43 card
acceptor, 49 currency (defaults to 012), 52 PIN block, 55 EMV data, 90 original data
elements, 95 replacement amounts. Bill payments carry ``biller/reference`` in field 48,
transfers the credited CCP account in field 103 (account identification 2).

Follow-ups name their original in field 90 (MTI, STAN, transmission date-time, acquirer; the
terminal is field 41, so a follow-up comes from the original's terminal): reversals
(04x0/04x1), refunds (0200 processing code 20) and pre-authorization completions, which
arrive as financial advices (0220, repeated as 0221: the acquirer already approved them on
the strength of the pre-authorization's hold, so they are answered 0230 and never queued
behind anything). A follow-up may omit the PAN (fields 2/35): an acquirer that does not keep
card numbers refers to its original by field 90 alone, and the core finds the card from it.
A repeat (4th MTI digit 1: 0101, 0201, 0221, 0401, 0421) is the first transmission sent
again; it is answered with the MTI of the first transmission's answer (0110, 0210, 0230,
0410, 0430), as ISO 8583:1987 has it, and the core's retransmission rule gives it the first
answer without a second posting.
"""

from __future__ import annotations

import datetime as dt
import time

from switch.core.domain import Terminal
from switch.core.model import DZD, AuthRequest, AuthResult, Channel, OriginalRef, TxnType
from switch.digits import is_ascii_digits
from switch.iso8583.message import FieldValue, Message, answer_mti

Fields = dict[int, FieldValue]

__all__ = [
    "ADVICE_MTIS",
    "FINANCIAL_MTIS",
    "MCC_ATM",
    "MCC_COUNTER",
    "POS_CONDITION_ECOMMERCE",
    "REVERSAL_MTIS",
    "FieldError",
    "answer_mti",
    "balances_field",
    "request_from_message",
    "response_to",
    "result_to_message",
]

#: Requests the core authorizes (0220/0221 are completion advices, see the module doc). A
#: repeat (0101, 0201) is its first transmission sent again after a time-out: the same
#: request, so the core's retransmission rule gives it the first answer.
FINANCIAL_MTIS = frozenset({"0100", "0101", "0200", "0201", "0220", "0221"})
ADVICE_MTIS = frozenset({"0220", "0221"})
REVERSAL_MTIS = frozenset({"0400", "0401", "0420", "0421"})

#: Processing code (field 3, first two digits) -> transaction type for 0200.
_PROCESSING: dict[str, TxnType] = {
    "01": TxnType.CASH_WITHDRAWAL,
    "31": TxnType.BALANCE_INQUIRY,
    "00": TxnType.PURCHASE,
    "50": TxnType.BILL_PAYMENT,
    "40": TxnType.TRANSFER,
    "20": TxnType.REFUND,
}

_CHANNELS = {"atm": Channel.ATM, "pos": Channel.POS, "counter": Channel.COUNTER}
#: Merchant types (field 18) that name the channel of another acquirer's terminal.
MCC_ATM = "6011"  # automated cash disbursement
MCC_COUNTER = "6010"  # manual cash disbursement (a post-office counter)
#: Point-of-service condition code (field 25) of card-not-present electronic commerce.
POS_CONDITION_ECOMMERCE = "59"

#: Fields echoed from the request into every answer (ISO 8583:1987 "mandatory echo").
_ECHO = (2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 90)


class FieldError(ValueError):
    """A request field is missing or unusable; ``field`` names it for the log and the 30."""

    def __init__(self, field: int, reason: str) -> None:
        super().__init__(f"field {field}: {reason}")
        self.field = field
        self.reason = reason


def _text(f: Fields, number: int, *, required: bool = True) -> str | None:
    value = f.get(number)
    if value is None:
        if required:
            raise FieldError(number, "missing")
        return None
    if not isinstance(value, str):
        raise FieldError(number, "must be text")
    return value


def _req(f: Fields, number: int) -> str:
    value = _text(f, number)
    assert value is not None
    return value


def _digits(
    f: Fields, number: int, size: int | None = None, *, required: bool = True
) -> str | None:
    value = _text(f, number, required=required)
    if value is None:
        return None
    if not is_ascii_digits(value) or (size is not None and len(value) != size):
        raise FieldError(number, f"must be {size or 'some'} digits")
    return value


def _track2(value: str) -> tuple[str, str | None, str | None]:
    """PAN, expiry (YYMM) and service code from track 2 equivalent data."""
    sep = "=" if "=" in value else "D" if "D" in value else None
    if sep is None:
        raise FieldError(35, "no separator")
    pan, rest = value.split(sep, 1)
    if not is_ascii_digits(pan):
        raise FieldError(35, "PAN part is not digits")
    expiry = rest[:4] if len(rest) >= 4 and is_ascii_digits(rest[:4]) else None
    service = rest[4:7] if len(rest) >= 7 and is_ascii_digits(rest[4:7]) else None
    return pan, expiry, service


def local_date_time(mmdd: str, hhmmss: str, now: float) -> dt.datetime | None:
    """Fields 13 + 12 (no year) as the terminal's local date-time: the year is the one that
    puts MMDD nearest to ``now`` (a terminal's 1231 read just after New Year is last year's,
    and a 0229 is valid in whichever nearby year is a leap year). ``None`` when MMDD hhmmss
    is no date in any year near ``now``."""
    month, day = int(mmdd[:2]), int(mmdd[2:4])
    h, m, sec = int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:6])
    today = dt.datetime.fromtimestamp(now, dt.UTC).replace(tzinfo=None)
    best: dt.datetime | None = None
    for year in (today.year - 1, today.year, today.year + 1, today.year - 4, today.year + 4):
        try:  # not strptime: it costs more than the rest of the mapping
            at = dt.datetime(year, month, day, h, m, sec)
        except ValueError:
            continue
        if best is None or abs(at - today) < abs(best - today):
            best = at
    return best


def _local_time(msg: Message) -> dt.datetime | None:
    hhmmss = _digits(msg.fields, 12, 6, required=False)
    mmdd = _digits(msg.fields, 13, 4, required=False)
    if hhmmss is None or mmdd is None:
        return None
    at = local_date_time(mmdd, hhmmss, time.time())
    if at is None:
        raise FieldError(12, "local date/time is not a valid MMDD hhmmss")
    return at


def _original(f: Fields, acquirer_id: str) -> OriginalRef:
    value = _digits(f, 90)
    assert value is not None
    if len(value) < 20:
        raise FieldError(90, "needs at least MTI, STAN and transmission date-time")
    acq90 = value[20:31]
    acq: str | None = None
    if acq90 and int(acq90) != int(acquirer_id or "0"):
        acq = acq90.lstrip("0") or "0"
    return OriginalRef(mti=value[:4], stan=value[4:10], transmission=value[10:20], acquirer_id=acq)


def _foreign_channel(mcc: str | None, condition: str | None) -> Channel:
    """The channel of a terminal we have no record of (another acquirer's, over an
    interchange link), from its merchant type (18) and POS condition code (25). With
    neither, an ATM: what acquirers sent before these fields were read."""
    if mcc == MCC_ATM:
        return Channel.ATM
    if mcc == MCC_COUNTER:
        return Channel.COUNTER
    if condition == POS_CONDITION_ECOMMERCE:
        return Channel.ECOMMERCE
    if mcc is not None or condition is not None:
        return Channel.POS
    return Channel.ATM


def request_from_message(msg: Message, terminal: Terminal | None) -> AuthRequest:
    """The ``AuthRequest`` for a 0100/0200/04x0 ``msg``; ``FieldError`` names a bad field.

    ``terminal`` is the switch's record of field 41 (None for another acquirer's terminal);
    it gives the channel and the default acquirer id. Without it the channel comes from
    fields 18 and 25 (:func:`_foreign_channel`).
    """
    mti = msg.mti
    f = msg.fields
    proc = _digits(f, 3, 6)
    assert proc is not None
    stan = _digits(f, 11, 6)
    transmission = _digits(f, 7, 10)
    terminal_id = _req(f, 41).strip()
    if not terminal_id:
        raise FieldError(41, "blank")
    expiry = _digits(f, 14, 4, required=False)
    service_code: str | None = None
    track2 = _text(f, 35, required=False)
    pan = _text(f, 2, required=False)
    if track2 is not None:
        t_pan, t_exp, service_code = _track2(track2)
        if pan is not None and pan != t_pan:
            raise FieldError(35, "PAN differs from field 2")
        pan = t_pan
        expiry = expiry or t_exp
    if pan is not None and not is_ascii_digits(pan):
        raise FieldError(2, "must be digits")
    acquirer_id = _digits(f, 32, required=False) or (terminal.acquirer_id if terminal else "")
    if not acquirer_id:
        raise FieldError(32, "missing and terminal unknown")
    currency_text = _digits(f, 49, 3, required=False)
    currency = int(currency_text) if currency_text else DZD

    code = proc[:2]
    original: OriginalRef | None = None
    replacement: int | None = None
    if mti in REVERSAL_MTIS:
        txn_type = TxnType.REVERSAL
        original = _original(f, acquirer_id)
        repl = _text(f, 95, required=False)
        if repl is not None:
            if len(repl) < 12 or not is_ascii_digits(repl[:12]):
                raise FieldError(95, "actual amount must be 12 digits")
            replacement = int(repl[:12])
    elif mti in ADVICE_MTIS:
        if code != "00":
            raise FieldError(3, f"processing code {code}: an advice completes a purchase (00)")
        if 90 not in f:
            raise FieldError(90, "missing: a completion names its pre-authorization")
        txn_type = TxnType.COMPLETION
        original = _original(f, acquirer_id)
    elif mti in ("0100", "0101") and code == "00":
        txn_type = TxnType.PREAUTH
    else:
        found = _PROCESSING.get(code)
        if found is None:
            raise FieldError(3, f"processing code {code} not supported")
        txn_type = found
        if txn_type is TxnType.REFUND:
            if 90 not in f:
                raise FieldError(90, "missing: a refund names the transaction it refunds")
            original = _original(f, acquirer_id)
    if pan is None:
        if original is None:
            raise FieldError(2, "missing (and no track 2)")
        pan = ""  # a follow-up found by field 90 alone
    amount_text = _digits(f, 4, 12, required=txn_type is not TxnType.BALANCE_INQUIRY)
    amount = int(amount_text) if amount_text else 0

    pin = f.get(52)
    if pin is not None and (not isinstance(pin, bytes) or len(pin) != 8):
        raise FieldError(52, "PIN block must be 8 bytes")
    emv = f.get(55)
    if emv is not None and not isinstance(emv, bytes):
        raise FieldError(55, "must be binary")

    biller_id = bill_ref = None
    if txn_type is TxnType.BILL_PAYMENT:
        bill = _req(f, 48)
        if "/" not in bill:
            raise FieldError(48, "must be biller/reference")
        biller_id, bill_ref = (part.strip() for part in bill.split("/", 1))
    destination = None
    if txn_type is TxnType.TRANSFER:
        destination = _req(f, 103).strip()
        if not destination:
            raise FieldError(103, "blank")

    mcc = _digits(f, 18, 4, required=False)
    if terminal is not None:
        channel = _CHANNELS.get(terminal.kind, Channel.ATM)
    else:
        channel = _foreign_channel(mcc, _digits(f, 25, 2, required=False))
    merchant = _text(f, 42, required=False)
    return AuthRequest(
        txn_type=txn_type,
        channel=channel,
        pan=pan,
        amount=amount,
        currency=currency,
        acquirer_id=acquirer_id,
        terminal_id=terminal_id,
        stan=stan or "",
        transmission=transmission or "",
        local_time=_local_time(msg),
        rrn=_text(f, 37, required=False),
        merchant_id=merchant.strip() if merchant else None,
        mcc=mcc,
        card_acceptor=(_text(f, 43, required=False) or "").strip() or None,
        expiry=expiry,
        service_code=service_code,
        entry_mode=_digits(f, 22, required=False),
        track2=track2,
        pin_block=pin,
        pin_block_format=terminal.pin_block_format if terminal else "01",
        emv_data=emv,
        original=original,
        biller_id=biller_id,
        bill_reference=bill_ref,
        destination_account=destination,
        replacement_amount=replacement,
    )


def balances_field(account_type: str, result: AuthResult) -> str | None:
    """Field 54 (additional amounts): ledger (01) and available (02) balances, 20 chars each:
    account type (2), amount type (2), currency (3), C/D sign, amount (12 digits)."""
    parts = []
    currency = f"{result.currency if result.currency is not None else DZD:03d}"
    for amount_type, value in (("01", result.ledger_balance), ("02", result.available_balance)):
        if value is None:
            continue
        sign = "C" if value >= 0 else "D"
        parts.append(f"{account_type}{amount_type}{currency}{sign}{abs(value):012d}")
    return "".join(parts) or None


def response_to(msg: Message, code: str) -> Message:
    """An answer to ``msg`` with response code ``code`` and the usual echoed fields."""
    fields = msg.fields
    out = Message(answer_mti(msg.mti), {n: fields[n] for n in _ECHO if n in fields})
    out.fields[39] = code
    return out


#: The core approves a reversal of an original it does not know (``switch.core.followups``:
#: recorded, nothing reversed, so the acquirer's store-and-forward stops); the 0410/0430 says
#: so in field 44 (additional response data) for the ATM or acquirer to show.
UNKNOWN_ORIGINAL = "reversal for an unknown original"
ORIGINAL_NOT_FOUND = "ORIGINAL NOT FOUND"


def result_to_message(msg: Message, result: AuthResult) -> Message:
    """The 0110/0210/0410/0430 answering ``msg`` with ``result``."""
    out = response_to(msg, result.response_code.value)
    f = out.fields
    if 37 not in f and result.transaction_id:
        f[37] = result.transaction_id  # the RRN the switch assigned and journaled
    if result.auth_code:
        f[38] = result.auth_code[:6].rjust(6, "0")
    proc = msg.fields.get(3)
    if isinstance(proc, str) and proc[:2] in ("01", "31") and msg.mti not in REVERSAL_MTIS:
        balances = balances_field(proc[2:4] or "00", result)
        if balances:
            f[54] = balances
    if result.issuer_script:
        f[55] = result.issuer_script
    if msg.mti in REVERSAL_MTIS and result.message.startswith(UNKNOWN_ORIGINAL):
        f[44] = ORIGINAL_NOT_FOUND  # approved (the acquirer must stop repeating it), yet say so
    return out
