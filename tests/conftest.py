"""Shared fixtures: a demo-seeded state directory, seeded once per module and copied per test.

Seeding runs the HSM personalisation (keys, PVVs, CVVs), which costs far more than copying
the resulting SQLite files, so each test gets a fresh copy of one seeded template. Modules
that need another seeding (e.g. a durable one) define their own ``template``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from switch.core.service import SwitchCore


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
