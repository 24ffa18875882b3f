"""A reversed refund makes its payment refundable again after a restart, too.

After a restart the core knows an earlier payment only through ``SqliteStore.original()``;
it used to count every approved refund in ``refunded`` even when that refund had been
reversed, so the payment could no longer be refunded in full. Real ``SwitchCore`` (SQLite
store, in-process HSM, demo data), closed and reopened on the same state directory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from switch.core import demo
from switch.core import testing as t
from switch.core.model import ResponseCode, TxnType
from switch.core.service import SwitchCore

RC = ResponseCode
pytestmark = pytest.mark.usefixtures("store_backend")  # SQLite and PostgreSQL
BAL = demo.CARDS[0].balance


def run(state: Path, body: Callable[[SwitchCore], Awaitable[None]]) -> None:
    """``body`` on a freshly opened core; closed afterwards (the next run is a restart)."""
    t.run_core(state, body, durable=False)


ok = t.authorize_expecting


def test_full_refund_after_a_reversed_refund_and_a_restart(state: Path) -> None:
    ids: dict[str, str] = {}

    async def sale_refund_reverse(core: SwitchCore) -> None:
        sale = await ok(core, t.ecommerce(TxnType.PURCHASE, amount=250_000))
        assert sale.transaction_id
        refund = await ok(core, t.follow_up(TxnType.REFUND, sale.transaction_id, 250_000))
        assert refund.transaction_id and refund.available_balance == BAL
        rev = await ok(core, t.follow_up(TxnType.REVERSAL, refund.transaction_id, 0))
        assert rev.approved_amount == 250_000 and rev.available_balance == BAL - 250_000
        ids.update(sale=sale.transaction_id, refund=refund.transaction_id)

    async def after_restart(core: SwitchCore) -> None:
        o = await core.store.original(ids["sale"])
        assert o is not None and (o.refunded, o.reversed) == (0, 0)
        again = await ok(core, t.follow_up(TxnType.REFUND, ids["sale"], 250_000))
        assert again.available_balance == BAL
        await ok(core, t.follow_up(TxnType.REFUND, ids["sale"], 250_000), RC.INVALID_AMOUNT)
        await ok(core, t.follow_up(TxnType.REFUND, ids["sale"], 1), RC.INVALID_AMOUNT)
        got = await core.payment(t.ECOM.merchant_id, ids["sale"])
        assert got is not None and got.refunded == 250_000

    run(state, sale_refund_reverse)
    run(state, after_restart)


def test_partly_reversed_refunds_count_only_what_stayed_refunded(state: Path) -> None:
    """Two refunds, the first one reversed in part: after a restart the payment is
    refundable by exactly the sale minus what is still refunded."""
    ids: dict[str, str] = {}

    async def before(core: SwitchCore) -> None:
        sale = await ok(core, t.ecommerce(TxnType.PURCHASE, amount=300_000))
        assert sale.transaction_id
        first = await ok(core, t.follow_up(TxnType.REFUND, sale.transaction_id, 100_000))
        await ok(core, t.follow_up(TxnType.REFUND, sale.transaction_id, 50_000))
        assert first.transaction_id
        part = await ok(core, t.follow_up(TxnType.REVERSAL, first.transaction_id, 40_000))
        assert part.approved_amount == 40_000
        ids.update(sale=sale.transaction_id)

    async def after(core: SwitchCore) -> None:
        o = await core.store.original(ids["sale"])
        assert o is not None and o.refunded == 100_000 - 40_000 + 50_000
        await ok(core, t.follow_up(TxnType.REFUND, ids["sale"], 190_001), RC.INVALID_AMOUNT)
        r = await ok(core, t.follow_up(TxnType.REFUND, ids["sale"], 190_000))
        assert r.available_balance == BAL
        await ok(core, t.follow_up(TxnType.REFUND, ids["sale"], 1), RC.INVALID_AMOUNT)

    run(state, before)
    run(state, after)
