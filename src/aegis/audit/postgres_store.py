"""The scale-out audit store: PostgreSQL through psycopg 3's async connection.

What it relies on (https://www.postgresql.org/docs/current/wal-async-commit.html,
https://www.postgresql.org/docs/current/runtime-config-wal.html#GUC-SYNCHRONOUS-COMMIT):
with ``synchronous_commit = on`` -- set explicitly on every connection here --
``COMMIT`` returns only after the transaction's WAL is flushed to disk, so an
acknowledged batch survives a server crash. Each batch is one transaction.

One connection, used by one operation at a time (an asyncio lock); the log is
the only writer. A lost connection is an :class:`AuditStoreError`; the next
operation reconnects.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from aegis.audit.record import GENESIS_HASH, AuditRecord
from aegis.audit.sqlite_store import record_json, row_agent
from aegis.audit.store import AuditStoreError
from aegis.storage.postgres import LazyConnection

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
_PAGE = 1000


class PostgresAuditStore:
    """:class:`aegis.audit.store.AuditStore` on a PostgreSQL table (and ``<table>_checkpoints``)."""

    def __init__(self, dsn: str, *, table: str = "aegis_audit", schema: str | None = None) -> None:
        for name in (table, schema):
            if name is not None and not _IDENT.match(name):
                raise ValueError(f"invalid SQL identifier {name!r}")
        self.dsn = dsn
        self.commits = 0
        self._name = table
        parts = (schema,) if schema else ()
        self._schema = sql.Identifier(schema) if schema else None
        self._table = sql.Identifier(*parts, table)
        self._cps = sql.Identifier(*parts, f"{table}_checkpoints")
        self._pg = LazyConnection(dsn, self._create_schema)
        self._lock = self._pg.lock

    async def _create_schema(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Create this store's schema on a new connection (idempotent)."""
        await conn.execute("SET synchronous_commit = on")
        if self._schema is not None:
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (seq BIGINT PRIMARY KEY, time TEXT NOT NULL,"
                " kind TEXT NOT NULL, tenant TEXT, agent_id TEXT, hash TEXT NOT NULL,"
                " record TEXT NOT NULL)"
            ).format(self._table)
        )
        # No secondary indexes (as in the SQLite store): every insert would pay
        # for them, and export and verify read in seq order, the primary key.
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id BIGSERIAL PRIMARY KEY, checkpoint TEXT NOT NULL)"
            ).format(self._cps)
        )

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        return await self._pg.get()

    async def _drop(self) -> None:
        await self._pg.drop()

    async def append(self, records: Sequence[AuditRecord]) -> None:
        rows = [
            (r.seq, r.time, str(r.kind), r.tenant, row_agent(r), r.hash, record_json(r))
            for r in records
        ]
        query = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s)").format(self._table)
        async with self._lock:
            try:
                conn = await self._connection()
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.executemany(query, rows)
                # Leaving the block COMMITs; with synchronous_commit=on it returned after
                # the WAL flush.
                self.commits += 1
            except psycopg.Error as exc:
                await self._drop()
                raise AuditStoreError(f"postgres audit store: {exc}") from exc

    async def append_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        text = json.dumps(checkpoint, sort_keys=True, separators=(",", ":"))
        query = sql.SQL("INSERT INTO {} (checkpoint) VALUES (%s)").format(self._cps)
        await self._exec(query, (text,))

    async def _exec(self, query: sql.Composed, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        async with self._lock:
            try:
                conn = await self._connection()
                async with conn.cursor() as cur:
                    await cur.execute(query, args)
                    return await cur.fetchall() if cur.description is not None else []
            except psycopg.Error as exc:
                await self._drop()
                raise AuditStoreError(f"postgres audit store: {exc}") from exc

    async def head(self) -> tuple[int, str]:
        rows = await self._exec(
            sql.SQL("SELECT seq, hash FROM {} ORDER BY seq DESC LIMIT 1").format(self._table), ()
        )
        return (0, GENESIS_HASH) if not rows else (int(rows[0][0]) + 1, str(rows[0][1]))

    async def records(self, start: int = 0, end: int | None = None) -> AsyncIterator[AuditRecord]:
        stop = end if end is not None else 2**63 - 1
        query = sql.SQL(
            "SELECT seq, record FROM {} WHERE seq >= %s AND seq < %s ORDER BY seq LIMIT %s"
        ).format(self._table)
        cursor = start
        while True:
            rows = await self._exec(query, (cursor, stop, _PAGE))
            for _seq, text in rows:
                yield AuditRecord.from_dict(json.loads(text))
            if len(rows) < _PAGE:
                return
            cursor = int(rows[-1][0]) + 1

    async def checkpoints(self) -> list[dict[str, Any]]:
        rows = await self._exec(
            sql.SQL("SELECT checkpoint FROM {} ORDER BY id").format(self._cps), ()
        )
        return [json.loads(r[0]) for r in rows]

    async def drop_tables(self) -> None:
        """Remove this store's tables (tests; never called by the gateway)."""
        await self._exec(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(self._table, self._cps), ())

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
