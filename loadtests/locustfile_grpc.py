"""Locust load test of the gRPC merchant API: each user is an online merchant's backend on its
own channel, one call at a time.

Run against ``switch run`` loaded by ``switch loaddata`` (README, "Load tests")::

    locust -f loadtests/locustfile_grpc.py --host grpc://127.0.0.1:50051 \\
        --cards-file loaddata/cards.csv --merchants loaddata/merchants.csv \\
        --bills-file loaddata/bills.csv

Scenarios (``--mix``, default ``sale=6,refund=2,bill=2,lookup=1``): ``sale`` (Sale, 100 to
5,000 DZD), ``refund`` (a Sale, then its full Refund), ``bill`` (an open bill of the
``--bills-file``: LookupBill, then PayBill if it is still open; each bill once), ``lookup``
(GetPayment of one of the user's payments and ListPayments). A ``PaymentResult`` is
reported under ``"<RPC> <code>"`` (``Sale 00``, ``Sale 51``); a code the scenario does not
expect is a failure, as is a gRPC error status (named by its status code and details, never
a card number).

Merchant credentials: ``--merchants FILE`` (users spread over its merchants), or one merchant
with ``--merchant-id`` and ``--api-key``; default the demo e-commerce merchant.

Locust runs on gevent, and grpcio's own threads would block the gevent hub: so
``grpc.experimental.gevent.init_gevent()`` is called at import, before any channel exists,
and the user drives the *synchronous* stubs (grpc.aio needs an asyncio loop Locust lacks).
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run by path (locust -f): the repository root is importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import grpc.experimental.gevent
from locust import User, events, task
from locust.env import Environment

from loadtests.common import (
    Mix,
    Pacing,
    SelectedShape,
    add_common_arguments,
    check_startup,
    load_cards,
    partition,
    report,
    rotation,
)
from switch.core import demo
from switch.core.model import DZD
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import merchant_pb2_grpc as mgrpc
from switch.gen.switch.v1 import types_pb2 as pb
from switch.loaddata import (
    LoadBill,
    LoadCard,
    LoadMerchant,
    read_bills,
    read_merchants,
)

grpc.experimental.gevent.init_gevent()  # before any channel: grpcio then yields to gevent

__all__ = ["MerchantUser", "SelectedShape"]  # SelectedShape: Locust finds the --shape here

SCENARIOS = ("sale", "refund", "bill", "lookup")
DEFAULT_MIX = "sale=6,refund=2,bill=2,lookup=1"


@events.init_command_line_parser.add_listener  # type: ignore[misc]
def _arguments(parser: Any) -> None:
    add_common_arguments(parser, DEFAULT_MIX)
    group = parser.add_argument_group("switch merchant API")
    group.add_argument(
        "--merchants",
        default="",
        help="merchants.csv of `switch loaddata` (merchant_id, api_key)",
    )
    group.add_argument("--merchant-id", default="", help="one merchant's id (with --api-key)")
    group.add_argument("--api-key", default="", help="its API key")
    group.add_argument(
        "--bills-file",
        default="",
        help="bills.csv of `switch loaddata` (biller_id, reference, amount); without it the "
        "bill scenario is skipped",
    )


class Data:
    """The cards, merchants and bills of this process, read once when the test starts."""

    cards: ClassVar[list[LoadCard]] = []
    merchants: ClassVar[Iterator[LoadMerchant]] = iter(())
    bills: ClassVar[Iterator[LoadBill]] = iter(())  # each open bill once


@events.init.add_listener  # type: ignore[misc]
def _check(environment: Environment, **_: Any) -> None:
    check_startup(
        environment, SCENARIOS, [("merchants", read_merchants), ("bills_file", read_bills)]
    )
    opts = environment.parsed_options
    if opts is not None and bool(opts.merchant_id) != bool(opts.api_key):
        sys.exit("locust: --merchant-id and --api-key go together")


@events.test_start.add_listener  # type: ignore[misc]
def _load(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None or getattr(opts, "master", False):
        return  # the master sends no requests
    Data.cards = load_cards(opts)
    if opts.merchants:
        merchants = read_merchants(Path(opts.merchants))
    elif opts.merchant_id:
        merchants = [LoadMerchant(opts.merchant_id, opts.api_key)]
    else:
        m = next(m for m in demo.MERCHANTS if m.merchant_id == "M-ECOM-001")
        merchants = [LoadMerchant(m.merchant_id, m.api_key)]
    Data.merchants = rotation(partition(environment, merchants))
    bills = read_bills(Path(opts.bills_file)) if opts.bills_file else []
    mine = partition(environment, bills)
    start = random.randrange(len(mine)) if mine else 0
    Data.bills = iter(mine[start:] + mine[:start])  # each once, from a random place


class MerchantUser(User):
    """One merchant backend on its own channel, one call at a time."""

    channel: grpc.Channel | None = None
    payments: Any = None  # stubs on the channel, dropped with it
    bills_stub: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pacing = Pacing(self)
        self.mix = Mix(
            self,
            {"sale": self.sale, "refund": self.refund, "bill": self.bill, "lookup": self.lookup},
            DEFAULT_MIX,
        )
        merchant = next(Data.merchants)
        self.metadata = (("x-merchant-id", merchant.merchant_id), ("x-api-key", merchant.api_key))
        self.payment_ids: list[str] = []  # ours, for GetPayment (bounded below)
        opts = self.environment.parsed_options
        self.timeout = float(opts.timeout) if opts else 10.0

    def wait_time(self) -> float:
        return self.pacing.wait()

    def on_start(self) -> None:
        url = urlsplit(self.host or "grpc://127.0.0.1:50051")
        self.channel = grpc.insecure_channel(f"{url.hostname or '127.0.0.1'}:{url.port or 50051}")
        self.payments = mgrpc.PaymentsStub(self.channel)
        self.bills_stub = mgrpc.BillsStub(self.channel)

    def on_stop(self) -> None:
        # close and drop the channel now, while gevent runs: grpcio closes it again when it is
        # garbage collected, which at interpreter exit prints "greenlet is being finalized"
        if self.channel is not None:
            self.channel.close()
        self.channel = self.payments = self.bills_stub = None

    @task
    def scenario(self) -> None:
        self.mix.run_one()

    # -- scenarios ----------------------------------------------------------------------------

    def sale(self) -> None:
        self._sale()

    def _sale(self) -> pb.PaymentResult | None:
        card = random.choice(Data.cards)
        request = mpb.CardPaymentRequest(
            idempotency_key=uuid.uuid4().hex,  # a new order each time: never a replay
            amount=pb.Money(amount_minor=random.randrange(100, 5_001) * 100, currency=DZD),
            card=pb.Card(pan=card.pan, expiry=card.expiry, cvv2=card.cvv2),
        )
        result = self._pay("Sale", self.payments.Sale, request)
        if result is not None and result.payment_id:
            self.payment_ids = [*self.payment_ids[-99:], result.payment_id]
        return result

    def refund(self) -> None:
        sold = self._sale()
        if sold is None or not sold.approved:
            return
        request = mpb.RefundRequest(idempotency_key=uuid.uuid4().hex, payment_id=sold.payment_id)
        self._pay("Refund", self.payments.Refund, request)

    def bill(self) -> None:
        """A biller's portal: look the bill up, pay it if still open (a rerun of the test
        meets the bills an earlier run paid: looked up, then skipped)."""
        for _ in range(5):
            bill = next(Data.bills, None)
            if bill is None:
                return  # no bills file, or every bill of this process's share tried
            found = self._call(
                "LookupBill",
                self.bills_stub.LookupBill,
                mpb.LookupBillRequest(biller_id=bill.biller_id, reference=bill.reference),
            )
            if found is not None and not found.paid:
                break
        else:
            return
        card = random.choice(Data.cards)
        request = mpb.PayBillRequest(
            idempotency_key=uuid.uuid4().hex,
            biller_id=bill.biller_id,
            reference=bill.reference,
            amount=pb.Money(amount_minor=bill.amount, currency=DZD),
            card=pb.Card(pan=card.pan, expiry=card.expiry, cvv2=card.cvv2),
        )
        self._pay("PayBill", self.bills_stub.PayBill, request)

    def lookup(self) -> None:
        if self.payment_ids:
            request = mpb.GetPaymentRequest(payment_id=random.choice(self.payment_ids))
            self._call("GetPayment", self.payments.GetPayment, request)
        self._call(
            "ListPayments", self.payments.ListPayments, mpb.ListPaymentsRequest(page_size=20)
        )

    # -- calls ----------------------------------------------------------------------------

    def _pay(self, name: str, method: Callable[..., Any], request: Any) -> pb.PaymentResult | None:
        """A money-moving call, reported under its response code; the result, or None."""
        started = time.perf_counter()
        try:
            result = method(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            report(self, "gRPC", name, started, error=_status(exc))
            return None
        report(self, "gRPC", name, started, code=result.response_code or "??",
               length=result.ByteSize())  # fmt: skip
        return result  # type: ignore[no-any-return]

    def _call(self, name: str, method: Callable[..., Any], request: Any) -> Any:
        """A read; the answer, or None after a reported error."""
        started = time.perf_counter()
        try:
            answer = method(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            report(self, "gRPC", name, started, error=_status(exc))
            return None
        report(self, "gRPC", name, started, length=answer.ByteSize())
        return answer


def _status(exc: grpc.RpcError) -> Exception:
    """Code and details only: the details name a field, never its (card) value."""
    return RuntimeError(f"{exc.code().name}: {exc.details()}")
