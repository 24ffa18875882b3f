"""Serialising answers for the idempotency table, so a retransmission gets the first answer."""

from __future__ import annotations

import json

from switch.core.model import AuthResult, ResponseCode


def result_to_json(r: AuthResult) -> str:
    return json.dumps(
        {
            "rc": r.response_code.value,
            "msg": r.message,
            "auth": r.auth_code,
            "txn": r.transaction_id,
            "avail": r.available_balance,
            "ledger": r.ledger_balance,
            "cur": r.currency,
            "appr": r.approved_amount,
            "script": None if r.issuer_script is None else r.issuer_script.hex(),
        },
        separators=(",", ":"),
    )


def result_from_json(text: str, *, replayed: bool = True) -> AuthResult:
    d = json.loads(text)
    script = d.get("script")
    return AuthResult(
        response_code=ResponseCode(d["rc"]),
        message=d.get("msg", ""),
        auth_code=d.get("auth"),
        transaction_id=d.get("txn"),
        available_balance=d.get("avail"),
        ledger_balance=d.get("ledger"),
        currency=d.get("cur"),
        approved_amount=d.get("appr"),
        issuer_script=None if script is None else bytes.fromhex(script),
        replayed=replayed,
    )
