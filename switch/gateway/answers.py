"""The JSON bodies of the REST answers, field names and casing as SATIM's clients read them.

SATIM (BPC's platform) is not consistent in its casing, and its client libraries read the
fields exactly as it spells them, so we spell them the same way: ``register.do``,
``deposit.do``, ``reverse.do``, ``refund.do`` and ``getOrderStatusExtended.do`` answer
``errorCode``/``errorMessage``; ``getOrderStatus.do`` and ``confirmOrder.do`` answer
``ErrorCode``/``ErrorMessage``, ``OrderStatus``, ``OrderNumber``, ``Pan``, ``Amount``. Codes
are strings, amounts integers in centimes, the currency the 3-digit string ``"012"``.
"""

from __future__ import annotations

import json
from typing import Any

from switch.gateway.errors import ErrorCode
from switch.gateway.orders import Order, OrderStatus
from switch.gateway.texts import TEXTS, result_text

SUCCESS = "Success"

PAYMENT_STATE = {
    OrderStatus.REGISTERED: "CREATED",
    OrderStatus.PREAUTHORIZED: "APPROVED",
    OrderStatus.DEPOSITED: "DEPOSITED",
    OrderStatus.REVERSED: "REVERSED",
    OrderStatus.REFUNDED: "REFUNDED",
    OrderStatus.DECLINED: "DECLINED",
}


def error(code: ErrorCode, message: str, *, capitalized: bool = False) -> dict[str, Any]:
    if capitalized:
        return {"ErrorCode": str(int(code)), "ErrorMessage": message}
    return {"errorCode": str(int(code)), "errorMessage": message}


def ok() -> dict[str, Any]:
    return error(ErrorCode.OK, SUCCESS)


def currency_text(currency: int) -> str:
    return f"{currency:03d}"


def user_params(order: Order) -> dict[str, str]:
    params: dict[str, str] = json.loads(order.json_params)
    return params


def description(order: Order) -> str:
    """``actionCodeDescription``: nothing decided yet, expired, or accepted / declined."""
    if order.status is OrderStatus.REGISTERED:
        return ""
    if order.action_code == -2007:
        return TEXTS[order.language]["expired"]
    return result_text(order.language, order.response_code)


def status(order: Order) -> dict[str, Any]:
    """``getOrderStatus.do`` / ``confirmOrder.do``."""
    desc = description(order)
    return {
        **error(ErrorCode.OK, SUCCESS, capitalized=True),
        "OrderStatus": int(order.status),
        "OrderNumber": order.order_number,
        "Pan": order.masked_pan,
        "expiration": order.expiration,
        "Amount": order.amount,
        "depositAmount": order.deposit_amount,
        "currency": currency_text(order.currency),
        "approvalCode": order.approval_code,
        "authCode": 2,  # a constant in SATIM's answers; clients read it as a number
        "actionCode": order.action_code,
        "actionCodeDescription": desc,
        "SvfeResponse": order.response_code,
        "params": {
            **user_params(order),
            "respCode": order.response_code,
            "respCode_desc": desc,
        },
    }


def extended(order: Order, terminal_id: str) -> dict[str, Any]:
    """``getOrderStatusExtended.do`` (BPC's extended answer, the fields this gateway has)."""
    return {
        **ok(),
        "orderNumber": order.order_number,
        "orderStatus": int(order.status),
        "actionCode": order.action_code,
        "actionCodeDescription": description(order),
        "amount": order.amount,
        "currency": currency_text(order.currency),
        "date": round(order.created_at * 1000),  # epoch milliseconds, as BPC
        "orderDescription": order.description,
        "merchantOrderParams": [{"name": k, "value": v} for k, v in user_params(order).items()],
        "attributes": [{"name": "mdOrder", "value": order.order_id}],
        "cardAuthInfo": {
            "pan": order.masked_pan,
            "expiration": order.expiration,
            "approvalCode": order.approval_code,
        },
        "terminalId": terminal_id,
        "paymentAmountInfo": {
            "paymentState": PAYMENT_STATE[order.status],
            "approvedAmount": order.amount
            if order.status in (OrderStatus.PREAUTHORIZED, OrderStatus.DEPOSITED,
                                OrderStatus.REFUNDED)
            else 0,
            "depositedAmount": order.deposit_amount,
            "refundedAmount": order.refunded_amount,
        },
    }  # fmt: skip
