"""The embedded audit store: one SQLite file, durable on every commit.

What it relies on (https://www.sqlite.org/pragma.html, https://www.sqlite.org/wal.html):

* ``journal_mode=WAL``: a commit appends to the write-ahead log; readers never
  block the writer.
* ``synchronous=FULL``: "In WAL mode when synchronous is FULL, the WAL file is
  synchronized before each transaction commit", so a committed batch survives
  a crash or power loss (NORMAL may lose the last transactions on power loss).
* One transaction per batch: one fsync however many records the batch holds --
  the group commit of :class:`aegis.audit.log.AuditLog` rests on this.

A single thread owns the connection (a one-worker executor), so there is one
writer and no connection is shared across threads. A file that is not a
valid audit database is refused at open, and nothing in it is rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from aegis.audit.record import GENESIS_HASH, AuditRecord
from aegis.audit.store import AuditStoreError

_T = TypeVar("_T")
_PAGE = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq      INTEGER PRIMARY KEY,
    time     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    tenant   TEXT,
    agent_id TEXT,
    hash     TEXT NOT NULL,
    record   TEXT NOT NULL  -- the canonical (RFC 8785) JSON of the whole record
);
-- No secondary indexes: every insert would pay for them on the hot path, and
-- export and verify read the log in seq order (the primary key) anyway.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    checkpoint TEXT NOT NULL
);
"""


def record_json(record: AuditRecord) -> str:
    """The stored form of a record: its canonical JSON (what the Merkle leaf commits to)."""
    from aegis.audit.log import record_bytes  # the log's fast RFC 8785 path  # noqa: PLC0415

    return record_bytes(record).decode("utf-8")


def row_agent(record: AuditRecord) -> str | None:
    agent = record.body.get("agent_id")
    return agent if isinstance(agent, str) else None


class SqliteAuditStore:
    """:class:`aegis.audit.store.AuditStore` on one SQLite file."""

    def __init__(
        self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL", "OFF"] = "FULL"
    ) -> None:
        self.path = Path(path)
        self.commits = 0  # transactions committed (one per batch): tests count group commits
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aegis-audit-db")
        self._conn = self._executor.submit(self._open, synchronous).result()

    # -- opening -----------------------------------------------------------------------

    def _open(self, synchronous: str) -> sqlite3.Connection:
        if self.path.exists() and self.path.stat().st_size > 0:
            self._check_existing()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise AuditStoreError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise AuditStoreError(f"{self.path}: cannot open the audit database: {exc}") from exc
        return conn

    def _check_existing(self) -> None:
        """Refuse a file that is not an intact audit database, opening it read-only."""
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                result = conn.execute("PRAGMA quick_check").fetchone()
                tables = {
                    r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise AuditStoreError(
                f"{self.path}: not a readable audit database ({exc}); refusing to start, "
                "nothing was changed"
            ) from exc
        if result is None or result[0] != "ok":
            raise AuditStoreError(
                f"{self.path}: the audit database is corrupt ({result}); refusing to start"
            )
        if tables and "audit_records" not in tables:
            raise AuditStoreError(f"{self.path}: a SQLite file but not an audit database")

    # -- plumbing ----------------------------------------------------------------------

    async def _run(self, fn: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.Error as exc:
            raise AuditStoreError(f"{self.path}: {exc}") from exc
        except RuntimeError as exc:  # executor shut down
            raise AuditStoreError(f"{self.path}: store closed") from exc

    # -- the protocol ------------------------------------------------------------------

    async def append(self, records: Sequence[AuditRecord]) -> None:
        rows = [
            (r.seq, r.time, str(r.kind), r.tenant, row_agent(r), r.hash, record_json(r))
            for r in records
        ]

        def write() -> None:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT INTO audit_records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")  # synced to disk (synchronous=FULL) before it returns
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.commits += 1

        await self._run(write)

    async def append_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        text = json.dumps(checkpoint, sort_keys=True, separators=(",", ":"))

        def write() -> None:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT INTO audit_checkpoints (checkpoint) VALUES (?)", (text,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        await self._run(write)

    async def head(self) -> tuple[int, str]:
        def read() -> tuple[int, str]:
            row = self._conn.execute(
                "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            return (0, GENESIS_HASH) if row is None else (int(row[0]) + 1, str(row[1]))

        return await self._run(read)

    async def records(self, start: int = 0, end: int | None = None) -> AsyncIterator[AuditRecord]:
        stop = end if end is not None else 2**63 - 1
        cursor = start
        while True:

            def page(lo: int = cursor) -> list[tuple[int, str]]:
                return self._conn.execute(
                    "SELECT seq, record FROM audit_records WHERE seq >= ? AND seq < ? "
                    "ORDER BY seq LIMIT ?",
                    (lo, stop, _PAGE),
                ).fetchall()

            rows = await self._run(page)
            for _seq, text in rows:
                yield AuditRecord.from_dict(json.loads(text))
            if len(rows) < _PAGE:
                return
            cursor = int(rows[-1][0]) + 1

    async def checkpoints(self) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            rows = self._conn.execute("SELECT checkpoint FROM audit_checkpoints ORDER BY id")
            return [json.loads(r[0]) for r in rows]

        return await self._run(read)

    async def close(self) -> None:
        with contextlib.suppress(AuditStoreError):
            await self._run(self._conn.close)
        self._executor.shutdown(wait=True)
