"""The embedded agent registry: one SQLite file (the default backend).

Like the audit store (:mod:`aegis.audit.sqlite_store`), one thread owns the
connection (a one-worker executor) so there is a single writer and no
connection crosses threads; WAL mode lets readers run beside it. Every
statement names the tenant in its ``WHERE`` clause: the primary key is
``(tenant, agent_id)`` and no query reads across tenants.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

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

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    tenant     TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    owner      TEXT NOT NULL,
    labels     TEXT NOT NULL,  -- JSON array, sorted
    scopes     TEXT NOT NULL,  -- JSON array, in the order given
    may_spawn  TEXT NOT NULL,  -- JSON array, sorted
    status     TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, agent_id)
);
"""
_COLUMNS = "tenant, agent_id, owner, labels, scopes, may_spawn, status, created_at, updated_at"


def record_row(r: AgentRecord) -> tuple[Any, ...]:
    """The stored form of a record, shared with the PostgreSQL backend."""
    return (
        r.tenant,
        r.agent_id,
        r.owner,
        json.dumps(sorted(r.labels)),
        json.dumps(list(r.scopes)),
        json.dumps(sorted(r.may_spawn)),
        str(r.status),
        r.created_at,
        r.updated_at,
    )


def row_record(row: tuple[Any, ...]) -> AgentRecord:
    return AgentRecord(
        tenant=str(row[0]),
        agent_id=str(row[1]),
        owner=str(row[2]),
        labels=frozenset(json.loads(row[3])),
        scopes=tuple(json.loads(row[4])),
        may_spawn=frozenset(json.loads(row[5])),
        status=AgentStatus(row[6]),
        created_at=float(row[7]),
        updated_at=float(row[8]),
    )


class SqliteAgentRegistry:
    """:class:`aegis.identity.registry.AgentRegistry` on one SQLite file."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aegis-registry")
        self._conn = self._executor.submit(self._open).result()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise RegistryStoreError(f"{self.path}: cannot open the registry: {exc}") from exc
        return conn

    async def _run(self, fn: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.Error as exc:
            raise RegistryStoreError(f"{self.path}: {exc}") from exc
        except RuntimeError as exc:  # executor shut down
            raise RegistryStoreError(f"{self.path}: registry closed") from exc

    def _fetch(self, tenant: str, agent_id: str) -> AgentRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM agents WHERE tenant = ? AND agent_id = ?",  # noqa: S608
            (tenant, agent_id),
        ).fetchone()
        return None if row is None else row_record(row)

    async def register(self, record: AgentRecord) -> AgentRecord:
        stored = stamped(validate_record(record), self._clock())

        def write() -> None:
            try:
                self._conn.execute(
                    f"INSERT INTO agents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                    record_row(stored),
                )
            except sqlite3.IntegrityError:
                raise AgentExistsError(
                    f"agent {record.agent_id!r} already exists in tenant {record.tenant!r}"
                ) from None

        await self._run(write)
        return stored

    async def get(self, tenant: str, agent_id: str) -> AgentRecord | None:
        return await self._run(lambda: self._fetch(tenant, agent_id))

    async def list(self, tenant: str) -> tuple[AgentRecord, ...]:
        def read() -> tuple[AgentRecord, ...]:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM agents WHERE tenant = ? ORDER BY agent_id",  # noqa: S608
                (tenant,),
            )
            return tuple(row_record(r) for r in rows)

        return await self._run(read)

    async def _update(
        self, tenant: str, agent_id: str, change: Callable[[AgentRecord], AgentRecord]
    ) -> AgentRecord:
        def write() -> AgentRecord:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = self._fetch(tenant, agent_id)
                if current is None:
                    raise AgentNotFoundError(f"no agent {agent_id!r} in tenant {tenant!r}")
                new = replace(validate_record(change(current)), updated_at=self._clock())
                conn.execute(
                    "UPDATE agents SET owner = ?, labels = ?, scopes = ?, may_spawn = ?,"
                    " status = ?, updated_at = ? WHERE tenant = ? AND agent_id = ?",
                    (*record_row(new)[2:7], new.updated_at, tenant, agent_id),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return new

        return await self._run(write)

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
        def read() -> dict[str, list[str]]:
            rows = self._conn.execute(
                "SELECT agent_id, may_spawn FROM agents WHERE tenant = ?", (tenant,)
            )
            return {str(a): json.loads(s) for a, s in rows}

        return spawn_closure(await self._run(read), agent_id)

    async def close(self) -> None:
        with contextlib.suppress(RegistryStoreError):
            await self._run(self._conn.close)
        self._executor.shutdown(wait=True)
