"""The merchant API's part of the transaction trace: a server interceptor.

Every unary call of a ``switch.v1`` service runs inside a ``Call`` (``switch.observe.trace``)
naming the RPC (``Sale``, ``Refund``...) and the time the handler was entered, so the core's
trace line says which RPC it answered and how long the request took. When the core has the
transaction's id it is put in the answer's trailing metadata, ``x-transaction-id``: set at
that moment, it also rides on an error status the servicer raises afterwards (a refused
refund, an UNAVAILABLE), so a merchant can quote the id of any call the switch journaled.

One place instead of a line in every servicer: the servicers stay about mapping, and a new
RPC is traced without anyone remembering to.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc

from switch.observe.trace import CURRENT_CALL, GRPC, Call

TRANSACTION_ID_KEY: Final = "x-transaction-id"
TRACED_PACKAGE: Final = "/switch.v1."  # the merchant services; health/reflection untouched

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]


class CallTracing(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps each ``switch.v1`` unary handler once (cached per method path)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or not method.startswith(TRACED_PACKAGE):
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            _traced(method.rsplit("/", 1)[-1], handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped


def _traced(
    rpc: str, behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
        def on_answer(transaction_id: str) -> None:
            context.set_trailing_metadata(((TRANSACTION_ID_KEY, transaction_id),))

        token = CURRENT_CALL.set(Call(GRPC, rpc, time.perf_counter_ns(), on_answer))
        try:
            return await behavior(request, context)
        finally:
            CURRENT_CALL.reset(token)

    return traced
