"""The scale-out agent registry: PostgreSQL through psycopg 3's async connection.

Mirrors :mod:`aegis.audit.postgres_store`: one connection used by one operation
at a time (an asyncio lock), reconnecting after a failure. Status and
``may_spawn`` changes run as one transaction with ``SELECT ... FOR UPDATE``, so
two replicas changing one agent serialise and "revoked is final" holds under a
race. Every statement names the tenant.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from aegis.identity.registry import (
    AgentExistsError,
    AgentNotFoundError,
    AgentRecord,
    AgentStatus,
    RegistryStoreError,
    check_transition,
    spawn_closure,
    stamped,
    validate_record,
)
from aegis.identity.registry_sqlite import record_row, row_record
from aegis.storage.postgres import LazyConnection

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
_COLUMNS = sql.SQL(
    "tenant, agent_id, owner, labels, scopes, may_spawn, status, created_at, updated_at"
)


class PostgresAgentRegistry:
    """:class:`aegis.identity.registry.AgentRegistry` on a PostgreSQL table."""

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "aegis_agents",
        schema: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name in (table, schema):
            if name is not None and not _IDENT.match(name):
                raise ValueError(f"invalid SQL identifier {name!r}")
        self.dsn = dsn
        self._clock = clock
        self._schema = sql.Identifier(schema) if schema else None
        self._table = sql.Identifier(*((schema,) if schema else ()), table)
        self._pg = LazyConnection(dsn, self._create_schema)
        self._lock = self._pg.lock

    async def _create_schema(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Create this store's schema on a new connection (idempotent)."""
        if self._schema is not None:
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (tenant TEXT NOT NULL, agent_id TEXT NOT NULL,"
                " owner TEXT NOT NULL, labels TEXT NOT NULL, scopes TEXT NOT NULL,"
                " may_spawn TEXT NOT NULL, status TEXT NOT NULL,"
                " created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,"
                " PRIMARY KEY (tenant, agent_id))"
            ).format(self._table)
        )

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        return await self._pg.get()

    async def _drop(self) -> None:
        await self._pg.drop()

    async def _query(self, query: sql.Composed, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        async with self._lock:
            try:
                conn = await self._connection()
                async with conn.cursor() as cur:
                    await cur.execute(query, args)
                    return await cur.fetchall() if cur.description is not None else []
            except psycopg.Error as exc:
                await self._drop()
                raise RegistryStoreError(f"postgres registry: {exc}") from exc

    async def register(self, record: AgentRecord) -> AgentRecord:
        stored = stamped(validate_record(record), self._clock())
        query = sql.SQL(
            "INSERT INTO {} ({}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (tenant, agent_id) DO NOTHING RETURNING agent_id"
        ).format(self._table, _COLUMNS)
        if not await self._query(query, record_row(stored)):
            raise AgentExistsError(
                f"agent {record.agent_id!r} already exists in tenant {record.tenant!r}"
            )
        return stored

    async def get(self, tenant: str, agent_id: str) -> AgentRecord | None:
        query = sql.SQL("SELECT {} FROM {} WHERE tenant = %s AND agent_id = %s").format(
            _COLUMNS, self._table
        )
        rows = await self._query(query, (tenant, agent_id))
        return row_record(rows[0]) if rows else None

    async def list(self, tenant: str) -> tuple[AgentRecord, ...]:
        query = sql.SQL("SELECT {} FROM {} WHERE tenant = %s ORDER BY agent_id").format(
            _COLUMNS, self._table
        )
        return tuple(row_record(r) for r in await self._query(query, (tenant,)))

    async def _update(
        self, tenant: str, agent_id: str, change: Callable[[AgentRecord], AgentRecord]
    ) -> AgentRecord:
        select = sql.SQL("SELECT {} FROM {} WHERE tenant = %s AND agent_id = %s FOR UPDATE").format(
            _COLUMNS, self._table
        )
        update = sql.SQL(
            "UPDATE {} SET owner = %s, labels = %s, scopes = %s, may_spawn = %s, status = %s,"
            " updated_at = %s WHERE tenant = %s AND agent_id = %s"
        ).format(self._table)
        async with self._lock:
            try:
                conn = await self._connection()
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.execute(select, (tenant, agent_id))
                    row = await cur.fetchone()
                    if row is None:
                        raise AgentNotFoundError(f"no agent {agent_id!r} in tenant {tenant!r}")
                    new = replace(
                        validate_record(change(row_record(row))), updated_at=self._clock()
                    )
                    await cur.execute(
                        update, (*record_row(new)[2:7], new.updated_at, tenant, agent_id)
                    )
                return new
            except psycopg.Error as exc:
                await self._drop()
                raise RegistryStoreError(f"postgres registry: {exc}") from exc

    async def set_status(self, tenant: str, agent_id: str, status: AgentStatus) -> AgentRecord:
        def change(r: AgentRecord) -> AgentRecord:
            check_transition(r.status, status, agent_id)
            return replace(r, status=status)

        return await self._update(tenant, agent_id, change)

    async def set_may_spawn(
        self, tenant: str, agent_id: str, may_spawn: Iterable[str]
    ) -> AgentRecord:
        names = frozenset(may_spawn)
        return await self._update(tenant, agent_id, lambda r: replace(r, may_spawn=names))

    async def descendants(self, tenant: str, agent_id: str) -> frozenset[str]:
        query = sql.SQL("SELECT agent_id, may_spawn FROM {} WHERE tenant = %s").format(self._table)
        rows = await self._query(query, (tenant,))
        return spawn_closure({str(a): json.loads(s) for a, s in rows}, agent_id)

    async def drop_table(self) -> None:
        """Remove this registry's table (tests; never called by the gateway)."""
        await self._query(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table), ())

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
