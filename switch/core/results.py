"""Serialising answers for the idempotency table, so a retransmission gets the first answer.

A flat, tab-separated record rather than JSON: it is written once per authorization on the
hot path and read back only for retransmissions. The message goes last (it may contain
anything but tabs, which are replaced).
"""

from __future__ import annotations

from switch.core.model import AuthResult, ResponseCode

_NONE = "~"


def _int(s: str) -> int | None:
    return None if s == _NONE else int(s)


def encode_result(r: AuthResult) -> str:
    n = _NONE
    a, t, av, lb = r.auth_code, r.transaction_id, r.available_balance, r.ledger_balance
    cur, ap, sc = r.currency, r.approved_amount, r.issuer_script
    return (
        f"{r.response_code.value}\t{n if a is None else a}\t{n if t is None else t}\t"
        f"{n if av is None else av}\t{n if lb is None else lb}\t{n if cur is None else cur}\t"
        f"{n if ap is None else ap}\t{n if sc is None else sc.hex()}\t"
        f"{r.message.replace(chr(9), ' ')}"
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
