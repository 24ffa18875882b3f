"""Locust load test of the gRPC merchant API: each user is an online merchant (the demo
e-commerce merchant, with its demo API key) selling small amounts to the demo cards, and now
and then looking a payment up (``GetPayment``) or listing its payments (``ListPayments``).

Run against ``switch run``: ``locust -f loadtests/locustfile_grpc.py --host
grpc://127.0.0.1:50051`` (add ``--headless -u 20 -r 5 -t 1m`` for a run without the web UI).

Locust runs on gevent, and grpcio's own threads would block the gevent hub: so
``grpc.experimental.gevent.init_gevent()`` is called at import, before any channel exists,
and the user drives the *synchronous* stubs (grpc.aio needs an asyncio loop Locust lacks).
A ``PaymentResult`` counts as a success whatever its response code (a decline is a correct
answer; the demo cards' daily limits decline sales after a while); a gRPC error status is a
failure. Locust's ``request`` event carries the timing, one name per RPC. Nothing here logs a
card number or CVV2: failures are reported by gRPC status code and details only.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import grpc
import grpc.experimental.gevent
from locust import User, between, task

from switch.core import demo
from switch.core.domain import CardStatus
from switch.core.model import DZD
from switch.gen.switch.v1 import merchant_pb2 as mpb
from switch.gen.switch.v1 import merchant_pb2_grpc as mgrpc
from switch.gen.switch.v1 import types_pb2 as pb

grpc.experimental.gevent.init_gevent()  # before any channel: grpcio then yields to gevent

MERCHANT = next(m for m in demo.MERCHANTS if m.merchant_id == "M-ECOM-001")
CARDS = [
    (c.pan, c.expiry, demo.cvv2(c.pan, c.expiry))
    for c in demo.CARDS
    if c.status is CardStatus.ACTIVE
]
TIMEOUT = 10.0


class MerchantUser(User):
    """One online merchant on its own channel, one call at a time, like a web shop backend."""

    wait_time = between(0.05, 0.2)  # type: ignore[no-untyped-call]
    channel: grpc.Channel | None = None
    payments: mgrpc.PaymentsStub | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payment_ids: list[str] = []  # ours, for GetPayment (bounded below)
        self.metadata = (("x-merchant-id", MERCHANT.merchant_id), ("x-api-key", MERCHANT.api_key))

    def on_start(self) -> None:
        url = urlsplit(self.host or "grpc://127.0.0.1:50051")
        target = f"{url.hostname or '127.0.0.1'}:{url.port or 50051}"
        self.channel = grpc.insecure_channel(target)
        self.payments = mgrpc.PaymentsStub(self.channel)

    def on_stop(self) -> None:
        # close and drop the channel now, while gevent runs: grpcio closes it again when it is
        # garbage collected, which at interpreter exit prints "greenlet is being finalized"
        if self.channel is not None:
            self.channel.close()
        self.channel = self.payments = None

    def _call(self, name: str, method: Callable[..., Any], request: Any) -> Any:
        """One unary call, timed and reported to Locust; the answer, or None on an error."""
        start = time.perf_counter()
        exception: Exception | None = None
        response: Any = None
        try:
            response = method(request, metadata=self.metadata, timeout=TIMEOUT)
        except grpc.RpcError as exc:
            # code and details only: the details name a field, never its (card) value
            exception = RuntimeError(f"{exc.code().name}: {exc.details()}")
        self.environment.events.request.fire(
            request_type="gRPC",
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=0 if response is None else response.ByteSize(),
            exception=exception,
            context={},
        )
        return response

    @task(8)
    def sale(self) -> None:
        assert self.payments is not None
        pan, expiry, cvv2 = random.choice(CARDS)
        request = mpb.CardPaymentRequest(
            idempotency_key=uuid.uuid4().hex,  # a new order each time: never a replay
            amount=pb.Money(amount_minor=random.randrange(100, 5_000) * 100, currency=DZD),
            card=pb.Card(pan=pan, expiry=expiry, cvv2=cvv2),
        )
        result = self._call("Sale", self.payments.Sale, request)
        if result is not None and result.payment_id:
            self.payment_ids = [*self.payment_ids[-99:], result.payment_id]

    @task(1)
    def get_payment(self) -> None:
        assert self.payments is not None
        if not self.payment_ids:
            return
        request = mpb.GetPaymentRequest(payment_id=random.choice(self.payment_ids))
        self._call("GetPayment", self.payments.GetPayment, request)

    @task(1)
    def list_payments(self) -> None:
        assert self.payments is not None
        request = mpb.ListPaymentsRequest(page_size=20)
        self._call("ListPayments", self.payments.ListPayments, request)
