"""Shared fixtures: a demo-seeded state directory, seeded once per module and copied per test.

Seeding runs the HSM personalisation (keys, PVVs, CVVs), which costs far more than copying
the resulting SQLite files, so each test gets a fresh copy of one seeded template. Modules
that need another seeding (e.g. a durable one) define their own ``template``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from switch.core.service import SwitchCore

# GATEWAY (issue 14): every `switch run` the suite starts serves its payment gateway on a free
# port instead of the default 8081, so concurrent runs never contend for it.
os.environ.setdefault("SWITCH_GATEWAY_PORT", "0")

if TYPE_CHECKING:
    from tests.pg_server import PgServer


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template")

    async def seed() -> None:
        await (await SwitchCore.open(path, durable=False)).close()

    asyncio.run(seed())
    return path


@pytest.fixture
def state(template: Path, tmp_path: Path) -> Path:
    s = tmp_path / "state"
    shutil.copytree(template, s)
    return s


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL (tests/pg_server.py), started on first use, stopped at the end."""
    from tests.pg_server import start

    server = start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server_durable() -> Iterator[PgServer]:
    """The same with fsync on, for the crash tests (a module sets ``PG_DURABLE = True``)."""
    from tests.pg_server import start

    server = start(fsync=True)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs a test on each backend: for PostgreSQL, ``SWITCH_STORE`` names a fresh database
    (``SwitchCore.open`` and the switch's processes use it), dropped after the test. A module
    opts in with ``pytestmark = pytest.mark.usefixtures("store_backend")``."""
    if request.param != "postgresql":
        yield str(request.param)
        return
    durable = getattr(request.module, "PG_DURABLE", False)
    server: PgServer = request.getfixturevalue("pg_server_durable" if durable else "pg_server")
    db = server.create_database(server.migrated())
    monkeypatch.setenv("SWITCH_STORE", server.url(db))
    yield str(request.param)
    server.drop_database(db)  # ~8 MB each: a session's worth would fill /tmp
