"""Registering the ``Operator`` service on the switch's gRPC server (``switch.api.server``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc

from switch.cardbase.live import BatchLock, LiveImport
from switch.core.service import SwitchCore
from switch.gen.switch.v1 import operator_pb2, operator_pb2_grpc
from switch.operator.keys import OperatorKeys
from switch.operator.servicer import OperatorServicer
from switch.store import SwitchStore, operator_reads
from switch.store.sqlite_cardbase import SqliteCardBase

SERVICE_NAME: str = operator_pb2.DESCRIPTOR.services_by_name["Operator"].full_name


def add_operator_service(server: grpc.aio.Server, core: SwitchCore, operators: Path) -> str:
    """Serve ``Operator`` with the keys in ``operators``; returns its full service name."""
    reads, batch_lock = live_import_store(core.store)
    imports = LiveImport(core, core.store.commit, core.config, reads, batch_lock)
    servicer = OperatorServicer(core, OperatorKeys(operators), operator_reads(core.store), imports)
    operator_pb2_grpc.add_OperatorServicer_to_server(servicer, server)
    return SERVICE_NAME


def live_import_store(
    store: SwitchStore,
) -> tuple[Callable[[], SqliteCardBase], BatchLock | None]:
    """What the live import needs of ``store``: a function opening its look-up connection
    (progress rows, cards by PAN hash, accounts by number, next ids) -- a read-only SQLite
    connection to the file, or a PostgreSQL connection of its own; the running switch writes
    through its group commit either way -- and the lock the batches of every process sharing
    the store take turns on (PostgreSQL nodes; the workers of ``switch run --workers`` over
    one SQLite file)."""
    path = store.path
    if isinstance(path, Path):
        from switch.cardbase.file_locks import SqliteBatchLock

        return (lambda: SqliteCardBase(path, readonly=True)), SqliteBatchLock(path)
    from switch.cardbase.live_pg import PgBatchLock
    from switch.store.postgres import PostgresStore
    from switch.store.postgres_cardbase import PostgresCardBase

    assert isinstance(store, PostgresStore)
    url = store.url
    return (lambda: PostgresCardBase(url)), PgBatchLock(url)
