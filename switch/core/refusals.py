"""Which answers to a merchant's call are refusals rather than payments.

The merchant API answers most results with a ``PaymentResult`` (approved or declined, with a
payment id). Some it answers with an error status instead, because the request could not be
a payment at all: a capture, void or refund whose original does not allow it (12/13, e.g. a
refund above what is refundable), a bill already paid or not matching (12/13/30), a transfer
to an account that does not exist or cannot be credited. The caller never gets a payment id
for those, so nothing may record one it could see: the core still journals the attempt for
the operator, marked ``refused``, which ``ListPayments``/``GetPayment`` leave out, and spends
no idempotency key on it (nothing happened; a retry is evaluated afresh).

A 96 ("could not decide", ``switch.core.pipeline.retryable``) is refused the same way on
every channel. This module is the one place that says which declines the API turns into
errors; ``switch.api.servicers`` picks the status code.
"""

from __future__ import annotations

from typing import Final

from switch.core.model import AuthRequest, AuthResult, ResponseCode, TxnType

RC = ResponseCode

FOLLOW_UPS: Final = frozenset({TxnType.COMPLETION, TxnType.VOID, TxnType.REFUND})
_FOLLOW_UP_REFUSALS: Final = frozenset({RC.INVALID_TRANSACTION, RC.INVALID_AMOUNT})
_BILL_REFUSALS: Final = frozenset({RC.INVALID_TRANSACTION, RC.INVALID_AMOUNT, RC.FORMAT_ERROR})
#: The prefix of every transfer decline about its destination (``Pipeline._check_transfer``).
DESTINATION: Final = "destination_account:"


def is_merchant_refusal(req: AuthRequest, result: AuthResult) -> bool:
    """True when the merchant API answers ``result`` with an error status, not a payment."""
    if req.idempotency_key is None or result.approved:
        return False
    t = req.txn_type
    if t in FOLLOW_UPS:
        return result.response_code in _FOLLOW_UP_REFUSALS
    if t is TxnType.BILL_PAYMENT:
        return result.response_code in _BILL_REFUSALS
    if t is TxnType.TRANSFER:
        return result.message.startswith(DESTINATION)
    return False
