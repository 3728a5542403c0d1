"""One lazily (re)opened PostgreSQL connection, shared by a store's operations.

Every PostgreSQL-backed store (audit log, agent registry, ...) needs the same
three things: connect on first use with a bounded timeout, create its schema
once per connection, and forget a connection that failed so the next call
reconnects (a server restart must not wedge the store). Statements run in
autocommit unless the caller opens a transaction (``async with conn.transaction()``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

SchemaSetup = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]


class LazyConnection:
    def __init__(self, dsn: str, setup: SchemaSetup, *, connect_timeout: int = 5) -> None:
        self.dsn = dsn
        self._setup = setup
        self._timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None
        #: Serialises use of the one connection (psycopg connections are not
        #: safe for concurrent statements).
        self.lock = asyncio.Lock()

    async def get(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, connect_timeout=self._timeout
        )
        await self._setup(conn)
        self._conn = conn
        return conn

    async def drop(self) -> None:
        """Forget the connection after a failure; the next get() reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
