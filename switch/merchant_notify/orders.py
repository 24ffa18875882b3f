"""Reads of ``payment_orders``: public payment ids <-> journal txn ids, order facts.

Through ``store.query`` (the store's read connection, any backend), by primary key or the
unique ``payment_id`` index. A journal row without an order row (a payment made before
migration 0012, or by ISO 8583) keeps its txn id as its payment id.
"""

# ruff: noqa: S608 -- the f-strings splice a fixed column list and placeholders only
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from switch.merchant_notify.ids import is_public_id


class _Queryable(Protocol):
    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]: ...


@dataclass(frozen=True, slots=True)
class OrderFacts:
    txn_id: str
    payment_id: str
    order_reference: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


_COLS = "txn_id, payment_id, order_reference, metadata"
_CHUNK = 200


def _facts(row: tuple[object, ...]) -> OrderFacts:
    txn_id, payment_id, reference, metadata = row
    try:
        doc = json.loads(str(metadata))
    except ValueError:
        doc = {}
    meta = {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}
    return OrderFacts(str(txn_id), str(payment_id), str(reference), meta)


def resolve(store: _Queryable, merchant_id: str, payment_id: str) -> OrderFacts | None:
    """The order row of the merchant's ``pay_`` id (None: unknown, or another merchant's)."""
    if not is_public_id(payment_id):
        return None
    rows = store.query(
        f"SELECT {_COLS} FROM payment_orders WHERE payment_id = ? AND merchant_id = ?",
        (payment_id, merchant_id),
    )
    return _facts(rows[0]) if rows else None


def txns_of_reference(store: _Queryable, merchant_id: str, reference: str, limit: int) -> list[str]:
    """The txn ids of the merchant's order rows with ``reference``, newest first (by the
    ``payment_orders_reference`` index)."""
    rows = store.query(
        "SELECT txn_id FROM payment_orders WHERE merchant_id = ? AND order_reference = ? "
        "ORDER BY txn_id DESC LIMIT ?",
        (merchant_id, reference, limit),
    )
    return [str(t) for (t,) in rows]


def by_txn(store: _Queryable, txn_ids: Iterable[str]) -> dict[str, OrderFacts]:
    """Order rows of these txn ids (absent: none)."""
    ids = sorted({t for t in txn_ids if t})
    out: dict[str, OrderFacts] = {}
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in store.query(
            f"SELECT {_COLS} FROM payment_orders WHERE txn_id IN ({marks})",
            tuple(chunk),
        ):
            f = _facts(row)
            out[f.txn_id] = f
    return out
