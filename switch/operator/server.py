"""Registering the ``Operator`` service on the switch's gRPC server (``switch.api.server``)."""

from __future__ import annotations

from pathlib import Path

import grpc

from switch.cardbase.live import LiveImport
from switch.core.service import SwitchCore
from switch.gen.switch.v1 import operator_pb2, operator_pb2_grpc
from switch.operator.keys import OperatorKeys
from switch.operator.servicer import OperatorServicer
from switch.store import operator_reads

SERVICE_NAME: str = operator_pb2.DESCRIPTOR.services_by_name["Operator"].full_name


def add_operator_service(server: grpc.aio.Server, core: SwitchCore, operators: Path) -> str:
    """Serve ``Operator`` with the keys in ``operators``; returns its full service name."""
    # the products the switch runs with (SwitchCore has no public accessor; service.py is
    # not ours to change for one attribute)
    path = core.store.path
    imports = (  # its look-ups read the SQLite file (another backend: not served yet)
        LiveImport(core, core.store.commit, core._p.config, path)
        if isinstance(path, Path)
        else None
    )
    servicer = OperatorServicer(core, OperatorKeys(operators), operator_reads(core.store), imports)
    operator_pb2_grpc.add_OperatorServicer_to_server(servicer, server)
    return SERVICE_NAME
