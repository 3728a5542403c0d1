"""Audit store fixtures (imported by the audit tests): every shared test runs on SQLite and PostgreSQL.

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


class StoreFactory:
    """Opens stores on one location (reopen = the same file / table)."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        self.path = tmp_path / "audit.db"
        self.table = f"aegis_audit_t{uuid.uuid4().hex[:12]}"

    def open(self) -> Any:
        if self.backend == "sqlite":
            from aegis.audit.sqlite_store import SqliteAuditStore

            return SqliteAuditStore(self.path)
        from aegis.audit.postgres_store import PostgresAuditStore

        return PostgresAuditStore(PG_DSN, table=self.table)

    def cleanup(self) -> None:
        if self.backend != "postgres":
            return
        from aegis.audit.postgres_store import PostgresAuditStore

        async def drop() -> None:
            store = PostgresAuditStore(PG_DSN, table=self.table)
            await store.drop_tables()
            await store.close()

        asyncio.run(drop())


@pytest.fixture(name="stores", params=["sqlite", "postgres"])
def stores_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    backend = str(request.param)
    if backend == "postgres":
        require_postgres()
    factory = StoreFactory(backend, tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()
