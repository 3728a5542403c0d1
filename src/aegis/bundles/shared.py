"""The fleet's rollout state, shared by every gateway replica (PostgreSQL).

Each gateway polls its bundle sources itself, but what a slot *serves* -- its
active version, its candidate and stage, whether it is pinned -- must be the
same on every replica: an operator's ``aegis policy rollback`` lands on one
replica and has to reach the others within one reload interval. So every change
a replica makes to that state is written here (compare-and-set on a revision
number), together with the archives it names, and every replica reads the
revision on each poll and applies what changed -- fetching an archive it never
saw from here and verifying it with its own keys, as if it came from a source.

One row holds the document (``{tenant: slot}``) and its revision; a second table
holds archives by bundle id. The row is locked (``SELECT ... FOR UPDATE``) for a
write, so two replicas never both win the same revision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Protocol

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from aegis.bundles.history import SlotRecord
from aegis.storage.postgres import LazyConnection

_IDENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
STATE_NAME: Final = "rollout"


@dataclass(frozen=True, slots=True)
class SharedSlot:
    """What one slot serves, as every replica must see it."""

    active: str | None
    candidate: str | None = None
    stage: str | None = None
    share_bp: int = 0
    by: str = "agent"
    pinned: bool = False

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SharedSlot:
        """Read leniently, as a replica's own state.json is (the same fields)."""
        r = SlotRecord.from_dict(raw)
        return cls(r.active, r.candidate, r.stage, r.share_bp, r.by, r.pinned)


class SharedStateError(Exception):
    """The shared store cannot be reached or read; the replica keeps its own state."""


class SharedRolloutStore(Protocol):
    async def read(self) -> tuple[int, dict[str, SharedSlot]]:
        """The current revision (0: never written) and slots."""
        ...

    async def write(
        self, expected: int, slots: Mapping[str, SharedSlot], archives: Mapping[str, bytes]
    ) -> int | None:
        """Replace the given slots if the revision is still ``expected``; store the
        archives (idempotent). The new revision, or None when another replica wrote
        first (read again, apply, and retry if still needed)."""
        ...

    async def archive(self, version_id: str) -> bytes | None: ...

    async def close(self) -> None: ...


class PostgresRolloutStore:
    """:class:`SharedRolloutStore` on two PostgreSQL tables."""

    def __init__(self, dsn: str, *, table_prefix: str = "aegis_policy") -> None:
        if not _IDENT.match(table_prefix):
            raise ValueError(f"invalid SQL identifier {table_prefix!r}")
        self._state = sql.Identifier(f"{table_prefix}_state")
        self._archives = sql.Identifier(f"{table_prefix}_archives")
        self._pg = LazyConnection(dsn, self._create_schema)

    async def _create_schema(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY,"
                " revision BIGINT NOT NULL, doc JSONB NOT NULL,"
                " updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ).format(self._state)
        )
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, data BYTEA NOT NULL)"
            ).format(self._archives)
        )

    async def _run(self, work: Any) -> Any:
        async with self._pg.lock:
            try:
                conn = await self._pg.get()
                return await work(conn)
            except (psycopg.Error, OSError) as exc:  # forget the connection; retry later
                await self._pg.drop()
                raise SharedStateError(f"shared rollout state: {exc}") from exc

    async def read(self) -> tuple[int, dict[str, SharedSlot]]:
        async def work(conn: psycopg.AsyncConnection[Any]) -> tuple[int, dict[str, SharedSlot]]:
            cur = await conn.execute(
                sql.SQL("SELECT revision, doc FROM {} WHERE name = %s").format(self._state),
                (STATE_NAME,),
            )
            row = await cur.fetchone()
            if row is None:
                return 0, {}
            revision, doc = row
            slots = doc if isinstance(doc, dict) else {}
            return int(revision), {
                t: SharedSlot.from_dict(s)
                for t, s in slots.items()
                if isinstance(t, str) and isinstance(s, dict)
            }

        result: tuple[int, dict[str, SharedSlot]] = await self._run(work)
        return result

    async def write(
        self, expected: int, slots: Mapping[str, SharedSlot], archives: Mapping[str, bytes]
    ) -> int | None:
        async def work(conn: psycopg.AsyncConnection[Any]) -> int | None:
            async with conn.transaction():
                for vid, data in archives.items():
                    await conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (id, data) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING"
                        ).format(self._archives),
                        (vid, data),
                    )
                cur = await conn.execute(
                    sql.SQL("SELECT revision, doc FROM {} WHERE name = %s FOR UPDATE").format(
                        self._state
                    ),
                    (STATE_NAME,),
                )
                row = await cur.fetchone()
                current = int(row[0]) if row is not None else 0
                if current != expected:
                    return None
                doc: dict[str, Any] = dict(row[1]) if row is not None else {}
                doc.update({t: asdict(s) for t, s in slots.items()})
                if row is None:
                    # Two first writers: the primary key lets one in, the other is told
                    # it lost (rowcount 0), as with a stale revision.
                    cur = await conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (name, revision, doc) VALUES (%s, 1, %s)"
                            " ON CONFLICT (name) DO NOTHING"
                        ).format(self._state),
                        (STATE_NAME, Jsonb(doc)),
                    )
                    return 1 if cur.rowcount == 1 else None
                await conn.execute(
                    sql.SQL(
                        "UPDATE {} SET revision = revision + 1, doc = %s, updated_at = now()"
                        " WHERE name = %s"
                    ).format(self._state),
                    (Jsonb(doc), STATE_NAME),
                )
                return current + 1

        result: int | None = await self._run(work)
        return result

    async def archive(self, version_id: str) -> bytes | None:
        async def work(conn: psycopg.AsyncConnection[Any]) -> bytes | None:
            cur = await conn.execute(
                sql.SQL("SELECT data FROM {} WHERE id = %s").format(self._archives),
                (version_id,),
            )
            row = await cur.fetchone()
            return bytes(row[0]) if row is not None else None

        result: bytes | None = await self._run(work)
        return result

    async def close(self) -> None:
        await self._pg.drop()
