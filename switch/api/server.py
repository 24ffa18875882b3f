"""Start the ``switch.v1`` merchant gRPC server (grpc.aio) on a ``SwitchCore``.

Besides the four merchant services it registers the standard health service (overall and
per service: SERVING once started, NOT_SERVING once a call finds the core halted) and server
reflection (v1 and v1alpha: ``switch.api.reflection``), so ``grpcurl`` and load balancers work
without the .proto files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from switch.api.reflection import enable_reflection
from switch.api.servicers import (
    Api,
    BillsServicer,
    PaymentsServicer,
    TransfersServicer,
    VerificationServicer,
)
from switch.api.tracing import traced
from switch.core.service import SwitchCore
from switch.gen.switch.v1 import merchant_pb2, merchant_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = tuple(
    merchant_pb2.DESCRIPTOR.services_by_name[n].full_name
    for n in ("Payments", "Bills", "Transfers", "Verification")
)


def add_services(
    server: grpc.aio.Server, core: SwitchCore, operators: Path | None = None
) -> health.HealthServicer:
    """``operators``: the operators file (``state_dir/operators.json``); with it the
    ``Operator`` service is served too, on the same port (``switch.operator``)."""
    api = Api(core)
    names: tuple[str, ...] = SERVICE_NAMES
    if operators is not None:
        from switch.operator.server import add_operator_service

        names = (*names, add_operator_service(server, core, operators))
    # traced: the RPC in each transaction's trace line, x-transaction-id in the answer
    payments = traced(PaymentsServicer(api), "Payments")
    merchant_pb2_grpc.add_PaymentsServicer_to_server(payments, server)
    merchant_pb2_grpc.add_BillsServicer_to_server(traced(BillsServicer(api), "Bills"), server)
    transfers = traced(TransfersServicer(api), "Transfers")
    merchant_pb2_grpc.add_TransfersServicer_to_server(transfers, server)
    verification = traced(VerificationServicer(api), "Verification")
    merchant_pb2_grpc.add_VerificationServicer_to_server(verification, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    def not_serving() -> None:  # the core halted (a failed commit): take us out of rotation
        for name in ("", *names):
            health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    api.on_halt = not_serving
    enable_reflection((*names, health.SERVICE_NAME), server)
    return health_servicer


@dataclass(frozen=True, slots=True)
class ServerTls:
    """PEM files for TLS; with ``client_ca`` every client must present a certificate it signed."""

    cert_chain: Path
    private_key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        ca = self.client_ca.read_bytes() if self.client_ca is not None else None
        return grpc.ssl_server_credentials(
            [(self.private_key.read_bytes(), self.cert_chain.read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


def transport(tls: ServerTls | None) -> str:
    """How the port is protected, for the start banner and the log."""
    if tls is None:
        return "plaintext"
    return "TLS + client certificates" if tls.client_ca is not None else "TLS"


async def start_grpc_server(
    core: SwitchCore,
    host: str = "127.0.0.1",
    port: int = 50051,
    *,
    tls: ServerTls | None = None,
    operators: Path | None = None,
    reuse_port: bool = False,
) -> grpc.aio.Server:
    """Build, bind and start the server; the caller owns it (``await server.stop(grace)``).

    ``port=0`` binds a free port: read it back with ``server.bound_port`` (set here).
    Without ``tls`` the port is plaintext (the default: 127.0.0.1 behind a TLS proxy).
    With ``operators`` (``state_dir/operators.json``) the operator service is served too.
    ``reuse_port``: SO_REUSEPORT, for ``switch run --workers`` (off otherwise, so a port in
    use is an error rather than a second server sharing it).
    """
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", int(reuse_port)),
            ("grpc.max_receive_message_length", 1 << 20),
        ],
    )
    add_services(server, core, operators)
    address = f"{host}:{port}"
    try:  # grpcio reports a port in use as RuntimeError (newer) or 0 (older)
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, tls.credentials())
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"gRPC: cannot bind {host}:{port} (address in use?)")
    await server.start()
    server.bound_port = bound
    log.info("merchant gRPC API listening on %s:%d (%s)", host, bound, transport(tls))
    return server
