"""Server reflection in both versions clients ask for: ``grpc.reflection.v1`` and ``v1alpha``.

Recent ``grpcurl`` and Postman ask for v1 first; older tools only know v1alpha. The Python
``grpcio-reflection`` package (1.76 here) ships v1alpha only. The v1 protocol is the v1alpha
one renamed (same messages, same field numbers), so when the installed package has no v1 the
same servicer answers under v1's name, reading and writing the identical wire format; when a
later package ships ``grpc_reflection.v1``, that one is used instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"


def enable_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Serve reflection v1alpha and v1 on ``server``, both listing ``service_names`` and
    themselves."""
    names = (*service_names, reflection.SERVICE_NAME, V1_SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    try:
        v1 = importlib.import_module("grpc_reflection.v1.reflection")
    except ModuleNotFoundError:
        v1 = None
    if v1 is not None:
        v1.enable_server_reflection(names, server)
        return
    servicer = reflection.aio.ReflectionServicer(names)
    handler = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
