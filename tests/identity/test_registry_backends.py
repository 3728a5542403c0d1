"""Registry fixtures (imported by the registry and kill switch tests): SQLite and PostgreSQL.

PostgreSQL tests use the server on 127.0.0.1:5432 for real; they skip (saying
what to start) when it does not answer, and fail instead under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


class Clock:
    """A settable clock (seconds since the epoch)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _pg_answers() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_DSN) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return str(exc)
    return None


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
        why = _pg_answers()
        if why is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"PostgreSQL on 127.0.0.1:5432 does not answer under CI: {why}")
            pytest.skip(f"PostgreSQL on 127.0.0.1:5432 does not answer; start it: {PG_START}")
    factory = RegistryFactory(backend, tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()
