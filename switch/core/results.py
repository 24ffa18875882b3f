"""Serialising answers for the idempotency table, so a retransmission gets the first answer.

A flat, tab-separated record rather than JSON: it is written once per authorization on the
hot path and read back only for retransmissions. The message goes last (it may contain
anything but tabs, which are replaced).
"""

from __future__ import annotations

from switch.core.model import AuthResult, ResponseCode

_NONE = "~"


def _opt(v: object | None) -> str:
    return _NONE if v is None else str(v)


def _int(s: str) -> int | None:
    return None if s == _NONE else int(s)


def encode_result(r: AuthResult) -> str:
    script = r.issuer_script
    return "\t".join(
        (
            r.response_code.value,
            _opt(r.auth_code),
            _opt(r.transaction_id),
            _opt(r.available_balance),
            _opt(r.ledger_balance),
            _opt(r.currency),
            _opt(r.approved_amount),
            _NONE if script is None else script.hex(),
            r.message.replace("\t", " "),
        )
    )


def decode_result(text: str, *, replayed: bool = True) -> AuthResult:
    rc, auth, txn, avail, ledger, cur, appr, script, msg = text.split("\t", 8)
    return AuthResult(
        response_code=ResponseCode(rc),
        message=msg,
        auth_code=None if auth == _NONE else auth,
        transaction_id=None if txn == _NONE else txn,
        available_balance=_int(avail),
        ledger_balance=_int(ledger),
        currency=_int(cur),
        approved_amount=_int(appr),
        issuer_script=None if script == _NONE else bytes.fromhex(script),
        replayed=replayed,
    )
