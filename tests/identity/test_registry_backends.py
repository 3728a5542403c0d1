"""Registry fixtures (imported by the registry and kill switch tests): SQLite and PostgreSQL.

PostgreSQL tests use the server on 127.0.0.1:5432 for real; they skip (saying
what to start) when it does not answer, and fail instead under CI=true.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services import PG_DSN, require_postgres


class Clock:
    """A settable clock (seconds since the epoch)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RegistryFactory:
    """Opens registries on one location (reopen = the same file / table)."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        self.path = tmp_path / "registry.db"
        self.table = f"aegis_agents_t{uuid.uuid4().hex[:12]}"
        self.clock = Clock()

    def open(self) -> Any:
        if self.backend == "sqlite":
            from aegis.identity.registry_sqlite import SqliteAgentRegistry

            return SqliteAgentRegistry(self.path, clock=self.clock)
        from aegis.identity.registry_postgres import PostgresAgentRegistry

        return PostgresAgentRegistry(PG_DSN, table=self.table, clock=self.clock)

    def cleanup(self) -> None:
        if self.backend != "postgres":
            return
        from aegis.identity.registry_postgres import PostgresAgentRegistry

        async def drop() -> None:
            registry = PostgresAgentRegistry(PG_DSN, table=self.table)
            await registry.drop_table()
            await registry.close()

        asyncio.run(drop())


@pytest.fixture(name="registries", params=["sqlite", "postgres"])
def registries_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryFactory]:
    backend = str(request.param)
    if backend == "postgres":
        require_postgres()
    factory = RegistryFactory(backend, tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()
